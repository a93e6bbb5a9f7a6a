/**
 * @module test/fault/webhook-frozen
 *
 * The Stripe webhook while the store is frozen (SIGSTOP: connections stay open, nothing
 * answers), on a private PostgreSQL with the README's pool (no query timeout). The handler's
 * store steps are bounded by `storageTimeoutMs`: it answers 503 `webhook_failed` (Stripe
 * retries) instead of holding the delivery for as long as the freeze lasts, and an apply that
 * lands after the answer is not applied twice: the event's lease keeps a retry out until the
 * apply ends, then the event is marked processed and a retry is a duplicate.
 */

import pg from 'pg'
import Stripe from 'stripe'
import { afterAll, describe, expect, it } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { stripeBilling } from '../../adapters/stripe/index.js'
import { createTollbooth, memoryStorage, type Storage } from '../../src/index.js'
import { type PostgresServer, startPostgresServer } from './postgres-server.js'

const SECRET = 'webhook-frozen-secret-webhook-frozen-secret'
const WHSEC = 'whsec_test_webhook_frozen'
const TIMEOUT_MS = 500
/** Past the new bound (a few storage timeouts) by far; the old handler never answered. */
const GIVE_UP_MS = 8_000
const stripe = new Stripe('sk_test_unused')

let server: PostgresServer | null = null
try {
  server = await startPostgresServer()
} catch (err) {
  if (process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1') throw err
}

const pools: pg.Pool[] = []
afterAll(async () => {
  server?.freeze(false)
  for (const p of pools) await p.end().catch(() => {})
  await server?.stop()
})

async function setup(markersInMemory: boolean) {
  const pool = new pg.Pool({ connectionString: server!.url, connectionTimeoutMillis: 1000, max: 4 })
  pool.on('error', () => {})
  pools.push(pool)
  const schema = `tb_whf_${Math.random().toString(36).slice(2, 8)}`
  await migrate({ pool, schema })
  const pgStore = postgresStorage({ pool, schema })
  // Markers (on `storage.counters`) kept apart from the frozen store: only the apply hangs.
  const storage: Storage = markersInMemory
    ? { ...pgStore, counters: memoryStorage().counters }
    : pgStore
  const tb = createTollbooth({
    secret: SECRET,
    storage,
    storageTimeoutMs: TIMEOUT_MS,
    plans: { starter: { monthlyCredits: 100 }, pro: { monthlyCredits: 10_000 } },
    defaultTier: 'starter',
    onError: () => {},
  })
  const billing = stripeBilling(tb, {
    stripe,
    webhookSecret: WHSEC,
    tiers: { pro: { priceId: 'price_pro' } },
    onError: () => {},
  })
  // A busy pool's connections are open when the store freezes (a new one would fail on the
  // pool's connection timeout instead of hanging): all four are opened and left idle.
  await Promise.all([0, 1, 2, 3].map(() => pool.query('SELECT pg_sleep(0.05)')))
  const s0 = Math.floor(Date.now() / 1000)
  const body = JSON.stringify({
    id: 'evt_created',
    object: 'event',
    type: 'customer.subscription.created',
    created: s0 - 60,
    data: {
      object: {
        id: 'sub_1',
        object: 'subscription',
        customer: 'cus_1',
        status: 'active',
        cancel_at: null,
        cancel_at_period_end: false,
        metadata: { tollbooth_account_id: 'acct_1', tollbooth_tier: 'pro' },
        items: {
          object: 'list',
          data: [
            {
              id: 'si_1',
              price: { id: 'price_pro' },
              current_period_start: s0,
              current_period_end: s0 + 30 * 86_400,
            },
          ],
        },
      },
    },
  })
  const deliver = () => {
    const header = stripe.webhooks.generateTestHeaderString({
      payload: body,
      secret: WHSEC,
      timestamp: Math.floor(Date.now() / 1000),
    })
    return billing.webhook({ body, headers: { 'stripe-signature': header } })
  }
  /** The delivery's answer, or null if none came within GIVE_UP_MS. */
  const deliverBounded = async () => {
    const t = performance.now()
    const r = await Promise.race([
      deliver(),
      new Promise<null>((res) => setTimeout(() => res(null), GIVE_UP_MS)),
    ])
    return { r, ms: performance.now() - t }
  }
  return { tb, storage: pgStore, deliver, deliverBounded }
}

describe.skipIf(!server)('the Stripe webhook with the store frozen', () => {
  it('answers 503 within its bound; the retry once thawed applies the event', async () => {
    const { tb, storage, deliver, deliverBounded } = await setup(false)
    server!.freeze(true)
    let thawed = false
    try {
      const { r, ms } = await deliverBounded()
      expect(r, `webhook still unanswered after ${Math.round(ms)} ms`).not.toBeNull()
      expect(ms).toBeLessThan(4 * TIMEOUT_MS)
      expect(r!.status).toBe(503)
      expect(r!.body).toMatchObject({ code: 'webhook_failed' })
      server!.freeze(false)
      thawed = true
      const retry = await deliver()
      expect(retry.status).toBe(200)
      expect((await tb.accounts.get('acct_1')).tier).toBe('pro')
      expect((await deliver()).body).toMatchObject({ duplicate: true })
    } finally {
      if (!thawed) server!.freeze(false)
      await tb.close().catch(() => {})
      await storage.close?.()
    }
  }, 60_000)

  it('an apply that lands after the 503 is not applied again by the retry', async () => {
    const { tb, storage, deliver, deliverBounded } = await setup(true)
    server!.freeze(true)
    let thawed = false
    try {
      const { r, ms } = await deliverBounded()
      expect(r, `webhook still unanswered after ${Math.round(ms)} ms`).not.toBeNull()
      expect(ms).toBeLessThan(4 * TIMEOUT_MS)
      expect(r!.status).toBe(503)
      expect(r!.body).toMatchObject({ code: 'webhook_failed' })
      // The apply is still out (its outcome unknown): the lease keeps Stripe's retry out.
      const early = await deliver()
      expect(early.status).toBe(409)
      server!.freeze(false)
      thawed = true
      // The late apply lands, marks the event processed and releases the lease.
      const until = Date.now() + 5_000
      let retry = await deliver()
      while (retry.status === 409 && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 100))
        retry = await deliver()
      }
      expect(retry.status).toBe(200)
      expect(retry.body).toMatchObject({ duplicate: true })
      expect((await tb.accounts.get('acct_1')).tier).toBe('pro')
    } finally {
      if (!thawed) server!.freeze(false)
      await tb.close().catch(() => {})
      await storage.close?.()
    }
  }, 60_000)
})
