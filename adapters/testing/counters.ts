/**
 * @module tollbooth/testing/counters
 *
 * Conformance tests of `CounterStore`: all-or-nothing admission across rolling windows, GCRA
 * and holds, the figures of each result (checked against the in-memory reference, which runs
 * the `limits/` algorithms), expiry driven by an explicit `now`, settle operations, `held()`,
 * and serial behaviour under concurrent callers.
 */

import { describe, expect, it } from 'vitest'
import { type Check, type ConsumeResult, memoryStorage, type SettleOp } from '../../src/internal.js'
import { type GetStorage, newAccountId, prng, randomId } from './fixtures.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = 1_767_225_600_000

/** Fresh counter names under one account's hash tag. */
function names(): { window: string; gcra: string; hold: string; other: string } {
  const p = `{${newAccountId()}}:k:${randomId(8)}`
  return { window: `${p}:q:daily`, gcra: `${p}:r0`, hold: `${p}:c`, other: `${p}:q:total` }
}

type WindowCheck = Extract<Check, { type: 'window' }>
type GcraCheck = Extract<Check, { type: 'gcra' }>

const windowCheck = (
  key: string,
  limit: number,
  cost = 1,
  windowMs = DAY,
  bucketMs = HOUR,
): WindowCheck => ({
  type: 'window',
  key,
  name: 'daily',
  limit,
  windowMs,
  bucketMs,
  cost,
})
const gcraCheck = (key: string, limit: number, windowMs: number, cost = 1): GcraCheck => ({
  type: 'gcra',
  key,
  name: 'per-second',
  limit,
  windowMs,
  cost,
})
const holdCheck = (key: string, limit: number, amount: number, holdId: string, ttlMs = 60_000) =>
  ({ type: 'hold', key, name: 'concurrency', limit, amount, holdId, ttlMs }) as Check

export function counterStoreTests(get: GetStorage): void {
  describe('counters', () => {
    it('counts a rolling window up to its limit and reports the figures', async () => {
      const n = names()
      const c = get().counters
      for (let i = 1; i <= 3; i++) {
        const r = await c.consume([windowCheck(n.window, 3)], T0 + i)
        expect(r.allowed).toBe(true)
        expect(r.results[0]).toMatchObject({ allowed: true, limit: 3, used: i, remaining: 3 - i })
        expect(r.results[0]!.retryAfterMs).toBe(0)
      }
      const refused = await c.consume([windowCheck(n.window, 3)], T0 + 10)
      expect(refused.allowed).toBe(false)
      expect(refused.results[0]).toMatchObject({ allowed: false, limit: 3, used: 3, remaining: 0 })
      expect(refused.results[0]!.retryAfterMs).toBeGreaterThan(0)
    })

    it('frees a window bucket exactly when it leaves the window (explicit now)', async () => {
      const n = names()
      const c = get().counters
      const start = T0 + 5 * HOUR + 123
      await c.consume([windowCheck(n.window, 2)], start)
      await c.consume([windowCheck(n.window, 2)], start + 2 * HOUR)
      const refused = await c.consume([windowCheck(n.window, 2)], start + 3 * HOUR)
      expect(refused.allowed).toBe(false)
      const wait = refused.results[0]!.retryAfterMs
      expect(wait).toBeGreaterThan(DAY - 3 * HOUR)
      expect(wait).toBeLessThanOrEqual(DAY)
      const at = start + 3 * HOUR + wait
      expect((await c.consume([windowCheck(n.window, 2)], at - 1)).allowed).toBe(false)
      const ok = await c.consume([windowCheck(n.window, 2)], at)
      expect(ok.allowed).toBe(true)
      expect(ok.results[0]!.used).toBe(2)
    })

    it('never ages an all-time window', async () => {
      const n = names()
      const total = windowCheck(n.other, 1, 1, 0, 0)
      const c = get().counters
      const first = await c.consume([total], T0)
      expect(first.results[0]).toMatchObject({ allowed: true, used: 1, resetMs: Infinity })
      const later = await c.consume([total], T0 + 400 * DAY)
      expect(later.allowed).toBe(false)
      expect(later.results[0]).toMatchObject({ resetMs: Infinity, retryAfterMs: Infinity })
    })

    it('refills a GCRA limit at its rate, with an exact retry-after', async () => {
      const n = names()
      const c = get().counters
      for (let i = 0; i < 5; i++) {
        expect((await c.consume([gcraCheck(n.gcra, 5, 1000)], T0)).allowed).toBe(true)
      }
      const refused = await c.consume([gcraCheck(n.gcra, 5, 1000)], T0)
      expect(refused.results[0]).toMatchObject({
        allowed: false,
        limit: 5,
        remaining: 0,
        retryAfterMs: 200,
        resetMs: 1000,
      })
      expect((await c.consume([gcraCheck(n.gcra, 5, 1000)], T0 + 199)).allowed).toBe(false)
      const ok = await c.consume([gcraCheck(n.gcra, 5, 1000)], T0 + 200)
      expect(ok.results[0]).toMatchObject({ allowed: true, remaining: 0, retryAfterMs: 0 })
      const idle = await c.consume([gcraCheck(n.gcra, 5, 1000)], T0 + 5000)
      expect(idle.results[0]).toMatchObject({ allowed: true, remaining: 4, resetMs: 200 })
    })

    it('checks a GCRA limit with cost 0 for room without counting', async () => {
      const n = names()
      const c = get().counters
      for (let i = 0; i < 3; i++) {
        const r = await c.consume([gcraCheck(n.gcra, 2, 1000, 0)], T0)
        expect(r.results[0]).toMatchObject({ allowed: true, remaining: 2 })
      }
      await c.settle([{ type: 'add', check: gcraCheck(n.gcra, 2, 1000, 5) }], T0)
      const r = await c.consume([gcraCheck(n.gcra, 2, 1000, 0)], T0)
      expect(r.results[0]).toMatchObject({ allowed: false, retryAfterMs: 2000 })
    })

    it('expires a hold after its TTL', async () => {
      const n = names()
      const c = get().counters
      expect((await c.consume([holdCheck(n.hold, 1, 1, 'h1', 1000)], T0)).allowed).toBe(true)
      expect(await c.held(n.hold, T0 + 999)).toBe(1)
      const refused = await c.consume([holdCheck(n.hold, 1, 1, 'h2', 1000)], T0 + 999)
      expect(refused.results[0]).toMatchObject({ allowed: false, used: 1, remaining: 0 })
      expect(await c.held(n.hold, T0 + 1000)).toBe(0)
      const ok = await c.consume([holdCheck(n.hold, 1, 1, 'h2', 1000)], T0 + 1000)
      expect(ok.results[0]).toMatchObject({ allowed: true, used: 1, remaining: 0 })
    })

    it('releases a hold and adds its charge to the settled total', async () => {
      const n = names()
      const c = get().counters
      await c.consume([holdCheck(n.hold, 10, 4, 'a')], T0)
      await c.consume([holdCheck(n.hold, 10, 2.5, 'b')], T0)
      expect(await c.held(n.hold, T0)).toBe(6.5)
      await c.settle([{ type: 'release', key: n.hold, holdId: 'a', charge: 3 }], T0 + 1)
      expect(await c.held(n.hold, T0 + 1)).toBe(5.5)
      const r = await c.consume([holdCheck(n.hold, 10, 4.5, 'c')], T0 + 2)
      expect(r.results[0]).toMatchObject({ allowed: true, used: 10, remaining: 0 })
      expect((await c.consume([holdCheck(n.hold, 10, 0.5, 'd')], T0 + 2)).allowed).toBe(false)
      // A release of an unknown (or expired) hold still charges.
      await c.settle([{ type: 'release', key: n.other, holdId: 'zz', charge: 2 }], T0)
      expect(await c.held(n.other, T0)).toBe(2)
      expect(await c.held(`{${newAccountId()}}:none`, T0)).toBe(0)
    })

    it('adds fractional amounts as decimals: a limit of 0.3 admits exactly three holds of 0.1', async () => {
      const n = names()
      const c = get().counters
      // In binary doubles 0.1 + 0.1 + 0.1 is 0.30000000000000004: the third was refused.
      for (const [i, used] of [0.1, 0.2, 0.3].entries()) {
        const r = await c.consume([holdCheck(n.hold, 0.3, 0.1, `h${i}`)], T0)
        expect(r.results[0]).toMatchObject({ allowed: true, used })
        expect(r.results[0]!.remaining).toBe([0.2, 0.1, 0][i])
      }
      const refused = await c.consume([holdCheck(n.hold, 0.3, 0.1, 'h3')], T0)
      expect(refused.results[0]).toMatchObject({ allowed: false, used: 0.3, remaining: 0 })
      expect(await c.held(n.hold, T0)).toBe(0.3)
      // Settled one by one, the total stays the decimal; a settled total of 0.3 has 0 left.
      for (const [i, held] of [0.3, 0.3, 0.3].entries()) {
        await c.settle([{ type: 'release', key: n.hold, holdId: `h${i}`, charge: 0.1 }], T0 + 1)
        expect(await c.held(n.hold, T0 + 1)).toBe(held)
      }
      const full = await c.consume([holdCheck(n.hold, 0.3, 0, 'z')], T0 + 2)
      expect(full.results[0]).toMatchObject({ allowed: true, used: 0.3, remaining: 0 })
      // 1 - 0.9 reads 0.1 (in doubles 0.09999999999999998), and a charge of tokens × price
      // with float noise counts as the decimal it stands for.
      await c.settle([{ type: 'release', key: n.other, holdId: 'a', charge: 1 }], T0)
      await c.settle([{ type: 'release', key: n.other, holdId: 'b', charge: -0.9 }], T0)
      expect(await c.held(n.other, T0)).toBe(0.1)
      await c.settle([{ type: 'release', key: n.other, holdId: 'c', charge: 1234 * 0.0008 }], T0)
      expect(await c.held(n.other, T0)).toBe(1.0872)
      const r = await c.consume([holdCheck(n.other, 1.1872, 0.1, 'd')], T0)
      expect(r.results[0]).toMatchObject({ allowed: true, used: 1.1872, remaining: 0 })
    })

    it('renews a live hold by its id: it outlives its TTL, its amount and the total unchanged', async () => {
      const n = names()
      const c = get().counters
      await c.consume([holdCheck(n.hold, 2, 1, 'long', 1000)], T0)
      await c.consume([holdCheck(n.hold, 2, 1, 'short', 1000)], T0)
      const renew: SettleOp = { type: 'renew', key: n.hold, holdId: 'long', ttlMs: 1000 }
      // Renewed twice, each time a third of its TTL before it lapses: held at 3 × its TTL.
      await c.settle([renew], T0 + 700)
      expect(await c.held(n.hold, T0 + 999)).toBe(2)
      expect(await c.held(n.hold, T0 + 1000)).toBe(1) // `short` lapsed, `long` held
      await c.settle([renew], T0 + 1400)
      await c.settle([renew], T0 + 2100)
      expect(await c.held(n.hold, T0 + 3000)).toBe(1)
      const refused = await c.consume([holdCheck(n.hold, 1, 1, 'next', 1000)], T0 + 3000)
      expect(refused.results[0]).toMatchObject({ allowed: false, used: 1, remaining: 0 })
      // A renewal never shortens a hold.
      await c.settle([{ type: 'renew', key: n.hold, holdId: 'long', ttlMs: 10 }], T0 + 3000)
      expect(await c.held(n.hold, T0 + 3099)).toBe(1)
      // Released with its charge, then lapsed at the renewed expiry had it not been released.
      await c.settle([{ type: 'release', key: n.hold, holdId: 'long', charge: 0.5 }], T0 + 3050)
      expect(await c.held(n.hold, T0 + 3050)).toBe(0.5)
    })

    it('never makes again a hold that was released or lapsed before its renewal', async () => {
      const n = names()
      const c = get().counters
      await c.consume([holdCheck(n.hold, 1, 1, 'done', 1000)], T0)
      await c.settle([{ type: 'release', key: n.hold, holdId: 'done', charge: 0 }], T0 + 10)
      await c.settle([{ type: 'renew', key: n.hold, holdId: 'done', ttlMs: 1000 }], T0 + 20)
      expect(await c.held(n.hold, T0 + 20)).toBe(0)
      expect((await c.consume([holdCheck(n.hold, 1, 1, 'a', 1000)], T0 + 30)).allowed).toBe(true)
      // `a` lapses at T0 + 1030; renewed after that, it stays gone.
      await c.settle([{ type: 'renew', key: n.hold, holdId: 'a', ttlMs: 1000 }], T0 + 1030)
      expect(await c.held(n.hold, T0 + 1030)).toBe(0)
      expect((await c.consume([holdCheck(n.hold, 1, 1, 'b', 1000)], T0 + 1031)).allowed).toBe(true)
      // A renewal on a counter never made, or of an id it never held, writes nothing.
      await c.settle([{ type: 'renew', key: n.other, holdId: 'x', ttlMs: 1000 }], T0)
      expect(await c.held(n.other, T0)).toBe(0)
      await c.settle([{ type: 'renew', key: n.hold, holdId: 'x', ttlMs: 1000 }], T0 + 1031)
      expect(await c.held(n.hold, T0 + 1031)).toBe(1)
    })

    it('never refuses a hold with an infinite limit, and still counts it', async () => {
      const n = names()
      const c = get().counters
      const r = await c.consume([holdCheck(n.hold, Infinity, 1e9, 'x')], T0)
      expect(r.results[0]).toMatchObject({ allowed: true, limit: Infinity, used: 1e9 })
      expect(r.results[0]!.remaining).toBe(Infinity)
      expect(await c.held(n.hold, T0)).toBe(1e9)
    })

    it('adds settle costs to windows and GCRA limits without refusing', async () => {
      const n = names()
      const c = get().counters
      const ops: SettleOp[] = [
        { type: 'add', check: windowCheck(n.window, 3, 5) },
        { type: 'add', check: gcraCheck(n.gcra, 10, 1000, 4) },
      ]
      await c.settle(ops, T0)
      const r = await c.consume([windowCheck(n.window, 10, 1), gcraCheck(n.gcra, 10, 1000)], T0)
      expect(r.results[0]).toMatchObject({ allowed: true, used: 6, remaining: 4 })
      expect(r.results[1]).toMatchObject({ allowed: true, used: 5, remaining: 5 })
    })

    it('counts all checks or none, whichever check refuses', async () => {
      const n = names()
      const c = get().counters
      const checks = (holdLimit: number, gcraLimit: number, windowLimit: number, id: string) => [
        windowCheck(n.window, windowLimit),
        gcraCheck(n.gcra, gcraLimit, 60_000),
        holdCheck(n.hold, holdLimit, 1, id),
      ]
      expect((await c.consume(checks(5, 5, 5, 'h0'), T0)).allowed).toBe(true)
      for (const [h, g, w] of [
        [1, 5, 5],
        [5, 1, 5],
        [5, 5, 1],
      ] as const) {
        const r = await c.consume(checks(h, g, w, `h-${h}${g}${w}`), T0)
        expect(r.allowed).toBe(false)
        expect(r.results.map((x) => x.allowed)).toEqual([w > 1, g > 1, h > 1])
      }
      // Nothing of the refused attempts was counted anywhere.
      const after = await c.consume(checks(5, 5, 5, 'h1'), T0)
      expect(after.results.map((x) => x.used)).toEqual([2, 2, 2])
      expect(await c.held(n.hold, T0)).toBe(2)
    })

    it('returns one result per check, in the order given', async () => {
      const n = names()
      const c = get().counters
      const r = await c.consume(
        [
          holdCheck(n.hold, 7, 1, 'q'),
          gcraCheck(n.gcra, 3, 1000),
          windowCheck(n.window, 11),
          windowCheck(n.other, 13),
        ],
        T0,
      )
      expect(r.allowed).toBe(true)
      expect(r.results.map((x) => [x.limit, x.remaining])).toEqual([
        [7, 6],
        [3, 2],
        [11, 10],
        [13, 12],
      ])
      expect((await c.consume([], T0)).allowed).toBe(true)
    })

    it('admits exactly 50 of 200 concurrent requests against a limit of 50', async () => {
      const n = names()
      const c = get().counters
      const all = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          c.consume([windowCheck(n.window, 50), holdCheck(n.hold, 1000, 1, `r${i}`)], T0),
        ),
      )
      const admitted = all.filter((r) => r.allowed)
      expect(admitted).toHaveLength(50)
      expect(admitted.map((r) => r.results[0]!.used).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 50 }, (_, i) => i + 1),
      )
      expect(await c.held(n.hold, T0)).toBe(50)
    })

    it('keeps a settled total until keepUntil, whatever the holds', async () => {
      const n = names()
      const c = get().counters
      const keepUntil = T0 + 10 * DAY
      const h = { ...holdCheck(n.hold, 100, 5, 'p1', 1000), keepUntil } as Check
      expect((await c.consume([h], T0)).allowed).toBe(true)
      await c.settle([{ type: 'release', key: n.hold, holdId: 'p1', charge: 4, keepUntil }], T0)
      expect(await c.held(n.hold, T0 + 5 * DAY)).toBe(4)
      expect(await c.held(n.hold, keepUntil - 1)).toBe(4)
      // A charge of 0 (a refund) keeps the counter too: it was given a keepUntil.
      const z = names()
      await c.consume([{ ...holdCheck(z.hold, 100, 5, 'p2', 1000), keepUntil } as Check], T0)
      await c.settle([{ type: 'release', key: z.hold, holdId: 'p2', charge: 0, keepUntil }], T0)
      const r = await c.consume(
        [{ ...holdCheck(z.hold, 100, 1, 'p3', 1000), keepUntil } as Check],
        T0 + DAY,
      )
      expect(r.results[0]).toMatchObject({ allowed: true, used: 1 })
    })

    it('answers missing for a counter to rebuild and counts nothing, then rebuilds it from a base', async () => {
      const n = names()
      const c = get().counters
      const credits = (base?: number, amount = 1): Check =>
        ({
          ...holdCheck(n.hold, 30, amount, `r${randomId(6)}`, 60_000),
          rebuild: base === undefined ? {} : { base },
        }) as Check
      const other = windowCheck(n.window, 10)
      const asked = await c.consume([other, credits()], T0)
      expect(asked.allowed).toBe(false)
      expect(asked.results[1]).toMatchObject({ allowed: false, missing: true })
      expect(asked.results[0]!.missing).toBeUndefined()
      // Nothing was counted: not the window, not the hold.
      expect((await c.consume([other], T0)).results[0]!.used).toBe(1)
      expect(await c.held(n.hold, T0)).toBe(0)
      // Rebuilt with 30 spent of 30: refused, and the rebuilt count is kept all the same.
      const seeded = await c.consume([other, credits(30)], T0)
      expect(seeded.allowed).toBe(false)
      expect(seeded.results[1]).toMatchObject({ allowed: false, used: 30, remaining: 0 })
      expect(seeded.results[1]!.missing).toBeUndefined()
      expect(await c.held(n.hold, T0)).toBe(30)
      expect((await c.consume([other], T0)).results[0]!.used).toBe(2)
      // Rebuilt: later asks are answered from the counter, a second base is ignored.
      const again = (await c.consume([credits()], T0)).results[0]!
      expect(again.missing).toBeUndefined()
      expect(again.used).toBe(30)
      expect((await c.consume([credits(5)], T0)).results[0]!.used).toBe(30)
    })

    it('does not trust a counter a settle created, and rebuilds it to the larger count', async () => {
      const n = names()
      const c = get().counters
      // After a loss, a request admitted before it settles: its charge lands on an empty counter.
      await c.settle([{ type: 'release', key: n.hold, holdId: 'old', charge: 2 }], T0)
      const r = { ...holdCheck(n.hold, 30, 1, 'new', 60_000), rebuild: {} } as Check
      expect((await c.consume([r], T0)).results[0]!.missing).toBe(true)
      const ok = await c.consume([{ ...r, rebuild: { base: 10 } } as Check], T0)
      expect(ok.results[0]).toMatchObject({ allowed: true, used: 11 })
      // A whole count kept from before rebuilds (an upgrade): not counted twice.
      const m = names()
      await c.settle([{ type: 'release', key: m.hold, holdId: 'x', charge: 25 }], T0)
      const total = windowCheck(m.other, 9, 1, 0, 0)
      for (let i = 0; i < 6; i++) await c.consume([total], T0)
      const again = await c.consume(
        [
          { ...holdCheck(m.hold, 30, 1, 'y', 60_000), rebuild: { base: 24 } } as Check,
          { ...total, rebuild: { base: 5 } },
        ],
        T0,
      )
      expect(again.results.map((x) => x.used)).toEqual([26, 7])
    })

    it('rebuilds an all-time window and keeps a rebuilt counter that counts 0', async () => {
      const n = names()
      const c = get().counters
      const total = (rebuild: { base?: number }): Check => ({
        ...windowCheck(n.other, 3, 1, 0, 0),
        rebuild,
      })
      expect((await c.consume([total({})], T0)).results[0]!.missing).toBe(true)
      const seeded = await c.consume([total({ base: 3 })], T0)
      expect(seeded.results[0]).toMatchObject({ allowed: false, used: 3, retryAfterMs: Infinity })
      expect((await c.consume([total({})], T0 + DAY)).results[0]).toMatchObject({
        allowed: false,
        used: 3,
      })
      // Rebuilt at 0, used and refunded: still rebuilt, never asked again.
      const z = names()
      const budget = (rebuild: { base?: number }, id: string): Check =>
        ({ ...holdCheck(z.hold, 5, 1, id, 1000), rebuild }) as Check
      expect((await c.consume([budget({ base: 0 }, 'a')], T0)).allowed).toBe(true)
      await c.settle([{ type: 'release', key: z.hold, holdId: 'a', charge: 0 }], T0)
      const w = names()
      expect(
        (await c.consume([{ ...windowCheck(w.other, 3, 0, 0, 0), rebuild: { base: 0 } }], T0))
          .allowed,
      ).toBe(true)
      const later = T0 + 2 * DAY
      expect((await c.consume([budget({}, 'b')], later)).results[0]).toMatchObject({
        allowed: true,
        used: 1,
      })
      expect(
        (await c.consume([{ ...windowCheck(w.other, 3, 1, 0, 0), rebuild: {} }], later)).results[0],
      ).toMatchObject({ allowed: true, used: 1 })
    })

    it('writes a rebuilt window without the cost of the admission another check refused', async () => {
      const n = names()
      const c = get().counters
      const total = (cost: number, rebuild?: { base?: number }): Check => ({
        ...windowCheck(n.other, 10, cost, 0, 0),
        ...(rebuild ? { rebuild } : {}),
      })
      const full = gcraCheck(n.gcra, 1, 60_000, 2)
      const r = await c.consume([total(2, { base: 1 }), full], T0)
      expect(r.allowed).toBe(false)
      expect(r.results[0]).toMatchObject({ allowed: true, used: 3 })
      // Rebuilt to 1; the refused admission's 2 not counted.
      expect((await c.consume([total(0, {})], T0)).results[0]).toMatchObject({ used: 1 })
    })

    it('a retried release (ifHeld) charges once, whichever attempt lands first', async () => {
      const n = names()
      const c = get().counters
      await c.consume([holdCheck(n.hold, 100, 10, 'r1', 60_000)], T0)
      const op: SettleOp = { type: 'release', key: n.hold, holdId: 'r1', charge: 7 }
      await c.settle([op], T0 + 1)
      await c.settle([{ ...op, ifHeld: true }], T0 + 2)
      await c.settle([{ ...op, ifHeld: true }], T0 + 3)
      expect(await c.held(n.hold, T0 + 4)).toBe(7)
      // The first attempt lost: the retry charges once, a late duplicate retry nothing.
      await c.consume([holdCheck(n.hold, 100, 10, 'r2', 60_000)], T0 + 5)
      await c.settle([{ ...op, holdId: 'r2', ifHeld: true }], T0 + 6)
      await c.settle([{ ...op, holdId: 'r2', ifHeld: true }], T0 + 7)
      expect(await c.held(n.hold, T0 + 8)).toBe(14)
    })

    it('a release once per record charges once, whether or not its hold is there', async () => {
      const n = names()
      const c = get().counters
      const once = (holdId: string, charge: number): SettleOp => ({
        type: 'release',
        key: n.hold,
        holdId,
        charge,
        ifHeld: true,
        record: { key: `${n.hold}:a:rel-${holdId}`, ttlMs: 60_000 },
      })
      // Held: released and charged; its retry, and a retry in the same call, nothing more.
      await c.consume([holdCheck(n.hold, 100, 10, 'o1', 60_000)], T0)
      await c.settle([once('o1', 7), once('o1', 7)], T0 + 1)
      await c.settle([once('o1', 7)], T0 + 2)
      expect(await c.held(n.hold, T0 + 3)).toBe(7)
      // Its hold dropped before it ran (lapsed, and pruned at a later clock): charged all the
      // same, once (a release ifHeld charged nothing).
      await c.consume([holdCheck(n.hold, 100, 10, 'o2', 1_000)], T0 + 4)
      await c.consume([holdCheck(n.hold, 100, 1, 'other', 60_000)], T0 + 10_000)
      await c.settle([once('o2', 5)], T0 + 5)
      await c.settle([once('o2', 5)], T0 + 10_001)
      expect(await c.held(n.hold, T0 + 10_002)).toBe(7 + 5 + 1)
      // Never held at all: charged once.
      await c.settle([once('o3', 2)], T0 + 10_003)
      await c.settle([once('o3', 2)], T0 + 10_004)
      expect(await c.held(n.hold, T0 + 10_005)).toBe(7 + 5 + 1 + 2)
    })

    it('a cancel undoes a recorded admission, and leaves nothing when it comes first', async () => {
      const n = names()
      const c = get().counters
      const checks = (id: string): Check[] => [
        windowCheck(n.window, 10, 2),
        windowCheck(n.other, 10, 1, 0, 0),
        gcraCheck(n.gcra, 10, 60_000, 3),
        holdCheck(n.hold, 100, 5, id, 60_000),
      ]
      const adm = (id: string) => ({ key: `${n.hold}:a:${id}`, ttlMs: 60_000 })
      const cancel = (id: string, at: number): SettleOp => ({
        type: 'cancel',
        key: adm(id).key,
        ttlMs: 60_000,
        at,
        checks: checks(id),
      })
      const used = async (now: number) =>
        (
          await c.consume([windowCheck(n.window, 10, 0), windowCheck(n.other, 10, 0, 0, 0)], now)
        ).results
          .map((r) => r.used)
          .concat([
            (await c.consume([gcraCheck(n.gcra, 10, 60_000, 0)], now)).results[0]!.remaining,
            await c.held(n.hold, now),
          ])
      // Kept: a, cancelled after its commit: b (twice: the second does nothing).
      expect((await c.consume(checks('a'), T0, adm('a'))).allowed).toBe(true)
      expect((await c.consume(checks('b'), T0 + 10, adm('b'))).allowed).toBe(true)
      expect(await used(T0 + 20)).toEqual([4, 2, 4, 10])
      await c.settle([cancel('b', T0 + 10)], T0 + 20)
      await c.settle([cancel('b', T0 + 10)], T0 + 30)
      expect(await used(T0 + 30)).toEqual([2, 1, 7, 5])
      // Cancelled before it arrives: the late commit counts nothing, and says so.
      await c.settle([cancel('c', T0 + 40)], T0 + 40)
      const late = await c.consume(checks('c'), T0 + 50, adm('c'))
      expect(late.allowed).toBe(false)
      expect(await used(T0 + 50)).toEqual([2, 1, 7, 5])
      // The GCRA cost comes back less what drained since: 3 units at 10 per minute drain in
      // 18 s, so a cancel 18 s later takes nothing back.
      expect((await c.consume(checks('d'), T0 + 60, adm('d'))).allowed).toBe(true)
      await c.settle([cancel('d', T0 + 60)], T0 + 18_060)
      const g = await c.consume([gcraCheck(n.gcra, 10, 60_000, 0)], T0 + 18_060)
      // a (3 at T0) and d (3 at T0+60) drained by 18,060 ms: 3 + 3 - 3.01 = 2.99 units left.
      expect(g.results[0]!.remaining).toBe(7)
    })

    it("a cancel of a count whose bucket has left the window takes nothing from a later admission's bucket", async () => {
      const n = names()
      const c = get().counters
      // A 4 s window in 1 s buckets: a (at T0 + 118) counts in the first bucket, b in the next.
      const w = (cost: number) => [windowCheck(n.window, 2, cost, 4_000, 1_000)]
      const adm = { key: `${n.window}:a:a`, ttlMs: 60_000 }
      expect((await c.consume(w(1), T0 + 118, adm)).allowed).toBe(true)
      expect((await c.consume(w(1), T0 + 1_000)).allowed).toBe(true)
      expect((await c.consume(w(0), T0 + 4_082)).results[0]!.used).toBe(2)
      // At T0 + 5,000 a's bucket is out of the window; b's is in it.
      await c.settle(
        [{ type: 'cancel', key: adm.key, ttlMs: 60_000, at: T0 + 118, checks: w(1) }],
        T0 + 5_000,
      )
      expect((await c.consume(w(0), T0 + 5_000)).results[0]!.used).toBe(1)
    })

    it('records nothing for an admission answered missing: the same id counts after the rebuild, and its cancel keeps the rebuilt marks', async () => {
      const n = names()
      const c = get().counters
      const adm = { key: `${n.hold}:a:x`, ttlMs: 60_000 }
      const credits = (id: string, rebuild: { base?: number }) =>
        ({ ...holdCheck(n.hold, 30, 5, id, 60_000), keepUntil: T0 + DAY, rebuild }) as Check
      const total = (rebuild: { base?: number }): Check => ({
        ...windowCheck(n.other, 10, 1, 0, 0),
        rebuild,
      })
      const first = await c.consume([credits('x', {}), total({})], T0, adm)
      expect(first.allowed).toBe(false)
      expect(first.results.map((r) => r.missing)).toEqual([true, true])
      // No record and no tombstone under the id: the rebuilt admission is counted.
      const checks = [credits('x', { base: 10 }), total({ base: 3 })]
      const again = await c.consume(checks, T0 + 1, adm)
      expect(again.allowed).toBe(true)
      expect(again.results.map((r) => r.used)).toEqual([15, 4])
      // Its answer lost: the cancel takes back the hold and the count, not the rebuilt base.
      const cancel: SettleOp = { type: 'cancel', key: adm.key, ttlMs: 60_000, at: T0 + 1, checks }
      await c.settle([cancel], T0 + 2)
      expect(await c.held(n.hold, T0 + 3)).toBe(10)
      // Still marked rebuilt: asked again, both are answered from the counters.
      const later = await c.consume([credits('y', {}), total({})], T0 + 4)
      expect(later.results.map((r) => r.missing)).toEqual([undefined, undefined])
      expect(later.results.map((r) => r.used)).toEqual([15, 4])
    })

    it("a cancel takes back the units it lists, from the bucket of the charge, once (a lease's give-back)", async () => {
      const n = names()
      const c = get().counters
      const tag = n.window.slice(0, n.window.indexOf('}') + 1)
      const adm = { key: `${tag}:a:lease-1`, ttlMs: 600_000 }
      const used = async (now: number) =>
        (await c.consume([windowCheck(n.window, 1000, 0)], now)).results[0]!.used
      // A lease of 40 charged in the last minute of an hour, 15 of it used; 5 more admitted
      // in the next hour.
      const at = T0 + HOUR - 60_000
      expect((await c.consume([windowCheck(n.window, 1000, 40)], at, adm)).allowed).toBe(true)
      expect((await c.consume([windowCheck(n.window, 1000, 5)], T0 + HOUR)).allowed).toBe(true)
      const giveBack: SettleOp = {
        type: 'cancel',
        key: adm.key,
        ttlMs: 600_000,
        at,
        checks: [windowCheck(n.window, 1000, 25)],
      }
      await c.settle([giveBack], T0 + HOUR + 10)
      expect(await used(T0 + HOUR + 10)).toBe(20)
      // Sent again (a retry after a lost answer): nothing more is taken back.
      await c.settle([giveBack], T0 + HOUR + 20)
      expect(await used(T0 + HOUR + 20)).toBe(20)
      // The 15 used stay in their hour: they leave the window with it, a day later.
      expect(await used(at + DAY + HOUR)).toBe(5)
    })

    it('a cancel from a clock behind the stored GCRA time gives back only what is left there', async () => {
      const n = names()
      const c = get().counters
      const adm = { key: `${n.gcra}:a:a`, ttlMs: 60_000 }
      const a = [gcraCheck(n.gcra, 10, 60_000, 6)]
      expect((await c.consume(a, T0, adm)).allowed).toBe(true)
      // Another instance, 12 s ahead: 4 of the 6 left, plus its 3.
      expect((await c.consume([gcraCheck(n.gcra, 10, 60_000, 3)], T0 + 12_000)).allowed).toBe(true)
      await c.settle([{ type: 'cancel', key: adm.key, ttlMs: 60_000, at: T0, checks: a }], T0)
      // Left: the other instance's 3, as if the first admission had never been; the stored time
      // stays (read from the behind clock, nothing more has drained).
      for (const now of [T0 + 12_000, T0]) {
        const r = await c.consume([gcraCheck(n.gcra, 10, 60_000, 0)], now)
        expect(r.results[0]!.remaining).toBe(7)
      }
    })

    it('a negative add takes units back, never below zero', async () => {
      const n = names()
      const c = get().counters
      await c.consume([gcraCheck(n.gcra, 100, 60_000, 40)], T0)
      await c.settle([{ type: 'add', check: gcraCheck(n.gcra, 100, 60_000, -30) }], T0)
      expect((await c.consume([gcraCheck(n.gcra, 100, 60_000, 0)], T0)).results[0]!.remaining).toBe(
        90,
      )
      await c.settle([{ type: 'add', check: gcraCheck(n.gcra, 100, 60_000, -50) }], T0)
      expect((await c.consume([gcraCheck(n.gcra, 100, 60_000, 0)], T0)).results[0]!.remaining).toBe(
        100,
      )
      await c.consume([gcraCheck(n.gcra, 100, 60_000, 100)], T0)
      expect((await c.consume([gcraCheck(n.gcra, 100, 60_000, 1)], T0)).allowed).toBe(false)
    })

    it('a negative add takes a window bucket down to zero, never below', async () => {
      const n = names()
      const c = get().counters
      const used = async (now: number) =>
        (await c.consume([windowCheck(n.window, 100, 0)], now)).results[0]!.used
      expect((await c.consume([windowCheck(n.window, 100, 10)], T0)).allowed).toBe(true)
      // More taken back than the bucket holds (a lease's give-back into a counter the store
      // lost, a give-back applied twice): the bucket is empty, not negative.
      await c.settle([{ type: 'add', check: windowCheck(n.window, 100, -50) }], T0)
      expect(await used(T0)).toBe(0)
      expect((await c.consume([windowCheck(n.window, 100, 100)], T0)).allowed).toBe(true)
      expect((await c.consume([windowCheck(n.window, 100, 1)], T0)).allowed).toBe(false)
      // Only the current bucket is taken from: an earlier one keeps its count.
      await c.settle([{ type: 'add', check: windowCheck(n.window, 100, -500) }], T0 + HOUR)
      expect(await used(T0 + HOUR)).toBe(100)
      // On a counter that holds nothing (lost): nothing below zero.
      const fresh = windowCheck(n.other, 100, -20, 0, 0)
      await c.settle([{ type: 'add', check: fresh }], T0)
      expect((await c.consume([{ ...fresh, cost: 0 }], T0)).results[0]!.used).toBe(0)
    })

    it('a negative window add takes units from the bucket of its time, never from a newer one', async () => {
      const n = names()
      const c = get().counters
      const used = async (now: number) =>
        (await c.consume([windowCheck(n.window, 1000, 0)], now)).results[0]!.used
      // 30 counted in the first hour; another instance, its clock ahead, counts 50 in the next.
      expect((await c.consume([windowCheck(n.window, 1000, 30)], T0)).allowed).toBe(true)
      expect((await c.consume([windowCheck(n.window, 1000, 50)], T0 + HOUR)).allowed).toBe(true)
      // Given back at a time of the first hour (a lease's unused units): from its 30.
      await c.settle([{ type: 'add', check: windowCheck(n.window, 1000, -20) }], T0 + 10)
      expect(await used(T0 + HOUR)).toBe(60)
      // With no count in the bucket of its time, from the first later one: the first hour.
      await c.settle([{ type: 'add', check: windowCheck(n.window, 1000, -5) }], T0 - HOUR)
      expect(await used(T0 + HOUR)).toBe(55)
      // Once the first hour has left the window, the next one still counts its 50 (taken from
      // it, the window would count 25 for 50 admitted, and admit 25 beyond its limit).
      expect(await used(T0 + DAY + HOUR)).toBe(50)
    })

    it('claims a marker once until it expires, and clears it', async () => {
      const c = get().counters
      const k = `${names().other}:marker`
      expect(await c.claimed(k, T0)).toBe(false)
      const all = await Promise.all(Array.from({ length: 20 }, () => c.claim(k, 1000, T0)))
      expect(all.filter(Boolean)).toHaveLength(1)
      expect(await c.claimed(k, T0 + 999)).toBe(true)
      expect(await c.claim(k, 1000, T0 + 999)).toBe(false)
      // Expired by the caller's clock: free again.
      expect(await c.claimed(k, T0 + 1000)).toBe(false)
      expect(await c.claim(k, 1000, T0 + 1000)).toBe(true)
      await c.unclaim(k)
      expect(await c.claimed(k, T0 + 1000)).toBe(false)
      expect(await c.claim(k, 1000, T0 + 1001)).toBe(true)
      // A marker is not a hold: it holds nothing.
      expect(await c.held(k, T0 + 1001)).toBe(0)
    })

    it('unclaim clears a counter at the key as well (a failed permanent delete gives back the first-use counter it took)', async () => {
      const c = get().counters
      const n = names()
      // As keys/first-use: a delete takes the whole of a day's window, and its write failed.
      expect((await c.consume([windowCheck(n.window, 100, 100)], T0)).allowed).toBe(true)
      expect((await c.consume([windowCheck(n.window, 100, 1)], T0 + 1)).allowed).toBe(false)
      await c.unclaim(n.window)
      const r = await c.consume([windowCheck(n.window, 100, 1)], T0 + 2)
      expect(r.allowed).toBe(true)
      expect(r.results[0]!.used).toBe(1)
    })

    it('matches the reference algorithms on a random sequence of operations', async () => {
      const ref = memoryStorage().counters
      const c = get().counters
      const rand = prng(20260101)
      const n = names()
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!
      // Rates chosen so every intermediate figure is exact in binary floating point.
      const cost = () => 1 + Math.floor(rand() * 3)
      const adders = (): Array<WindowCheck | GcraCheck> => [
        windowCheck(n.window, 6, cost(), 4000, 1000),
        windowCheck(n.other, 9, cost(), 0, 0),
        gcraCheck(n.gcra, 4, 1024, cost()),
      ]
      const pool = (): Check[] => [
        ...adders(),
        gcraCheck(`${n.gcra}:b`, 2, 512, 0),
        holdCheck(n.hold, 3, 1, `h${Math.floor(rand() * 6)}`, 1500),
      ]
      let now = T0
      for (let step = 0; step < 300; step++) {
        now += Math.floor(rand() * 400)
        const roll = rand()
        if (roll < 0.7) {
          const checks = pool().filter(() => rand() < 0.5)
          const want: ConsumeResult = await ref.consume(checks, now)
          expect(await c.consume(checks, now), `step ${step}`).toEqual(want)
        } else if (roll < 0.9) {
          const kind = rand()
          const holdId = `h${Math.floor(rand() * 6)}`
          const op: SettleOp =
            kind < 0.35
              ? { type: 'release', key: n.hold, holdId, charge: 0 }
              : kind < 0.5
                ? { type: 'renew', key: n.hold, holdId, ttlMs: 1500 }
                : { type: 'add', check: pick(adders()) }
          await ref.settle([op], now)
          await c.settle([op], now)
        } else {
          expect(await c.held(n.hold, now), `step ${step}`).toBe(await ref.held(n.hold, now))
        }
      }
    })
  })
}
