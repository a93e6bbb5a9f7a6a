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

import { describe, expect, it, type TestContext } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { memoryStorage, type Storage } from '../../src/index.js'
import { privateStores, settledWithin, whileFrozen } from '../support/fault.js'
import { type Delivered, proSubscription, webhookBilling } from '../support/webhook.js'

const SECRET = 'webhook-frozen-secret-webhook-frozen-secret'
const WHSEC = 'whsec_test_webhook_frozen'
const TIMEOUT_MS = 500
/** Past the new bound (a few storage timeouts) by far; the old handler never answered. */
const GIVE_UP_MS = 8_000

const servers = privateStores()

async function setup(ctx: TestContext, markersInMemory: boolean) {
  const server = await servers.postgres(ctx)
  const pool = servers.pool(server, { max: 4 })
  const schema = `tb_whf_${Math.random().toString(36).slice(2, 8)}`
  await migrate({ pool, schema })
  const pgStore = postgresStorage({ pool, schema })
  // Markers (on `storage.counters`) kept apart from the frozen store: only the apply hangs.
  const storage: Storage = markersInMemory
    ? { ...pgStore, counters: memoryStorage().counters }
    : pgStore
  const billing = webhookBilling(storage, {
    secret: SECRET,
    whsec: WHSEC,
    storageTimeoutMs: TIMEOUT_MS,
  })
  // A busy pool's connections are open when the store freezes (a new one would fail on the
  // pool's connection timeout instead of hanging): all four are opened and left idle.
  await Promise.all([0, 1, 2, 3].map(() => pool.query('SELECT pg_sleep(0.05)')))
  const s0 = Math.floor(Date.now() / 1000)
  const created = proSubscription('active', s0)
  const deliver = () =>
    billing.deliver('evt_created', 'customer.subscription.created', created, s0 - 60)
  return { server, tb: billing.tb, storage: pgStore, deliver }
}

/**
 * With the server frozen, a delivery is answered within its bound (a few storage timeouts):
 * a 503 `webhook_failed`, so that Stripe retries.
 */
async function expectFailsFrozen(deliver: () => Promise<Delivered>): Promise<void> {
  const { result, ms } = await settledWithin(deliver(), GIVE_UP_MS)
  expect(result, `webhook still unanswered after ${Math.round(ms)} ms`).not.toBeNull()
  expect(ms).toBeLessThan(4 * TIMEOUT_MS)
  expect(result!.status).toBe('fulfilled')
  const r = (result as PromiseFulfilledResult<Delivered>).value
  expect(r.status).toBe(503)
  expect(r.body).toMatchObject({ code: 'webhook_failed' })
}

describe('the Stripe webhook with the store frozen', () => {
  it('answers 503 within its bound; the retry once thawed applies the event', async (ctx) => {
    const { server, tb, storage, deliver } = await setup(ctx, false)
    try {
      await whileFrozen(server, async (thaw) => {
        await expectFailsFrozen(deliver)
        thaw()
        const retry = await deliver()
        expect(retry.status).toBe(200)
        expect((await tb.accounts.get('acct_1')).tier).toBe('pro')
        expect((await deliver()).body).toMatchObject({ duplicate: true })
      })
    } finally {
      await tb.close().catch(() => {})
      await storage.close?.()
    }
  }, 60_000)

  it('an apply that lands after the 503 is not applied again by the retry', async (ctx) => {
    const { server, tb, storage, deliver } = await setup(ctx, true)
    try {
      await whileFrozen(server, async (thaw) => {
        await expectFailsFrozen(deliver)
        // The apply is still out (its outcome unknown): the lease keeps Stripe's retry out.
        const early = await deliver()
        expect(early.status).toBe(409)
        thaw()
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
      })
    } finally {
      await tb.close().catch(() => {})
      await storage.close?.()
    }
  }, 60_000)
})
