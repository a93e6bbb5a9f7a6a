/**
 * Metered overage to Stripe through the real `stripe` client and a stand-in Stripe server:
 * each usage event with overage reaches Stripe once, across a lost answer and its retry,
 * Stripe's duplicate-identifier answer, the server down for a while, and a process that died
 * with a full queue; reconciliation ends with drift 0.
 */

import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  isRetryable,
  meterIdentifier,
  meterValue,
  type StripeBilling,
  type StripeBillingOptions,
  stripeBilling,
} from '../../adapters/stripe/index.js'
import {
  createTollbooth,
  HEAL_SETTLE_MS,
  type InvalidRequestError,
  isTollboothError,
  type ManualClock,
  METER_JOURNAL_ID,
  manualClock,
  type ResolvedRoute,
  type Tollbooth,
  type UsageEvent,
} from '../../src/internal.js'
import { type FakeStripe, startFakeStripe } from './stripe-server.js'

const SECRET = 'billing-suite-secret-billing-suite-secret-0003'
const T0 = Date.UTC(2026, 10, 24, 12, 0, 0)
const METER = '/v1/billing/meter_events'
const ACCOUNT = 'acct_m'

let fake: FakeStripe
let clock: ManualClock
let tb: Tollbooth
let billing: StripeBilling
let key: string
let route: ResolvedRoute
let errors: unknown[]
let flushed: UsageEvent[]

const make = (extra: Partial<StripeBillingOptions> = {}) =>
  stripeBilling(tb, {
    stripe: fake.client(),
    webhookSecret: 'whsec_test_secret_0003',
    tiers: { pro: { priceId: 'price_pro', meteredPriceId: 'price_overage' } },
    meterEventName: 'api_overage',
    meter: { intervalMs: 3_600_000, retryMs: 3_600_000 },
    onError: (err) => errors.push(err),
    ...extra,
  })

beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(() => fake.close())
beforeEach(async () => {
  await fake.start() // a test may have left it stopped
  fake.requests.length = 0
  fake.meterEvents.length = 0
  fake.failNext(METER, 0)
  fake.rejectAll(null)
  fake.hang(null)
  errors = []
  flushed = []
  clock = manualClock(T0)
  tb = createTollbooth({
    secret: SECRET,
    clock,
    // 10 credits a month, then overage; tests flush by hand.
    plans: { pro: { monthlyCredits: 10, allowOverage: true, overageRate: 0.01 } },
    usage: { flushIntervalMs: 3_600_000, maxBatch: 10_000, retentionMs: 60 * 86_400_000 },
  })
  tb.onUsageFlushed((events) => flushed.push(...events))
  billing = make()
  await tb.accounts.setTier(ACCOUNT, 'pro')
  await billing.customerFor(ACCOUNT)
  key = (await tb.keys.create({ accountId: ACCOUNT, name: 'k' })).key
  route = tb.route({ cost: 4 })
})

/** Serves `n` requests of cost 4 and flushes usage: 10 credits, then 2, 4, 4, … of overage. */
async function serve(n: number, k = key) {
  for (let i = 0; i < n; i++) {
    const d = await tb.authenticate(
      { headers: { authorization: `Bearer ${k}` }, ip: '127.0.0.1', method: 'POST', path: '/v1/x' },
      route,
    )
    expect(d.allowed).toBe(true)
    await tb.settle(d, { status: 200 })
    clock.advance(1_000)
  }
  await tb.flush()
}

const sentTo = () => fake.requests.filter((r) => r.path === METER)

describe('delivery', () => {
  it('sends each overage event once, with its identifier, customer, time and value', async () => {
    await serve(6)
    const withOverage = flushed.filter((e) => e.overage > 0)
    expect(withOverage.map((e) => e.overage)).toEqual([2, 4, 4, 4])
    expect(billing.meter!.pending).toBe(4)
    const r = await billing.meter!.flush()
    expect(r).toMatchObject({ delivered: 4, duplicates: 0, retrying: 0, rejected: 0 })
    const customer = (await tb.accounts.get(ACCOUNT)).billingCustomerId
    expect(fake.meterEvents).toEqual(
      withOverage.map((e) => ({
        identifier: `tb_${e.id}`,
        event_name: 'api_overage',
        timestamp: Math.floor(e.time / 1000),
        customer,
        value: e.overage,
      })),
    )
    // Flushing again sends nothing.
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 0, skipped: 0 })
    expect(sentTo()).toHaveLength(4)
    const rec = await billing.reconcile(ACCOUNT)
    expect(rec.recorded).toEqual({ events: 4, overage: 14 })
    expect(rec.delivered).toEqual({ events: 4, overage: 14 })
    expect(rec.drift).toBe(0)
  })

  it('a lost answer is retried and Stripe’s duplicate answer counts it once', async () => {
    await serve(6)
    fake.failNext(METER, 2, { afterRecord: true })
    const r1 = await billing.meter!.flush()
    expect(r1).toMatchObject({ delivered: 2, retrying: 2 })
    expect((await billing.reconcile(ACCOUNT)).pending.events).toBe(2)
    const r2 = await billing.meter!.flush()
    expect(r2).toMatchObject({ delivered: 0, duplicates: 2, retrying: 0 })
    expect(sentTo()).toHaveLength(6)
    // The retry is a new request (Stripe would replay a stored 500 for a reused key).
    const byIdentifier = (id: string) => sentTo().filter((q) => q.form['identifier'] === id)
    const retried = fake.meterEvents
      .map((e) => byIdentifier(e.identifier))
      .find((l) => l.length === 2)!
    expect(retried[0]!.headers['idempotency-key']).not.toBe(retried[1]!.headers['idempotency-key'])
    expect(fake.meterEvents).toHaveLength(4)
    expect(fake.meterEvents.reduce((s, e) => s + e.value, 0)).toBe(14)
    expect((await billing.reconcile(ACCOUNT)).drift).toBe(0)
  })

  it('counts an identifier Stripe already has as delivered (a marker lost after sending)', async () => {
    await serve(5)
    const first = flushed.find((e) => e.overage > 0)!
    fake.meterEvents.push({
      identifier: meterIdentifier(first.id),
      event_name: 'api_overage',
      timestamp: Math.floor(first.time / 1000),
      customer: 'cus_x',
      value: first.overage,
    })
    const r = await billing.meter!.flush()
    expect(r).toMatchObject({ delivered: 2, duplicates: 1 })
    expect(fake.meterEvents).toHaveLength(3)
    expect((await billing.reconcile(ACCOUNT)).drift).toBe(0)
  })

  it('an outage only delays delivery: nothing lost, nothing twice', async () => {
    await serve(6)
    await fake.stop()
    const r1 = await billing.meter!.flush()
    expect(r1).toMatchObject({ delivered: 0, retrying: 4 })
    await serve(2) // more overage while Stripe is away
    const during = await billing.reconcile(ACCOUNT)
    expect(during).toMatchObject({ recorded: { events: 6, overage: 22 }, pending: { events: 6 } })
    expect(during.drift).toBe(22)
    expect(await billing.meter!.flush()).toMatchObject({ retrying: 6 })
    await fake.start()
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 6, retrying: 0 })
    expect(fake.meterEvents).toHaveLength(6)
    expect(new Set(fake.meterEvents.map((e) => e.identifier)).size).toBe(6)
    const after = await billing.reconcile(ACCOUNT)
    expect(after.delivered).toEqual({ events: 6, overage: 22 })
    expect(after.drift).toBe(0)
  })

  it('Stripe failing (500, 429) stops the flush at the first failures: the rest waits for the backoff', async () => {
    await serve(44) // 42 events with overage
    expect(billing.meter!.pending).toBe(42)
    fake.failNext(METER, 1_000)
    const r1 = await billing.meter!.flush()
    // The 4 sends in flight (concurrency 4) fail; the other 38 are not sent into the outage.
    expect(sentTo().length).toBeLessThanOrEqual(4)
    expect(r1).toMatchObject({ delivered: 0, retrying: 42 })
    expect(billing.meter!.pending).toBe(42)
    fake.failNext(METER, 0)
    const r2 = await billing.meter!.flush()
    expect(r2).toMatchObject({ delivered: 42, retrying: 0 })
    expect(fake.meterEvents).toHaveLength(42)
    expect((await billing.reconcile(ACCOUNT)).drift).toBe(0)
  })

  it('a Stripe that does not answer holds a flush (and close) for meter.timeoutMs, not the client’s 80 s', async () => {
    await billing.close()
    billing = make({ meter: { intervalMs: 3_600_000, retryMs: 3_600_000, timeoutMs: 300 } })
    await serve(6)
    fake.hang(METER)
    const started = performance.now()
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 0, retrying: 4 })
    expect(performance.now() - started).toBeLessThan(3_000)
    fake.hang(null)
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 4, retrying: 0 })
    expect(fake.meterEvents).toHaveLength(4)
  })

  it('sends nothing for a request that failed (500) or was refused', async () => {
    await serve(3) // 10 credits used, then 2 of overage
    const before = billing.meter!.pending
    const d = await tb.authenticate(
      {
        headers: { authorization: `Bearer ${key}` },
        ip: '127.0.0.1',
        method: 'POST',
        path: '/v1/x',
      },
      route,
    )
    await tb.settle(d, { status: 500 })
    const refused = await tb.authenticate(
      {
        headers: { authorization: 'Bearer tb_live_nope' },
        ip: '127.0.0.1',
        method: 'POST',
        path: '/v1/x',
      },
      route,
    )
    expect(refused.allowed).toBe(false)
    await tb.flush()
    expect(billing.meter!.pending).toBe(before)
    expect(await billing.meter!.flush()).toMatchObject({ delivered: before })
    expect(fake.meterEvents.reduce((s, e) => s + e.value, 0)).toBe(2)
  })

  it('retries on its own, with backoff, once the server is back', async () => {
    await billing.close()
    billing = make({ meter: { intervalMs: 5, retryMs: 5, maxRetryMs: 20 } })
    await fake.stop()
    await serve(4)
    // The automatic send fails (connection refused) and is kept for a retry.
    await vi.waitFor(() => expect(billing.meter!.lastFlush?.retrying).toBe(2), { timeout: 5_000 })
    expect(billing.meter!.pending).toBe(2)
    expect(fake.meterEvents).toHaveLength(0)
    await fake.start()
    await vi.waitFor(() => expect(fake.meterEvents).toHaveLength(2), { timeout: 5_000 })
    expect(billing.meter!.pending).toBe(0)
    await billing.close()
  })

  it('finds what a dead process held and delivers it once after a restart', async () => {
    await serve(6)
    await billing.meter!.flush() // 4 delivered
    await fake.stop()
    await serve(3)
    await billing.close() // the process dies: its flush fails, its queue is gone
    await fake.start()
    // Healing off: reconcile by hand, as an operator's job does.
    const billing2 = make({
      meter: { intervalMs: 3_600_000, retryMs: 3_600_000, healIntervalMs: 0 },
    })
    const lost = await billing2.reconcile(ACCOUNT)
    expect(lost).toMatchObject({
      recorded: { events: 7, overage: 26 },
      delivered: { events: 4, overage: 14 },
      missing: { events: 3, overage: 12 },
      drift: 12,
    })
    expect(lost.missing.ids).toHaveLength(3)
    const again = await billing2.reconcile(ACCOUNT, { redeliver: true })
    expect(again.redelivered).toBe(3)
    expect(await billing2.meter!.flush()).toMatchObject({ delivered: 3 })
    // Queuing everything again sends nothing: the delivered markers hold.
    billing2.meter!.enqueue(flushed)
    expect(await billing2.meter!.flush()).toMatchObject({ delivered: 0, skipped: 7 })
    expect(fake.meterEvents).toHaveLength(7)
    expect(fake.meterEvents.reduce((s, e) => s + e.value, 0)).toBe(26)
    expect((await billing2.reconcile(ACCOUNT)).drift).toBe(0)
    await billing2.close()
  })

  it('heals by itself what a full queue dropped: sent once, and the account leaves the journal', async () => {
    await billing.close()
    billing = make({
      meter: { intervalMs: 3_600_000, retryMs: 3_600_000, maxPending: 2, healIntervalMs: 20 },
    })
    await serve(6) // overage 2, 4, 4, 4: the two oldest dropped from the queue
    expect(billing.meter!.pending).toBe(2)
    expect(errors.filter((e) => String(e).includes('out-box full'))).toHaveLength(2)
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 2 })
    // A pass leaves overage noted within the settle time to its process; past it, the
    // next pass (every 20 ms here) finds the dropped two and sends them.
    clock.advance(HEAL_SETTLE_MS + 1_000)
    await vi.waitFor(() => expect(fake.meterEvents).toHaveLength(4), { timeout: 5_000 })
    await vi.waitFor(async () => {
      const j = await tb.storage.accounts.get(METER_JOURNAL_ID)
      expect(j?.metadata['dirty']).toEqual({})
    })
    expect(sentTo()).toHaveLength(4)
    expect(new Set(fake.meterEvents.map((e) => e.identifier)).size).toBe(4)
    expect(fake.meterEvents.reduce((s, e) => s + e.value, 0)).toBe(14)
    expect((await billing.reconcile(ACCOUNT)).drift).toBe(0)
    await billing.heal() // joins a pass the timer may have running
    expect(await billing.heal()).toEqual({ accounts: 0, redelivered: 0, cleared: 0, left: 0 })
    expect(sentTo()).toHaveLength(4)
  })

  it('holds overage of an account with no Stripe customer out, and delivers it once it has one', async () => {
    await tb.accounts.setTier('acct_new', 'pro')
    const k2 = (await tb.keys.create({ accountId: 'acct_new', name: 'k2' })).key
    await serve(3, k2)
    expect(await billing.meter!.flush()).toMatchObject({ noCustomer: 1, delivered: 0 })
    expect((await billing.reconcile('acct_new')).missing.events).toBe(1)
    await billing.customerFor('acct_new')
    await billing.reconcile('acct_new', { redeliver: true })
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 1 })
    expect((await billing.reconcile('acct_new')).drift).toBe(0)
  })

  it('drops an event Stripe refuses for good and reports it', async () => {
    await serve(3)
    fake.rejectAll(METER)
    expect(await billing.meter!.flush()).toMatchObject({ rejected: 1, retrying: 0 })
    expect(errors).toHaveLength(1)
    expect(String(errors[0])).not.toContain('sk_test')
    expect((await billing.reconcile(ACCOUNT)).missing.events).toBe(1)
  })

  it('healing does not send again what Stripe refused for good; reconcile does, once fixed', async () => {
    await serve(3)
    fake.rejectAll(METER)
    expect(await billing.meter!.flush()).toMatchObject({ rejected: 1 })
    expect(sentTo()).toHaveLength(1)
    clock.advance(HEAL_SETTLE_MS + 1_000)
    expect(await billing.heal()).toMatchObject({ accounts: 1, redelivered: 0, cleared: 1 })
    expect(await billing.heal()).toMatchObject({ accounts: 0, left: 0 })
    expect(sentTo()).toHaveLength(1)
    expect(errors).toHaveLength(1)
    // The cause fixed (the meter created at Stripe), the operator's reconcile sends it.
    fake.rejectAll(null)
    const r = await billing.reconcile(ACCOUNT, { redeliver: true })
    expect(r).toMatchObject({ missing: { events: 1, overage: 2 }, redelivered: 1 })
    expect(await billing.meter!.flush()).toMatchObject({ delivered: 1 })
    expect(fake.meterEvents).toHaveLength(1)
    expect((await billing.reconcile(ACCOUNT)).drift).toBe(0)
  })

  it('reconciles past months and refuses a bad month', async () => {
    await serve(4)
    await billing.meter!.flush()
    expect((await billing.reconcile(ACCOUNT, { month: '2026-11' })).recorded.events).toBe(2)
    expect((await billing.reconcile(ACCOUNT, { month: '2026-10' })).recorded.events).toBe(0)
    await expect(billing.reconcile(ACCOUNT, { month: '2026-13' })).rejects.toThrow('month')
  })

  it('refuses an option of reconcile that is not one, naming it', async () => {
    // Before, `redeliver: 'false'` (or 1) was taken as true and queued the missing overage for
    // Stripe again; `{ redelivr: true }` reconciled without redelivering, without a word.
    for (const [options, path] of [
      [{ redeliver: 'false' }, 'redeliver'],
      [{ redeliver: 1 }, 'redeliver'],
      [{ redelivr: true }, '(root)'],
      ['2026-11', '(root)'],
    ] as const) {
      const err = await billing.reconcile(ACCOUNT, options as never).catch((e: unknown) => e)
      expect(isTollboothError(err) && err.code, JSON.stringify(options)).toBe('invalid_request')
      expect((err as InvalidRequestError).issues.map((i) => i.path)).toEqual([path])
    }
  })
})

describe('helpers', () => {
  it('a usage listener that throws is reported and never fails the flush', async () => {
    const reported: unknown[] = []
    const t = createTollbooth({ secret: SECRET, clock, onError: (e: unknown) => reported.push(e) })
    const seen: number[] = []
    t.onUsageFlushed(() => {
      throw new Error('listener broke')
    })
    const off = t.onUsageFlushed((events) => seen.push(events.length))
    const { key: k } = await t.keys.create({ accountId: 'a', name: 'k' })
    const req = {
      headers: { authorization: `Bearer ${k}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/',
    }
    await t.settle(await t.authenticate(req), { status: 200 })
    await t.flush()
    expect(seen).toEqual([1])
    expect(reported).toHaveLength(1)
    off()
    await t.settle(await t.authenticate(req), { status: 200 })
    await t.flush()
    expect(seen).toEqual([1])
    expect(reported).toHaveLength(2)
  })

  it('derives identifiers within Stripe’s 100 characters', () => {
    expect(meterIdentifier('req_abc1')).toBe('tb_req_abc1')
    const long = meterIdentifier('x'.repeat(200))
    expect(long).toHaveLength(3 + 64)
    expect(meterIdentifier('x'.repeat(200))).toBe(long)
    expect(meterIdentifier('y'.repeat(200))).not.toBe(long)
  })

  it('formats values without float noise or exponents', () => {
    expect(meterValue(4)).toBe('4')
    expect(meterValue(0.1 + 0.2)).toBe('0.3')
    expect(meterValue(1e-7)).toBe('0.0000001')
    expect(meterValue(2.5)).toBe('2.5')
    // Amounts of 5 integer digits and more: toFixed(12) wrote the double's binary noise.
    expect(meterValue(99999.3)).toBe('99999.3')
    expect(meterValue(1234567.1)).toBe('1234567.1')
    expect(meterValue(0.000000001)).toBe('0.000000001')
  })

  it('retries what may succeed later and drops what never will', () => {
    expect(isRetryable({ type: 'StripeConnectionError' })).toBe(true)
    expect(isRetryable({ type: 'StripeAPIError', statusCode: 500 })).toBe(true)
    expect(isRetryable({ type: 'StripeRateLimitError', statusCode: 429 })).toBe(true)
    expect(isRetryable({ type: 'StripeAuthenticationError', statusCode: 401 })).toBe(true)
    expect(isRetryable({ type: 'StripeInvalidRequestError', statusCode: 400 })).toBe(false)
    expect(isRetryable({ type: 'StripeInvalidRequestError', statusCode: 404 })).toBe(false)
  })
})
