/**
 * @module test/limits/memory
 *
 * Memory per key stays bounded in the memory store: counters of keys that went idle are
 * swept as traffic goes on, while counters that still count are kept. A period's credit
 * counter goes a day after the period (before, one counter per account and month stayed for
 * good); an `Idempotency-Key` is one small counter with a name of fixed size, for 24 hours.
 */

import { describe, expect, it } from 'vitest'
import { memoryStorage, periodOf } from '../../src/internal.js'
import { CREDIT_KEEP_MS, creditKey } from '../../src/metering/accounts.js'
import { syncCounters } from '../../src/storage/state-counters.js'
import { DAY, HOUR, MINUTE, req, setup } from './setup.js'

const fourLimits = {
  quotas: { daily: 100, total: 1_000 },
  rateLimits: [{ limit: 60, windowMs: MINUTE }],
  concurrency: 2,
}

describe('memory store counters', () => {
  it('sweeps the counters of idle keys as other traffic goes on', async () => {
    const { tb, clock, storage } = setup()
    for (let i = 0; i < 200; i++) {
      const { key } = await tb.keys.create({
        accountId: `acct_${i}`,
        limits: {
          quotas: { daily: 100 },
          rateLimits: [{ limit: 60, windowMs: MINUTE }],
          concurrency: 2,
        },
      })
      const d = await tb.authenticate(req(key))
      expect(d.allowed).toBe(true)
      await tb.settle(d, { status: 200 })
    }
    // Daily quota and rate limit stay; the released concurrency slots may already be gone.
    expect(storage.counters.size).toBeGreaterThanOrEqual(400)
    // Past the daily windows, and the minute an expired counter's row is kept.
    clock.advance(DAY + HOUR + MINUTE)
    const { key: busy } = await tb.keys.create({ accountId: 'busy', limits: fourLimits })
    for (let i = 0; i < 150; i++) await tb.settle(await tb.authenticate(req(busy)), { status: 200 })
    // Only the busy key's quota counters (daily, total) and rate limit remain.
    expect(storage.counters.size).toBeLessThanOrEqual(3)
  })

  it('keeps the counters that still count: a daily quota used 23 hours ago still refuses', async () => {
    const { tb, clock, storage } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { daily: 1 } } })
    await tb.authenticate(req(key))
    clock.advance(23 * HOUR)
    const { key: busy } = await tb.keys.create({ accountId: 'busy', limits: fourLimits })
    for (let i = 0; i < 300; i++) await tb.settle(await tb.authenticate(req(busy)), { status: 200 })
    expect(storage.counters.sweep(clock.now())).toBe(0)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
  })

  it('keeps a total quota for good, however long the key is idle', async () => {
    const { tb, clock, storage } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { total: 1 } } })
    await tb.authenticate(req(key))
    clock.advance(400 * DAY)
    storage.counters.sweep(clock.now())
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
  })

  it('drops every idle counter at once with sweep()', async () => {
    const { tb, clock, storage } = setup()
    for (let i = 0; i < 20; i++) {
      const { key } = await tb.keys.create({
        accountId: `acct_${i}`,
        limits: { rateLimits: [{ limit: 10, windowMs: 1000 }] },
      })
      await tb.authenticate(req(key))
    }
    expect(storage.counters.sweep(clock.now())).toBe(0)
    clock.advance(99)
    expect(storage.counters.sweep(clock.now())).toBe(0)
    clock.advance(1)
    expect(storage.counters.sweep(clock.now())).toBe(20)
    expect(storage.counters.size).toBe(0)
  })

  it('drops a past period’s credit counter a day after the period, and rolls over from usage', async () => {
    const { tb, clock, storage } = setup({
      plans: { p: { monthlyCredits: 10, carryoverMonths: 1 } },
      defaultTier: 'p',
    })
    const route = tb.route({ cost: 1 })
    const { key } = await tb.keys.create({ accountId: 'acct_p' })
    for (let i = 0; i < 4; i++)
      await tb.settle(await tb.authenticate(req(key), route), { status: 200 })
    const march = periodOf(clock.now())
    const k = creditKey('acct_p', march)
    expect(await storage.counters.held(k, clock.now())).toBe(4)
    await tb.flush() // as the out-box's timer does every second
    // Kept through the first day of April (late settles, the rollover at the turn).
    clock.set(march.end + CREDIT_KEEP_MS - 1)
    storage.counters.sweep(clock.now())
    expect(await storage.counters.held(k, clock.now())).toBe(4)
    clock.set(march.end + CREDIT_KEEP_MS)
    expect(storage.counters.sweep(clock.now())).toBeGreaterThanOrEqual(1)
    expect(await storage.counters.held(k, clock.now())).toBe(0)
    // April's rollover reads March's use from the usage: 6 unused credits carried over.
    const april = await tb.accounts.get('acct_p')
    expect(april.carryover).toBe(6)
    expect(april.credits).toMatchObject({ used: 0, limit: 16 })
    // March's figures, its counter gone, come from the usage.
    expect((await tb.accounts.get('acct_p', march)).credits.used).toBe(4)
    expect((await tb.usage.get('acct_p', { month: march.id })).credits.used).toBe(4)
  })

  it('keeps one credit counter per account, however many periods pass (10,000 accounts, 24 months)', () => {
    const c = memoryStorage().counters
    let most = 0
    for (let m = 0; m < 24; m++) {
      const now = Date.UTC(2026, m, 10, 12)
      const period = periodOf(now)
      const keepUntil = period.end + CREDIT_KEEP_MS
      for (let a = 0; a < 10_000; a++) {
        const key = creditKey(`acct_${a}`, period)
        syncCounters(c)!.consume(
          [
            {
              type: 'hold',
              key,
              name: 'credits',
              limit: 100,
              amount: 1,
              holdId: 'r',
              ttlMs: 60_000,
              keepUntil,
            },
          ],
          now,
        )
        syncCounters(c)!.settle([{ type: 'release', key, holdId: 'r', charge: 1, keepUntil }], now)
      }
      most = Math.max(most, c.size)
    }
    // At most last month's (until it is swept) and this month's.
    expect(most).toBeLessThanOrEqual(20_000)
    c.sweep(Date.UTC(2027, 11, 10, 12))
    expect(c.size).toBe(10_000)
  })

  it('reaches a counter by its place, and never by a stale one (a row another counter took)', () => {
    const c = memoryStorage().counters
    const sync = syncCounters(c)!
    const now = Date.UTC(2027, 0, 5, 12)
    const gcra = (key: string, limit: number) =>
      ({ type: 'gcra', key, name: 'per-minute', limit, windowMs: MINUTE, cost: 1 }) as const
    const a = gcra('{x}:a', 2)
    const place = { where: -1, stamp: 0 }
    expect(sync.consume([a], now, undefined, [place]).allowed).toBe(true)
    const row = place.where
    expect(row).toBeGreaterThanOrEqual(0)
    expect(sync.consume([a], now, undefined, [place]).allowed).toBe(true)
    expect(place.where).toBe(row)
    // The place counts: a third request in the minute is refused.
    expect(sync.consume([a], now, undefined, [place]).allowed).toBe(false)
    // a's counter dropped; b takes its row; the stale place must not read b's counter.
    expect(c.sweep(now + 2 * MINUTE)).toBe(1)
    const b = gcra('{x}:b', 1)
    expect(sync.consume([b], now + 2 * MINUTE).allowed).toBe(true)
    expect(sync.consume([a], now + 2 * MINUTE, undefined, [place]).allowed).toBe(true)
    expect(place.where).not.toBe(row)
    // Each counter kept its own count: b (limit 1) refuses, a (limit 2) admits once more.
    expect(sync.consume([b], now + 2 * MINUTE).allowed).toBe(false)
    expect(sync.consume([a], now + 2 * MINUTE, undefined, [place]).allowed).toBe(true)
    expect(sync.consume([a], now + 2 * MINUTE, undefined, [place]).allowed).toBe(false)
  })

  it('keeps none of the objects a call reuses: each counter keeps its own figures, call after call', async () => {
    // A call's states, writes, keys and value lists are handed out again by the next call
    // (`reuseWrites`, `stateOf`'s pool): a store that kept one would show another counter's
    // figures, or a later call's, here.
    const c = memoryStorage().counters
    const sync = syncCounters(c)!
    const now = Date.UTC(2027, 0, 5, 12)
    const quota = {
      type: 'window',
      key: '{x}:q',
      name: 'daily',
      limit: 3,
      windowMs: DAY,
      bucketMs: HOUR,
      cost: 1,
    } as const
    const rate = {
      type: 'gcra',
      key: '{x}:r',
      name: 'rate',
      limit: 2,
      windowMs: MINUTE,
      cost: 1,
    } as const
    const hold = (holdId: string, amount: number) =>
      ({
        type: 'hold',
        key: '{x}:c',
        name: 'credits',
        limit: 10,
        amount,
        holdId,
        ttlMs: MINUTE,
      }) as const
    const used = (checks: Parameters<typeof sync.consume>[0], at = now) =>
      sync.consume(checks, at).results.map((r) => r.used)
    expect(used([quota, hold('h1', 4)])).toEqual([1, 4])
    expect(used([rate])).toEqual([1])
    expect(used([hold('h2', 2), quota])).toEqual([6, 2])
    sync.settle([{ type: 'release', key: '{x}:c', holdId: 'h1', charge: 1 }], now)
    expect(used([rate, quota])).toEqual([2, 3])
    expect(await c.held('{x}:c', now)).toBe(3)
    sync.settle([{ type: 'release', key: '{x}:c', holdId: 'h2', charge: 2 }], now)
    expect(await c.held('{x}:c', now)).toBe(3)
    // Refused ones count nothing, and leave the others as they were.
    expect(sync.consume([quota, hold('h3', 1)], now).allowed).toBe(false)
    expect(sync.consume([rate], now).allowed).toBe(false)
    expect(used([hold('h4', 7)])).toEqual([10])
    expect(await c.held('{x}:c', now)).toBe(10)
  })

  it('never reaches a counter by a place kept from another store', () => {
    const now = Date.UTC(2027, 0, 5, 12)
    const gcra = (key: string, limit: number) =>
      ({ type: 'gcra', key, name: 'per-minute', limit, windowMs: MINUTE, cost: 1 }) as const
    const one = syncCounters(memoryStorage().counters)!
    const two = syncCounters(memoryStorage().counters)!
    const place = { where: -1, stamp: 0 }
    expect(one.consume([gcra('{x}:a', 5)], now, undefined, [place]).allowed).toBe(true)
    // The other store's first counter takes the same row, full after one request.
    const b = gcra('{x}:b', 1)
    expect(two.consume([b], now).allowed).toBe(true)
    expect(two.consume([b], now).allowed).toBe(false)
    const row = place.where
    // a on the other store: its own counter (limit 5), not b's row.
    expect(two.consume([gcra('{x}:a', 5)], now, undefined, [place]).allowed).toBe(true)
    expect(place.where).not.toBe(row)
    expect(two.consume([b], now).allowed).toBe(false)
  })

  it('keeps a settled Idempotency-Key as one counter with a short name, for 24 hours', async () => {
    const { tb, clock, storage } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_idem' })
    const headers = { authorization: `Bearer ${key}`, 'idempotency-key': 'x'.repeat(255) }
    const call = async () => {
      const d = await tb.authenticate({ headers, ip: null, method: 'POST', path: '/' })
      return tb.settle(d, { status: 200 })
    }
    expect(await call()).not.toBeNull()
    expect(storage.counters.size).toBe(1)
    expect(await call()).toBeNull()
    clock.advance(DAY - 1)
    expect(await call()).toBeNull()
    clock.advance(1)
    expect(storage.counters.sweep(clock.now())).toBe(1)
    expect(await call()).not.toBeNull()
  })
})
