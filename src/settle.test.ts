/**
 * @module settle.test
 *
 * settle(): each cost form, reserve -> settle -> refund, the charge policy, one usage event
 * per request (also when settled twice or retried with the same Idempotency-Key), and
 * reservations that are never settled.
 */

import { describe, expect, it } from 'vitest'
import { admitted, denied, events, req, setup } from '../test/metering/helpers.js'
import { ConfigError } from './errors.js'
import { readHeader } from './request.js'
import { syncCountersFromState } from './storage/state-counters.js'

const PLANS = { pro: { monthlyCredits: 100 } }
const metered = { plans: PLANS, defaultTier: 'pro' }

describe('settle: cost forms', () => {
  it('charges a fixed route cost and records one event with every field', async () => {
    const { tb, clock, key, keyId } = await setup(metered)
    const route = tb.route({ cost: 2, category: 'tts' })
    const d = admitted(await tb.authenticate(req(key), route))
    clock.advance(150)
    const e = await tb.settle(d, { status: 200 })
    expect(e).toEqual({
      id: expect.stringMatching(/^req_/),
      requestId: d.requestId,
      keyId,
      accountId: 'acct_1',
      time: clock.now() - 150,
      units: 2,
      overage: 0,
      tokens: 0,
      category: 'tts',
      keyCategory: null,
      status: 200,
      durationMs: 150,
      ttfbMs: null,
      code: null,
      ip: '127.0.0.1',
      method: 'POST',
      path: '/v1/synthesize',
      bypassed: false,
      provider: null,
    })
    expect(await events(tb, keyId)).toEqual([{ ...e }])
    expect((await tb.accounts.get('acct_1')).credits).toEqual({
      used: 2,
      limit: 100,
      remaining: 98,
    })
  })

  it('reserves a cost computed from the request and charges it', async () => {
    const { tb, key } = await setup(metered)
    const route = tb.route({ cost: (r) => Number(readHeader(r.headers, 'x-units') ?? 1) })
    const d = admitted(await tb.authenticate(req(key, { 'x-units': '7' }), route))
    // Held before the handler runs: a concurrent request already sees it.
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
    expect((await tb.settle(d, { status: 200 }))?.units).toBe(7)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
  })

  it('throws naming the route option when the cost function returns a bad number', async () => {
    const { tb, key } = await setup(metered)
    for (const bad of [Number.NaN, -1, Infinity]) {
      const route = tb.route({ cost: () => bad })
      await expect(tb.authenticate(req(key), route)).rejects.toThrow(
        /tb\.route: options\.cost\(request\) must return/,
      )
    }
    // Nothing was held or poisoned.
    expect((await tb.accounts.get('acct_1')).credits).toEqual({
      used: 0,
      limit: 100,
      remaining: 100,
    })
  })

  it('charges the sum of charge() calls instead of the estimate, refunding the rest', async () => {
    const { tb, key } = await setup(metered)
    const d = admitted(await tb.authenticate(req(key), tb.route({ cost: 10 })))
    d.charge(3)
    d.charge(4)
    expect(d.cost).toBe(7)
    expect((await tb.settle(d, { status: 200 }))?.units).toBe(7)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
  })

  it('charges a request settled past its holds TTL once, by a record of its own, its slot freed (in process)', async () => {
    const { tb, clock, key } = await setup(
      { ...metered, reservationTtlMs: 1000, leaseTtlMs: 1000 },
      undefined,
      { limits: { concurrency: 1 } },
    )
    const route = tb.route({ cost: 10 })
    const late = admitted(await tb.authenticate(req(key), route))
    // Its holds lapse (no renewal reached them): its settle is no longer surely held.
    clock.advance(5000)
    late.report({ cost: 7 })
    expect((await tb.settle(late, { status: 200 }))?.units).toBe(7)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
    // The store found each counter again without the places of admission (a record's key
    // among them), and the next request's settle within its TTL uses them as before.
    const next = admitted(await tb.authenticate(req(key), route))
    expect((await tb.settle(next, { status: 200, cost: 2 }))?.units).toBe(2)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(9)
    admitted(await tb.authenticate(req(key), route))
  })

  it('charges what the handler reports, through report() or the outcome', async () => {
    const { tb, key } = await setup(metered)
    const route = tb.route({ cost: 20 })
    const a = admitted(await tb.authenticate(req(key), route))
    a.report({ cost: 12, tokens: 340, provider: 'ElevenLabs', category: 'stt' })
    const ea = await tb.settle(a, { status: 200 })
    expect(ea).toMatchObject({ units: 12, tokens: 340, provider: 'elevenlabs', category: 'stt' })
    const b = admitted(await tb.authenticate(req(key), route))
    const eb = await tb.settle(b, { status: 201, cost: 5, tokens: 9 })
    expect(eb).toMatchObject({ units: 5, tokens: 9, status: 201 })
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(17)
  })

  it('caps a report above the estimate at the estimate by default (strict prepaid)', async () => {
    // Issue 20 item 5: a prepaid balance of 30 was charged 1,000.
    const { tb, key } = await setup({ plans: { s: { monthlyCredits: 0 } }, defaultTier: 's' })
    await tb.accounts.addCredits('acct_1', 30)
    const route = tb.route({ cost: 10 })
    for (let i = 0; i < 3; i++) {
      const d = admitted(await tb.authenticate(req(key), route))
      d.report({ cost: 1000 })
      expect(d.cost).toBe(10)
      expect((await tb.settle(d, { status: 200 }))?.units).toBe(10)
    }
    expect((await tb.accounts.get('acct_1')).credits).toEqual({
      used: 30,
      limit: 30,
      remaining: 0,
    })
    expect(denied(await tb.authenticate(req(key), route)).status).toBe(402)
    // overrun: 'cap' says the same on a plan that allows overage.
    const o = await setup({
      plans: { s: { monthlyCredits: 5, allowOverage: true } },
      defaultTier: 's',
    })
    const od = admitted(
      await o.tb.authenticate(req(o.key), o.tb.route({ cost: 1, overrun: 'cap' })),
    )
    expect((await o.tb.settle(od, { status: 200, cost: 8 }))?.units).toBe(1)
  })

  it('caps a report at the estimate on a key budget', async () => {
    // Issue 20 item 5: a key budget of 20 was charged 1,000.
    const { tb } = await setup(metered)
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { budget: 20 } })
    const route = tb.route({ cost: 5 })
    let charged = 0
    for (let i = 0; i < 6; i++) {
      const d = await tb.authenticate(req(key), route)
      if (!d.allowed) break
      charged += (await tb.settle(d, { status: 200, cost: 1000 }))?.units ?? 0
    }
    expect(charged).toBe(20)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(20)
  })

  it('charges an overdraft up to maxOverdraft, then refuses until a top-up pays it', async () => {
    const { tb, key } = await setup({ plans: { s: { monthlyCredits: 0 } }, defaultTier: 's' })
    await tb.accounts.addCredits('acct_1', 30)
    const route = tb.route({ cost: 10, overrun: { maxOverdraft: 50 } })
    const a = admitted(await tb.authenticate(req(key), route))
    // 20 left after this hold, 50 of overdraft: at most 10 + 20 + 50.
    expect((await tb.settle(a, { status: 200, cost: 1000 }))?.units).toBe(80)
    expect((await tb.accounts.get('acct_1')).credits).toEqual({
      used: 80,
      limit: 30,
      remaining: 0,
    })
    expect(denied(await tb.authenticate(req(key), route)).status).toBe(402)
    // A top-up that only pays part of the debt leaves the account refused; one that pays it all
    // lets requests in again.
    await tb.accounts.addCredits('acct_1', 40)
    expect(denied(await tb.authenticate(req(key), route)).status).toBe(402)
    await tb.accounts.addCredits('acct_1', 20)
    const b = admitted(await tb.authenticate(req(key), route))
    // A report under the estimate is charged as reported.
    expect((await tb.settle(b, { status: 200, cost: 4 }))?.units).toBe(4)
  })

  it('rejects a bad overrun route option, naming it', async () => {
    const { tb } = await setup(metered)
    for (const bad of ['bill', { maxOverdraft: -1 }, { maxOverdraft: 5, extra: 1 }])
      expect(() => tb.route({ cost: 1, overrun: bad as never })).toThrow(
        /tb\.route: options\.overrun/,
      )
  })

  it('report() with a bad value throws and changes nothing', async () => {
    const { tb, key } = await setup(metered)
    const d = admitted(await tb.authenticate(req(key), tb.route({ cost: 10 })))
    d.charge(4)
    expect(() => d.report({ cost: -1, category: 'x' })).toThrow(ConfigError)
    expect(() => d.report({ tokens: Number.NaN })).toThrow(ConfigError)
    expect(() => d.report({ tokens: Infinity })).toThrow(ConfigError)
    expect(() => d.charge(Number.NaN)).toThrow(ConfigError)
    expect(d.cost).toBe(4)
    expect(d.category).toBe(null)
  })

  it('a bad outcome reaches onError and the request settles with its prior charge', async () => {
    const errors: unknown[] = []
    const { tb, key } = await setup({ ...metered, onError: (e) => errors.push(e) })
    const d = admitted(await tb.authenticate(req(key), tb.route({ cost: 3 })))
    const e = await tb.settle(d, { status: 200, cost: -5 })
    expect(e?.units).toBe(3)
    expect(errors).toHaveLength(1)
    // Named as the call that was made, in the format of every bad argument.
    expect(errors[0]).toBeInstanceOf(ConfigError)
    expect((errors[0] as Error).message).toBe(
      'tb.settle: outcome.cost must be a finite number >= 0, got -5',
    )
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(3)
  })
})

describe('settle: refunds and the charge policy', () => {
  it('refunds the whole reservation of a completed response with status >= 400', async () => {
    // An aborted one (499) is billed what its handler reported: see response-end.test.ts.
    const { tb, key, keyId } = await setup(metered)
    const route = tb.route({ cost: 5 })
    for (const status of [400, 404, 500, 503]) {
      const d = admitted(await tb.authenticate(req(key), route))
      d.charge(9)
      expect((await tb.settle(d, { status }))?.units).toBe(0)
    }
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(0)
    expect((await events(tb, keyId)).map((e) => e.units)).toEqual([0, 0, 0, 0])
  })

  it('bills what the route option chargeWhen says', async () => {
    const { tb, key } = await setup(metered)
    const route = tb.route({ cost: 1, chargeWhen: (s) => s < 500 })
    const bill = async (status: number) =>
      (await tb.settle(admitted(await tb.authenticate(req(key), route)), { status }))?.units
    expect(await bill(404)).toBe(1)
    expect(await bill(503)).toBe(0)
    expect(await bill(200)).toBe(1)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(2)
  })

  it('an unsettled reservation expires after reservationTtlMs', async () => {
    const { tb, clock, key } = await setup({
      plans: { one: { monthlyCredits: 1 } },
      defaultTier: 'one',
      reservationTtlMs: 10_000,
    })
    const route = tb.route({ cost: 1 })
    admitted(await tb.authenticate(req(key), route)) // never settled (a crashed handler)
    expect(denied(await tb.authenticate(req(key), route)).status).toBe(402)
    clock.advance(9_999)
    expect(denied(await tb.authenticate(req(key), route)).status).toBe(402)
    clock.advance(2)
    const d = admitted(await tb.authenticate(req(key), route))
    await tb.settle(d, { status: 200 })
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(1)
  })
})

describe('settle: one event per request', () => {
  it('a second settle() does nothing', async () => {
    const { tb, key, keyId } = await setup(metered)
    const d = admitted(await tb.authenticate(req(key), tb.route({ cost: 2 })))
    expect(await tb.settle(d, { status: 200 })).not.toBeNull()
    expect(await tb.settle(d, { status: 200, cost: 50 })).toBeNull()
    expect(await tb.settle(d, { status: 500 })).toBeNull()
    expect(await events(tb, keyId)).toHaveLength(1)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(2)
  })

  it('settling a denial records nothing', async () => {
    const { tb, keyId } = await setup(metered)
    const d = denied(await tb.authenticate(req('sk_live_nope'), tb.route({ cost: 1 })))
    expect(await tb.settle(d, { status: 401 })).toBeNull()
    expect(await events(tb, keyId)).toHaveLength(0)
  })

  it('a retry with the same Idempotency-Key is charged and recorded once', async () => {
    const { tb, key, keyId } = await setup(metered)
    const route = tb.route({ cost: 3, category: 'tts' })
    const h = { 'idempotency-key': 'order-42' }
    const first = admitted(await tb.authenticate(req(key, h), route))
    const retry = admitted(await tb.authenticate(req(key, h), route)) // while the first runs
    expect((await tb.settle(first, { status: 200 }))?.id).toBe(first.requestId)
    expect(await tb.settle(retry, { status: 200 })).toBeNull()
    const later = admitted(await tb.authenticate(req(key, h), route))
    expect(await tb.settle(later, { status: 200 })).toBeNull()
    const other = admitted(
      await tb.authenticate(req(key, { 'idempotency-key': 'order-43' }), route),
    )
    expect(await tb.settle(other, { status: 200 })).not.toBeNull()
    expect(await events(tb, keyId)).toHaveLength(2)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(6)
    expect((await tb.usage.get('acct_1')).requestCount).toBe(2)
  })

  it('a failed attempt does not use the Idempotency-Key up: the retry that succeeds is billed', async () => {
    const { tb, key, keyId } = await setup(metered)
    const route = tb.route({ cost: 3 })
    const h = { 'idempotency-key': 'k-1' }
    await tb.settle(admitted(await tb.authenticate(req(key, h), route)), { status: 502 })
    const ok = await tb.settle(admitted(await tb.authenticate(req(key, h), route)), {
      status: 200,
    })
    expect(ok?.units).toBe(3)
    const log = await events(tb, keyId)
    expect(log.map((e) => e.status).sort()).toEqual([200, 502])
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(3)
  })

  it('the same Idempotency-Key on two keys is two requests', async () => {
    const { tb, key } = await setup(metered)
    const second = (await tb.keys.create({ accountId: 'acct_1', name: 'k2' })).key
    const route = tb.route({ cost: 1 })
    const h = { 'idempotency-key': 'same' }
    for (const k of [key, second])
      expect(
        await tb.settle(admitted(await tb.authenticate(req(k, h), route)), { status: 200 }),
      ).not.toBeNull()
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(2)
  })

  it('the Idempotency-Key is forgotten after 24 hours', async () => {
    const { tb, clock, key, keyId } = await setup(metered)
    const route = tb.route({ cost: 1 })
    const h = { 'idempotency-key': 'daily' }
    await tb.settle(admitted(await tb.authenticate(req(key, h), route)), { status: 200 })
    clock.advance(26 * 3_600_000)
    expect(
      await tb.settle(admitted(await tb.authenticate(req(key, h), route)), { status: 200 }),
    ).not.toBeNull()
    expect(await events(tb, keyId)).toHaveLength(2)
  })
})

describe('settle without a usage event', () => {
  it('releases holds and touches lastUsedAt but records and charges nothing with record: false', async () => {
    const { createTollbooth, manualClock } = await import('./internal.js')
    const clock = manualClock(Date.UTC(2026, 10, 24))
    const tb = createTollbooth({ secret: 'record-false-secret-record-false-secret', clock })
    const { key, record } = await tb.keys.create({
      accountId: 'acct_r',
      limits: { concurrency: 1 },
    })
    const route = tb.route({ cost: 5 })
    const req = { headers: { authorization: `Bearer ${key}` }, ip: null, method: 'GET', path: '/x' }
    const d = await tb.authenticate(req, route)
    expect(d.allowed).toBe(true)
    expect(await tb.settle(d, { status: 200, record: false })).toBeNull()
    // The lease is free again.
    const again = await tb.authenticate(req, route)
    expect(again.allowed).toBe(true)
    await tb.settle(again, { status: 200 })
    await tb.flush()
    const usage = await tb.usage.get('acct_r')
    expect(usage.requestCount).toBe(1)
    expect(usage.credits.used).toBe(5)
    expect((await tb.keys.get(record.id)).lastUsedAt).not.toBeNull()
  })
})

describe('decide() and settleLater(): the adapters synchronous path', () => {
  it('decides a cached key on the memory store without a promise, and settles at once', async () => {
    const { tb, key, keyId } = await setup(metered)
    const route = tb.route({ cost: 5 })
    // The first request reads the key and the account from storage: a promise.
    const first = tb.decide(req(key), route)
    expect(first).toBeInstanceOf(Promise)
    const a = admitted(await first)
    tb.settleLater(a, { status: 200 })
    expect(a.settled).toBe(true)
    const d = tb.decide(req(key), route)
    expect(d).not.toBeInstanceOf(Promise)
    const b = admitted(d as Awaited<typeof d>)
    b.report({ cost: 3 })
    tb.settleLater(b, { status: 200 })
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(8)
    expect((await events(tb, keyId)).map((e) => e.units).sort()).toEqual([3, 5])
  })

  it('settleLater sends a storage failure to onError and never throws', async () => {
    const errors: unknown[] = []
    const { tb, key } = await setup({ ...metered, onError: (e: unknown) => errors.push(e) })
    const route = tb.route({ cost: 1 })
    const d = admitted(await tb.authenticate(req(key), route))
    // In-process counters (the synchronous path) whose every call fails.
    tb.storage.counters = syncCountersFromState({
      transact() {
        throw new Error('counters down')
      },
    })
    expect(() => tb.settleLater(d, { status: 200 })).not.toThrow()
    expect(errors).toEqual([expect.objectContaining({ message: 'counters down' })])
  })
})

describe('flush() and close() wait for settles in flight', () => {
  it('records the event of a request whose settle still waits on remote counters', async () => {
    const { memoryStorage } = await import('./internal.js')
    const storage = memoryStorage()
    const local = storage.counters
    // As a remote store: no in-process marker, and a settle that answers 30 ms later.
    const slow = {
      consume: local.consume,
      held: local.held,
      claim: local.claim,
      claimed: local.claimed,
      unclaim: local.unclaim,
      settle: (ops: Parameters<typeof local.settle>[0], now: number) =>
        new Promise<void>((resolve) => setTimeout(() => resolve(local.settle(ops, now)), 30)),
    }
    const { tb, key, keyId } = await setup({ ...metered, storage: { ...storage, counters: slow } })
    const d = admitted(await tb.authenticate(req(key), tb.route({ cost: 1 })))
    tb.settleLater(d, { status: 200 })
    await tb.flush()
    expect((await events(tb, keyId)).map((e) => e.units)).toEqual([1])
    const again = admitted(await tb.authenticate(req(key), tb.route({ cost: 1 })))
    tb.settleLater(again, { status: 200 })
    await tb.close()
    expect(await events(tb, keyId)).toHaveLength(2)
  })
})
