/**
 * Billing on shared, durable storage (PostgreSQL, SQLite and Redis): two tollbooth instances
 * stand for two processes, or one process before and after a restart. A webhook replayed to the
 * other instance changes nothing, and overage a dead process never sent is found by the next
 * one and reaches the stand-in Stripe once. Skipped when the server is down, unless
 * TOLLBOOTH_REQUIRE_SERVICES=1.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { stripeBilling } from '../../adapters/stripe/index.js'
import {
  createMeterHealer,
  createTollbooth,
  HEAL_SETTLE_MS,
  type ManualClock,
  METER_JOURNAL_ID,
  manualClock,
  type Storage,
  type Tollbooth,
} from '../../src/internal.js'
import { usageEvent } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { type FakeStripe, startFakeStripe } from './stripe-server.js'

const SECRET = 'billing-suite-secret-billing-suite-secret-0004'
const WHSEC = 'whsec_test_secret_durable_0004'
const T0 = Date.UTC(2026, 10, 24, 12, 0, 0)

const redis = await connectRedis()
const pool = skipPostgres ? null : newPool(20)
const cleanups: Array<() => Promise<unknown>> = []
/** Instances and storages to close before their schema or prefix is dropped. */
const closers: Array<() => Promise<unknown>> = []
let fake: FakeStripe

beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(async () => {
  for (const c of closers) await c()
  for (const c of cleanups) await c()
  await fake.close()
  await redis?.quit()
  await pool?.end()
})

const storages: Array<[string, boolean, () => Promise<Storage>]> = [
  [
    'postgres',
    skipPostgres,
    async () => {
      const { schema, drop } = await freshSchema(pool!)
      cleanups.push(drop)
      const storage = postgresStorage({ pool: pool!, schema })
      closers.push(async () => storage.close?.())
      return storage
    },
  ],
  [
    'sqlite',
    false,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tb-billing-'))
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
      const storage = sqliteStorage({ path: join(dir, 'billing.db') })
      closers.push(async () => storage.close?.())
      return storage
    },
  ],
  [
    'redis',
    !redis,
    async () => {
      const prefix = testPrefix('billing')
      cleanups.push(() => deletePrefix(redis!, prefix))
      return redisStorage({ client: redis!, keyPrefix: prefix })
    },
  ],
]

/** `heal`: the meter's healing at its defaults (a pass at start); else off. */
const instance = (
  storage: Storage,
  clock: ManualClock = manualClock(T0),
  heal = false,
  meter: { timeoutMs?: number } = {},
  onError: (err: unknown) => void = () => {},
) => {
  const tb = createTollbooth({
    secret: SECRET,
    clock,
    storage,
    plans: { pro: { monthlyCredits: 10, allowOverage: true } },
    usage: { flushIntervalMs: 3_600_000, maxBatch: 10_000, retentionMs: 60 * 86_400_000 },
    onError: () => {},
  })
  const billing = stripeBilling(tb, {
    stripe: fake.client(),
    webhookSecret: WHSEC,
    tiers: { pro: { priceId: 'price_pro' } },
    meterEventName: 'api_overage',
    meter: {
      intervalMs: 3_600_000,
      retryMs: 3_600_000,
      ...(heal ? {} : { healIntervalMs: 0 }),
      ...meter,
    },
    onError,
  })
  closers.unshift(async () => {
    await billing.close()
    await tb.close()
  })
  return { tb, billing }
}

/** One request of 4 credits admitted (not settled). */
const admit = (tb: Tollbooth, key: string) =>
  tb.authenticate(
    { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'POST', path: '/x' },
    tb.route({ cost: 4 }),
  )

/** The meter event calls the stand-in Stripe got for `customer`. */
const sendsOf = (customer: string) =>
  fake.requests.filter(
    (r) =>
      r.path === '/v1/billing/meter_events' && r.form['payload[stripe_customer_id]'] === customer,
  )

async function serve(tb: Tollbooth, key: string, n: number) {
  for (let i = 0; i < n; i++) {
    const d = await admit(tb, key)
    expect(d.allowed).toBe(true)
    await tb.settle(d, { status: 200 })
  }
  await tb.flush()
}

describe.each(storages)('billing on %s', (_name, skip, makeStorage) => {
  it.skipIf(skip)('a webhook replayed to another instance grants nothing twice', async () => {
    const storage = await makeStorage()
    const a = instance(storage)
    const b = instance(storage)
    const account = `acct_${Math.random().toString(36).slice(2, 10)}`
    const body = JSON.stringify({
      id: `evt_${account}`,
      object: 'event',
      type: 'checkout.session.completed',
      created: T0 / 1000,
      data: {
        object: {
          id: `cs_${account}`,
          object: 'checkout.session',
          mode: 'payment',
          payment_status: 'paid',
          customer: 'cus_D',
          metadata: { tollbooth_account_id: account, tollbooth_credits: '400' },
        },
      },
    })
    const sign = () =>
      new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
        payload: body,
        secret: WHSEC,
        timestamp: T0 / 1000,
      })
    const r1 = await a.billing.webhook({ body, headers: { 'stripe-signature': sign() } })
    const r2 = await b.billing.webhook({ body, headers: { 'stripe-signature': sign() } })
    expect(r1.status).toBe(200)
    expect(r2.body['duplicate']).toBe(true)
    expect((await b.tb.accounts.get(account)).balance).toBe(400)
    expect((await b.tb.accounts.get(account)).billingCustomerId).toBe('cus_D')
  })

  it.skipIf(skip)(
    'one event delivered to two instances at once grants once; the refused one’s retry is a duplicate',
    async () => {
      const storage = await makeStorage()
      const a = instance(storage)
      const b = instance(storage)
      const account = `acct_${Math.random().toString(36).slice(2, 10)}`
      const body = JSON.stringify({
        id: `evt_c_${account}`,
        object: 'event',
        type: 'checkout.session.completed',
        created: T0 / 1000,
        data: {
          object: {
            id: `cs_c_${account}`,
            object: 'checkout.session',
            mode: 'payment',
            payment_status: 'paid',
            customer: 'cus_C',
            metadata: { tollbooth_account_id: account, tollbooth_credits: '250' },
          },
        },
      })
      const headers = () => ({
        'stripe-signature': new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
          payload: body,
          secret: WHSEC,
          timestamp: T0 / 1000,
        }),
      })
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (i % 2 ? a : b).billing.webhook({ body, headers: headers() }),
        ),
      )
      const applied = answers.filter((r) => r.status === 200 && r.body['applied'] !== undefined)
      expect(applied).toHaveLength(1)
      for (const r of answers) expect(r.status === 409 || r.status === 200).toBe(true)
      // Stripe retries every answer that was not a 2xx: each is a duplicate now.
      for (const r of answers.filter((x) => x.status !== 200)) {
        expect(r.status).toBe(409)
        const retry = await a.billing.webhook({ body, headers: headers() })
        expect(retry.body['duplicate']).toBe(true)
      }
      expect((await a.tb.accounts.get(account)).balance).toBe(250)
    },
  )

  it.skipIf(skip)(
    'instances noting accounts at once lose none from the meter journal',
    async () => {
      const storage = await makeStorage()
      const healers = [instance(storage), instance(storage), instance(storage)].map(
        ({ tb, billing }) =>
          createMeterHealer(tb, billing.meter!, { intervalMs: 0 }, (err) => {
            throw err
          }),
      )
      const ids = (h: number) => Array.from({ length: 15 }, (_, i) => `acct_j${h}_${i}`)
      await Promise.all(
        healers.flatMap((healer, h) =>
          ids(h).map((accountId, i) =>
            healer.noteAhead([usageEvent(i, { accountId, overage: 1, time: T0 - i })]),
          ),
        ),
      )
      const journal = (await storage.accounts.get(METER_JOURNAL_ID))?.metadata['dirty'] as Record<
        string,
        { from: number }
      >
      expect(Object.keys(journal).sort()).toEqual([...ids(0), ...ids(1), ...ids(2)].sort())
      expect(journal['acct_j1_7']?.from).toBe(T0 - 7)
    },
  )

  it.skipIf(skip)('overage a dead process held is delivered once by the next one', async () => {
    const storage = await makeStorage()
    const first = instance(storage)
    const account = `acct_${Math.random().toString(36).slice(2, 10)}`
    await first.tb.accounts.setTier(account, 'pro')
    await first.billing.customerFor(account)
    const { key } = await first.tb.keys.create({ accountId: account, name: 'k' })
    await serve(first.tb, key, 5) // overage 2, 4, 4
    await first.billing.meter!.flush()
    await fake.stop()
    await serve(first.tb, key, 2) // overage 4, 4: queued, never sent
    await first.billing.close()
    await fake.start()

    const next = instance(storage)
    const before = await next.billing.reconcile(account, { redeliver: true })
    expect(before).toMatchObject({
      recorded: { events: 5, overage: 18 },
      delivered: { events: 3, overage: 10 },
      missing: { events: 2, overage: 8 },
      redelivered: 2,
    })
    expect(await next.billing.meter!.flush()).toMatchObject({ delivered: 2, skipped: 0 })
    const mine = fake.meterEvents.filter((e) => e.customer === fake.meterEvents.at(-1)!.customer)
    expect(mine).toHaveLength(5)
    expect(mine.reduce((s, e) => s + e.value, 0)).toBe(18)
    const after = await next.billing.reconcile(account, { redeliver: true })
    expect(after.drift).toBe(0)
    expect(after.redelivered).toBe(0)
    await next.billing.close()
  })

  // `__proto__` and `constructor` are valid account ids: the journal keys its entries by them.
  it.skipIf(skip).each(['acct_', '__proto__', 'constructor'])(
    'overage of a process killed before it sent it is sent by the next one at start, once (account %s)',
    async (name) => {
      const storage = await makeStorage()
      const clock = manualClock(T0)
      const first = instance(storage, clock, true)
      const account = name === 'acct_' ? `acct_${Math.random().toString(36).slice(2, 10)}` : name
      await first.tb.accounts.setTier(account, 'pro')
      const customer = await first.billing.customerFor(account)
      const { key } = await first.tb.keys.create({ accountId: account, name: 'k' })
      const mine = () => fake.meterEvents.filter((e) => e.customer === customer)
      const sends = () =>
        fake.requests.filter(
          (r) =>
            r.path === '/v1/billing/meter_events' &&
            r.form['payload[stripe_customer_id]'] === customer,
        )
      await serve(first.tb, key, 5) // overage 2, 4, 4
      await first.billing.meter!.flush()
      expect(mine()).toHaveLength(3)
      clock.advance(1_000)
      await serve(first.tb, key, 2) // overage 4, 4: recorded, queued, and the process dies
      expect(first.billing.meter!.pending).toBe(2)

      // A new process on the same storage; nobody calls reconcile.
      const next = instance(storage, clock, true)
      await vi.waitFor(() => expect(mine()).toHaveLength(5), { timeout: 10_000 })
      await next.billing.heal() // joins the start pass if it is still running, else one more
      expect(sends()).toHaveLength(5) // each sent once, nothing twice
      expect(new Set(mine().map((e) => e.identifier)).size).toBe(5)
      expect(mine().reduce((s, e) => s + e.value, 0)).toBe(18)
      const journal = async () =>
        (await storage.accounts.get(METER_JOURNAL_ID))?.metadata['dirty'] as Record<string, unknown>
      // Noted a moment ago: kept until the settle time has passed, then cleared.
      expect(await journal()).toHaveProperty(account)
      clock.advance(HEAL_SETTLE_MS + 1_000)
      expect(await next.billing.heal()).toMatchObject({ redelivered: 0 })
      expect(await journal()).not.toHaveProperty(account)
      // The dead process's queue, were it ever flushed, sends nothing again.
      expect(await first.billing.meter!.flush()).toMatchObject({ delivered: 0, skipped: 2 })
      expect(sends()).toHaveLength(5)
      expect((await next.billing.reconcile(account)).drift).toBe(0)
    },
  )

  it.skipIf(skip)(
    'overage of a process that died the moment its usage was written is sent by the next one',
    async () => {
      const storage = await makeStorage()
      // The first process writes its usage and never gets further (it dies there).
      let revive = () => {}
      const usage: Storage['usage'] = Object.create(storage.usage)
      usage.record = async (events) => {
        await storage.usage.record(events)
        await new Promise<void>((r) => {
          revive = r
        })
      }
      const clock = manualClock(T0)
      const first = instance({ ...storage, usage }, clock, true)
      const account = `acct_${Math.random().toString(36).slice(2, 10)}`
      await first.tb.accounts.setTier(account, 'pro')
      const customer = await first.billing.customerFor(account)
      const { key, record } = await first.tb.keys.create({ accountId: account, name: 'k' })
      const route = first.tb.route({ cost: 4 })
      for (let i = 0; i < 5; i++) {
        const d = await first.tb.authenticate(
          {
            headers: { authorization: `Bearer ${key}` },
            ip: '127.0.0.1',
            method: 'POST',
            path: '/x',
          },
          route,
        )
        await first.tb.settle(d, { status: 200 })
      }
      first.tb.flush().catch(() => {}) // waits on the dead write
      await vi.waitFor(async () =>
        expect((await storage.usage.logs(record.id, { limit: 10 })).data).toHaveLength(5),
      )
      expect(first.billing.meter!.pending).toBe(0) // never learnt of its overage

      const sends = () =>
        fake.requests.filter(
          (r) =>
            r.path === '/v1/billing/meter_events' &&
            r.form['payload[stripe_customer_id]'] === customer,
        )
      instance(storage, clock, true)
      await vi.waitFor(() => expect(sends()).toHaveLength(3), { timeout: 10_000 })
      const mine = fake.meterEvents.filter((e) => e.customer === customer)
      expect(mine.map((e) => e.value).sort()).toEqual([2, 4, 4])
      // Brought back, the first process queues its overage and sends none of it again.
      revive()
      await vi.waitFor(() => expect(first.billing.meter!.pending).toBe(3))
      expect(await first.billing.meter!.flush()).toMatchObject({ delivered: 0, skipped: 3 })
      expect(sends()).toHaveLength(3)
    },
  )
  it.skipIf(skip)(
    'overage of a long request flushed after the account was noted is healed too (its time is earlier than the note’s)',
    async () => {
      const storage = await makeStorage()
      const clock = manualClock(T0)
      const first = instance(storage, clock, true)
      const account = `acct_${Math.random().toString(36).slice(2, 10)}`
      await first.tb.accounts.setTier(account, 'pro')
      const customer = await first.billing.customerFor(account)
      const { key } = await first.tb.keys.create({ accountId: account, name: 'k' })
      await serve(first.tb, key, 2) // 8 of 10 credits
      // A long request (a stream) starts; its usage event carries its start time.
      const long = await admit(first.tb, key)
      expect(long.allowed).toBe(true)
      clock.advance(120_000)
      await serve(first.tb, key, 1) // overage, noted: from 2 minutes after the long one
      clock.advance(1_000)
      await first.tb.settle(long, { status: 200 }) // overage 4, at the time it started
      await first.tb.flush()
      expect(first.billing.meter!.pending).toBe(2) // queued; the process dies

      const sends = () => sendsOf(customer)
      const next = instance(storage, clock, true)
      await vi.waitFor(() => expect(sends().length).toBeGreaterThan(0), { timeout: 10_000 })
      await next.billing.heal()
      expect(sends()).toHaveLength(2)
      expect((await next.billing.reconcile(account)).drift).toBe(0)
    },
  )

  it.skipIf(skip)(
    'an account whose healing fails (its usage read refused) holds up no other account of the pass',
    async () => {
      const storage = await makeStorage()
      const clock = manualClock(T0)
      const first = instance(storage, clock)
      const served = []
      for (const name of ['a', 'b']) {
        const account = `acct_${name}_${Math.random().toString(36).slice(2, 10)}`
        await first.tb.accounts.setTier(account, 'pro')
        const customer = await first.billing.customerFor(account)
        const { key, record } = await first.tb.keys.create({ accountId: account, name: 'k' })
        await serve(first.tb, key, 3) // overage 2, queued; the process dies
        served.push({ account, customer, keyId: record.id })
        clock.advance(1_000) // a's overage is older: healed first
      }
      const [a, b] = served as [(typeof served)[0], (typeof served)[0]]
      expect(first.billing.meter!.pending).toBe(2)
      // The next process's store refuses a's usage reads (a store error for that account).
      let refuse = true
      const usage: Storage['usage'] = Object.create(storage.usage)
      usage.logs = (keyId, opts) =>
        refuse && keyId === a.keyId
          ? Promise.reject(new Error('usage read refused'))
          : storage.usage.logs(keyId, opts)
      const errors: unknown[] = []
      const next = instance({ ...storage, usage }, clock, false, {}, (err) => errors.push(err))
      const r = await next.billing.heal()
      // b healed in the same pass; a reported and left for the next one.
      expect(sendsOf(b.customer)).toHaveLength(1)
      expect(sendsOf(a.customer)).toHaveLength(0)
      expect(r).toMatchObject({ accounts: 2, redelivered: 1 })
      expect(errors.map((e) => (e as Error).message)).toContain('usage read refused')
      const journal = (await storage.accounts.get(METER_JOURNAL_ID))?.metadata['dirty']
      expect(journal).toHaveProperty(a.account)
      // The store answers again: a later pass (past the settle time) sends a's, b's not again.
      refuse = false
      clock.advance(HEAL_SETTLE_MS + 1_000)
      await next.billing.heal()
      expect(sendsOf(a.customer)).toHaveLength(1)
      expect(sendsOf(b.customer)).toHaveLength(1)
    },
  )

  it.skipIf(skip)(
    'billing.close() during a healing pass with Stripe not answering waits for one account, not the pass',
    async () => {
      const storage = await makeStorage()
      const clock = manualClock(T0)
      const first = instance(storage, clock)
      for (let i = 0; i < 15; i++) {
        const account = `acct_${Math.random().toString(36).slice(2, 10)}`
        await first.tb.accounts.setTier(account, 'pro')
        await first.billing.customerFor(account)
        const { key } = await first.tb.keys.create({ accountId: account, name: 'k' })
        await serve(first.tb, key, 3) // overage 2, queued; the process dies
      }
      expect(first.billing.meter!.pending).toBe(15)
      fake.hang('/v1/billing/meter_events')
      try {
        const next = instance(storage, clock, true, { timeoutMs: 400 })
        // The start pass is on its first account (a send waiting for Stripe).
        await vi.waitFor(() =>
          expect(
            fake.requests.filter((r) => r.path === '/v1/billing/meter_events').length,
          ).toBeGreaterThan(0),
        )
        const t = performance.now()
        await next.billing.close()
        const ms = performance.now() - t
        await next.tb.close()
        // The account under way (a send's timeout, its reads) and the meter's last flush: 0-3 s
        // (PostgreSQL, beside the other tests' instances). It waited for the whole pass, 15
        // accounts of a timeout each: 6.5 s.
        expect(ms).toBeLessThan(4_000)
      } finally {
        fake.hang(null)
      }
    },
  )
})

describe.skipIf(skipPostgres)('the meter journal and usage writes (PostgreSQL)', () => {
  /** A storage on a fresh schema and a pool of its own (the other tests' instances are still open on the shared one). */
  const ownStorage = async () => {
    const { schema, drop } = await freshSchema(pool!)
    const own = newPool(10)
    cleanups.push(drop, () => own.end())
    const storage = postgresStorage({ pool: own, schema })
    closers.push(async () => storage.close?.())
    return { storage, schema }
  }
  /** Runs `body` while the account table is locked (a migration rewriting it, a long transaction on it). */
  const whileLocked = async (schema: string, body: () => Promise<void>) => {
    const locker = await pool!.connect()
    try {
      await locker.query('BEGIN')
      await locker.query(`LOCK TABLE "${schema}".accounts IN ACCESS EXCLUSIVE MODE`)
      await body()
    } finally {
      await locker.query('ROLLBACK')
      locker.release()
    }
  }
  /** How long `close` took, or Infinity when it had not ended after `ms`. */
  const closesWithin = async (close: () => Promise<unknown>, ms: number) => {
    const c = performance.now()
    const ended = await Promise.race([
      close().then(() => true),
      new Promise((r) => setTimeout(r, ms, false)),
    ])
    return ended ? performance.now() - c : Number.POSITIVE_INFINITY
  }

  it('a journal that cannot be written (its table locked) holds usage writes one storage timeout, not until it can', async () => {
    const { storage, schema } = await ownStorage()
    const { tb, billing } = instance(storage)
    const account = `acct_${Math.random().toString(36).slice(2, 10)}`
    await tb.accounts.setTier(account, 'pro')
    await billing.customerFor(account)
    const { key, record } = await tb.keys.create({ accountId: account, name: 'k' })
    await serve(tb, key, 2) // 8 of 10 credits
    for (let i = 0; i < 3; i++) {
      const d = await admit(tb, key)
      await tb.settle(d, { status: 200 }) // overage: a note in the journal before the write
    }
    // The account table locked (a migration rewriting it, a long transaction on it).
    await whileLocked(schema, async () => {
      const t = performance.now()
      tb.flush().catch(() => {})
      await vi.waitFor(
        async () =>
          expect((await storage.usage.logs(record.id, { limit: 10 })).data).toHaveLength(5),
        { timeout: 6_000, interval: 100 },
      )
      // Written after the write-ahead's bound (storageTimeoutMs, 2 s); it waited for the lock.
      expect(performance.now() - t).toBeLessThan(4_000)
      // A shutdown meanwhile: the healer's close() waits for its notes a bounded time (it
      // waited for the lock).
      const healer = createMeterHealer(tb, billing.meter!, { intervalMs: 0 }, () => {})
      void healer.noteAhead([usageEvent(0, { accountId: `${account}_b`, overage: 1, time: T0 })])
      expect(await closesWithin(() => healer.close(), 8_000)).toBeLessThan(4_000)
    })
    // Noted once the lock is gone (the note under way when the lock was taken, which close()
    // left running).
    await vi.waitFor(async () =>
      expect((await storage.accounts.get(METER_JOURNAL_ID))?.metadata['dirty']).toHaveProperty(
        account,
      ),
    )
  }, 20_000)

  it('billing.close() with overage queued and the account table locked ends within its bound; the next process sends it, once', async () => {
    const { storage, schema } = await ownStorage()
    const clock = manualClock(T0)
    const { tb, billing } = instance(storage, clock)
    const account = `acct_${Math.random().toString(36).slice(2, 10)}`
    await tb.accounts.setTier(account, 'pro')
    const customer = await billing.customerFor(account)
    const { key } = await tb.keys.create({ accountId: account, name: 'k' })
    await serve(tb, key, 5) // overage 2, 4, 4: recorded, noted, queued (sent in an hour)
    expect(billing.meter!.pending).toBe(3)
    await tb.close()
    // The account table locked: the out-box's read of the customer waits for it.
    await whileLocked(schema, async () => {
      // Each store wait within storageTimeoutMs (2 s), and close() within the core's 10 s;
      // it waited for the lock, as long as it is held (Infinity: not ended after 12 s).
      expect(await closesWithin(() => billing.close(), 12_000)).toBeLessThan(5_000)
      expect(sendsOf(customer)).toHaveLength(0)
    })
    // Nothing lost: the next process's healing sends it at start, each event once.
    const next = instance(storage, clock, true)
    await vi.waitFor(() => expect(sendsOf(customer)).toHaveLength(3), { timeout: 10_000 })
    await next.billing.heal()
    expect(sendsOf(customer)).toHaveLength(3)
    const mine = fake.meterEvents.filter((e) => e.customer === customer)
    expect(mine.map((e) => e.value).sort()).toEqual([2, 4, 4])
    expect((await next.billing.reconcile(account)).drift).toBe(0)
  }, 30_000)
})
