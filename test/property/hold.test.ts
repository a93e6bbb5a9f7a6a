/**
 * @module test/property/hold
 *
 * Holds (concurrency leases and credit reservations) against a brute-force model: a plain
 * list of holds with their expiry and a settled total, on an injected clock. What is proved,
 * for random caps, amounts, TTLs, releases and time steps:
 * - every verdict, `used` and `remaining` equal the model's;
 * - settled plus live holds never exceed the cap (when a release charges at most what it held);
 * - a hold that is never released stops counting exactly at its TTL;
 * - as a concurrency cap (amount 1, nothing charged), never more than `limit` in flight.
 */

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type HoldState, hold, holdIdle, release } from '../../src/limits/hold.js'
import { HoldModel } from './models.js'

type Op =
  | { op: 'hold'; dt: number; id: number; amount: number; ttlMs: number }
  | { op: 'release'; dt: number; id: number; fraction: number }

const ops = (maxAmount: number) =>
  fc.array(
    fc.oneof(
      fc.record({
        op: fc.constant('hold' as const),
        dt: fc.integer({ min: 0, max: 50 }),
        id: fc.integer({ min: 0, max: 200 }),
        amount: fc.integer({ min: 0, max: maxAmount }),
        ttlMs: fc.integer({ min: 1, max: 200 }),
      }),
      fc.record({
        op: fc.constant('release' as const),
        dt: fc.integer({ min: 0, max: 50 }),
        id: fc.integer({ min: 0, max: 200 }),
        fraction: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
    ),
    { minLength: 1, maxLength: 150 },
  )

/** Releases name a hold that was taken (by index), so most of them hit. */
function replay(limit: number, trace: Op[], charge: boolean) {
  let state: HoldState | undefined
  const model = new HoldModel(limit)
  let now = 1_700_000_000_000
  let seq = 0
  const taken: string[] = []
  let maxTotal = 0
  for (const o of trace) {
    now += o.dt
    if (o.op === 'hold') {
      const id = `req_${seq++}`
      const before = model.total(now)
      const v = hold(state, now, limit, o.amount, id, o.ttlMs)
      const fits = before + o.amount <= limit
      expect(v.allowed).toBe(fits)
      if (fits) {
        state = v.state
        model.add(now, id, o.amount, o.ttlMs)
        taken.push(id)
        expect(v.used).toBe(before + o.amount)
        expect(v.remaining).toBe(limit - before - o.amount)
      } else {
        expect(v.used).toBe(before)
        expect(v.remaining).toBe(Math.max(0, limit - before))
      }
    } else if (taken.length > 0) {
      const id = taken[o.id % taken.length]!
      const h = model.live(now).find((x) => x.id === id)
      // A request is charged at most what it held; one whose hold expired is charged nothing.
      const amount = charge && h ? Math.floor(h.amount * o.fraction) : 0
      state = release(state, now, id, amount)
      model.release(id, amount)
    }
    const total = model.total(now)
    maxTotal = Math.max(maxTotal, total)
    expect(total).toBeLessThanOrEqual(limit)
    if (state) expect(holdIdle(state, now)).toBe(model.used === 0 && model.live(now).length === 0)
  }
  return { maxTotal }
}

describe('holds against the brute-force model', () => {
  it('reserves credits exactly as the model and never past the cap', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), ops(40), (limit, trace) => {
        replay(limit, trace, true)
      }),
      { numRuns: 500 },
    )
  })

  it('never lets more than limit requests be in flight at once', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        ops(1).map((t) => t.map((o) => (o.op === 'hold' ? { ...o, amount: 1 } : o))),
        (limit, trace) => {
          const { maxTotal } = replay(limit, trace, false)
          expect(maxTotal).toBeLessThanOrEqual(limit)
        },
      ),
      { numRuns: 500 },
    )
  })

  it('frees a hold that is never released exactly at its TTL', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 10_000 }),
        (limit, ttlMs) => {
          let state: HoldState | undefined
          const t0 = 1_700_000_000_000
          for (let i = 0; i < limit; i++) state = hold(state, t0, limit, 1, `r${i}`, ttlMs).state
          expect(hold(state, t0 + ttlMs - 1, limit, 1, 'late', ttlMs).allowed).toBe(false)
          expect(hold(state, t0 + ttlMs, limit, 1, 'late', ttlMs).allowed).toBe(true)
          expect(holdIdle(state!, t0 + ttlMs)).toBe(true)
        },
      ),
      { numRuns: 200 },
    )
  })
})
