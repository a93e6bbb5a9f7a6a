/**
 * @module test/storage/postgres-counters
 *
 * The PostgreSQL counters beyond the shared conformance suite: no lost update across two
 * instances (two pools) racing on the same counters named in opposite orders, no deadlock,
 * nothing written by a refused admission, settle and consume interleaved, the `expires_at`
 * of each kind of counter, and pruning (explicit and every `pruneEvery` admissions).
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PostgresStorage, postgresStorage } from '../../adapters/postgres/index.js'
import { type Check, memoryStorage } from '../../src/index.js'
import { freshSchema, newPool, skipPostgres } from './postgres-fixture.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.UTC(2026, 0, 15, 12)

let seq = 0
const name = (what: string) => `{acct_${++seq}_${Math.random().toString(36).slice(2)}}:${what}`

const daily = (key: string, limit: number): Extract<Check, { type: 'window' }> => ({
  type: 'window',
  key,
  name: 'daily',
  limit,
  windowMs: DAY,
  bucketMs: HOUR,
  cost: 1,
})
const perSecond = (key: string, limit: number): Check => ({
  type: 'gcra',
  key,
  name: 'per-second',
  limit,
  windowMs: 1000,
  cost: 1,
})
const lease = (key: string, limit: number, holdId: string, ttlMs = 60_000): Check => ({
  type: 'hold',
  key,
  name: 'concurrency',
  limit,
  amount: 1,
  holdId,
  ttlMs,
})

describe.skipIf(skipPostgres)('postgres counters', () => {
  let a: pg.Pool
  let b: pg.Pool
  let drop: () => Promise<void> = async () => {}
  let schema = ''
  let one: PostgresStorage
  let two: PostgresStorage

  const rows = async (keys: string[]) =>
    (
      await a.query<{ key: string; kind: string; expires_at: string | null }>(
        `SELECT key, kind, expires_at FROM "${schema}".counters WHERE key = ANY($1) ORDER BY key`,
        [keys],
      )
    ).rows

  beforeAll(async () => {
    a = newPool(20)
    b = newPool(20)
    const s = await freshSchema(a)
    schema = s.schema
    drop = s.drop
    one = postgresStorage({ pool: a, schema, pruneEvery: 0 })
    two = postgresStorage({ pool: b, schema, pruneEvery: 0 })
  })

  afterAll(async () => {
    await one?.close()
    await two?.close()
    await drop()
    await Promise.all([a?.end(), b?.end()])
  })

  it('admits exactly 50 of 200 concurrent requests from two instances, keys in either order', async () => {
    const quota = name('q:daily')
    const leases = name('c')
    const all = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const checks = [daily(quota, 50), lease(leases, 1000, `r${i}`)]
        // Half the callers name the counters in the opposite order, on the other pool.
        return i % 2 ? one.counters.consume(checks, T0) : two.counters.consume(checks.reverse(), T0)
      }),
    )
    const admitted = all.filter((r) => r.allowed)
    expect(admitted).toHaveLength(50)
    const used = admitted
      .map((r) => r.results.find((x) => x.limit === 50)!.used)
      .sort((x, y) => x - y)
    expect(used).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    expect(await one.counters.held(leases, T0)).toBe(50)
    expect(await two.counters.held(leases, T0)).toBe(50)
  })

  it('loses no settle among 100 concurrent admissions and 100 concurrent releases', async () => {
    const credits = name('credits')
    const hold = (i: number): Check => ({
      type: 'hold',
      key: credits,
      name: 'credits',
      limit: Infinity,
      amount: 5,
      holdId: `h${i}`,
      ttlMs: 60_000,
    })
    await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const s = i % 2 ? one : two
        expect((await s.counters.consume([hold(i)], T0)).allowed).toBe(true)
        await s.counters.settle([{ type: 'release', key: credits, holdId: `h${i}`, charge: 2 }], T0)
      }),
    )
    // Every hold released (none left at 5), every charge counted.
    expect(await one.counters.held(credits, T0)).toBe(200)
  })

  it('counts the same with durableCounters (commits wait for the WAL flush)', async () => {
    const durable = postgresStorage({ pool: b, schema, pruneEvery: 0, durableCounters: true })
    const q = name('q:daily')
    const results = []
    for (let i = 0; i < 4; i++) results.push(await durable.counters.consume([daily(q, 3)], T0))
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false])
    expect((await one.counters.consume([daily(q, 4)], T0)).results[0]!.used).toBe(4)
    expect(() => postgresStorage({ pool: b, durableCounters: 'yes' as never })).toThrow(
      /options\.durableCounters/,
    )
  })

  it('writes nothing for a refused admission', async () => {
    const full = name('r0')
    const fresh = name('q:daily')
    expect((await one.counters.consume([perSecond(full, 1)], T0)).allowed).toBe(true)
    const before = await rows([full, fresh])
    const r = await one.counters.consume([daily(fresh, 10), perSecond(full, 1)], T0)
    expect(r.allowed).toBe(false)
    expect(r.results.map((x) => x.allowed)).toEqual([true, false])
    expect(await rows([full, fresh])).toEqual(before)
    expect(before.map((x) => x.key)).toEqual([full])
  })

  it('keeps counter names and hold ids with quotes, backslashes and unicode intact', async () => {
    const odd = `{acct_'q"}:k:\\x'; DROP TABLE counters; --:ü😀`
    const holdId = `req_'"\\n\u00e9`
    const r = await one.counters.consume([lease(odd, 2, holdId), perSecond(`${odd}:r0`, 5)], T0)
    expect(r.allowed).toBe(true)
    expect(await two.counters.held(odd, T0)).toBe(1)
    await two.counters.settle([{ type: 'release', key: odd, holdId, charge: 1.5 }], T0)
    expect(await one.counters.held(odd, T0)).toBe(1.5)
    expect((await rows([odd, `${odd}:r0`])).map((x) => x.key)).toEqual([odd, `${odd}:r0`])
  })

  it('stores when each kind of counter expires', async () => {
    const k = {
      gcra: name('r0'),
      window: name('q:daily'),
      total: name('q:total'),
      lease: name('c'),
      credits: name('credits'),
    }
    const total: Check = { ...daily(k.total, 5), windowMs: 0, bucketMs: 0 }
    await one.counters.consume(
      [perSecond(k.gcra, 4), daily(k.window, 5), total, lease(k.lease, 2, 'x', 30_000)],
      T0,
    )
    await one.counters.settle([{ type: 'release', key: k.credits, holdId: 'h', charge: 3 }], T0)
    const got = Object.fromEntries((await rows(Object.values(k))).map((r) => [r.key, r]))
    // One unit of 4 per second drains in 250 ms (stored exactly, never early).
    expect(Number(got[k.gcra]!.expires_at)).toBe(T0 + 250)
    // The bucket of T0 (hour 12) leaves the 24-hour window at hour 12 of the next day.
    expect(Number(got[k.window]!.expires_at)).toBe(Date.UTC(2026, 0, 16, 13))
    expect(got[k.total]!.expires_at).toBeNull()
    expect(Number(got[k.lease]!.expires_at)).toBe(T0 + 30_000)
    // A settled total (a period's credits) is kept for the reports of that period.
    expect(got[k.credits]!.expires_at).toBeNull()
  })

  it('keeps a period’s credits until its keepUntil and prunes them then; keeps a rebuilt budget', async () => {
    const credits = name('credits:2026-01')
    const budget = name('k:b')
    const keepUntil = Date.UTC(2026, 1, 1) + DAY
    const hold = (c: Check, extra: object) => ({ ...c, ...extra }) as Check
    await one.counters.consume(
      [
        hold(lease(credits, 100, 'h', 300_000), { keepUntil }),
        hold(lease(budget, 10, 'h'), { rebuild: { base: 0 } }),
      ],
      T0,
    )
    await one.counters.settle(
      [
        { type: 'release', key: credits, holdId: 'h', charge: 3, keepUntil },
        { type: 'release', key: budget, holdId: 'h', charge: 0 },
      ],
      T0,
    )
    const got = Object.fromEntries((await rows([credits, budget])).map((r) => [r.key, r]))
    expect(Number(got[credits]!.expires_at)).toBe(keepUntil)
    // Rebuilt (from the usage) and still at 0: kept, or every request would rebuild it again.
    expect(got[budget]!.expires_at).toBeNull()
    expect(await one.counters.held(credits, keepUntil - 1)).toBe(3)
    expect(await one.counters.held(credits, keepUntil)).toBe(0)
    await one.pruneCounters(keepUntil - 1)
    expect((await rows([credits])).length).toBe(1)
    await one.pruneCounters(keepUntil)
    expect((await rows([credits, budget])).map((r) => r.key)).toEqual([budget])
  })

  it('a retried release (ifHeld) whose hold is gone writes no counter kept until keepUntil', async () => {
    const credits = name('credits:2026-01-retry')
    const keepUntil = Date.UTC(2026, 1, 1) + DAY
    await one.counters.settle(
      [{ type: 'release', key: credits, holdId: 'gone', charge: 3, keepUntil, ifHeld: true }],
      T0,
    )
    expect(await one.counters.held(credits, T0)).toBe(0)
    // The row the lock made expires at once: pruned now, not a day after the period.
    await one.pruneCounters(T0)
    expect(await rows([credits])).toEqual([])
  })

  it('prunes expired counters only, and a pruned counter counts as fresh', async () => {
    const ref = memoryStorage().counters
    const g = name('r0')
    const w = name('q:daily')
    const l = name('c')
    const checks = [perSecond(g, 2), daily(w, 3), lease(l, 1, 'x', 1000)]
    for (const c of [one.counters, ref]) await c.consume(checks, T0)
    // (Other tests' counters share the schema, so only this test's rows are compared.)
    await one.pruneCounters(T0 + 499)
    expect((await rows([g, w, l])).length).toBe(3)
    // At T0 + 1000 the lease has expired and the rate limit has drained; the window has not.
    expect(await one.pruneCounters(T0 + 1000)).toBeGreaterThanOrEqual(2)
    expect((await rows([g, w, l])).map((r) => r.key)).toEqual([w])
    const again = [perSecond(g, 2), daily(w, 3), lease(l, 1, 'y', 1000)]
    expect(await one.counters.consume(again, T0 + 1000)).toEqual(
      await ref.consume(again, T0 + 1000),
    )
  })

  it('prunes in the background every pruneEvery admissions', async () => {
    const s = postgresStorage({ pool: a, schema, pruneEvery: 3 })
    const stale = name('r0')
    await s.counters.consume([perSecond(stale, 10)], T0)
    expect(await rows([stale])).toHaveLength(1)
    for (let i = 0; i < 3; i++) await s.counters.consume([perSecond(name('r0'), 10)], T0 + DAY)
    await s.close() // waits for the background prune
    expect(await rows([stale])).toEqual([])
  })
})
