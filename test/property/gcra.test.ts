/**
 * @module test/property/gcra
 *
 * GCRA against a brute-force model of the continuous leaky bucket, on an injected clock.
 * The model keeps the bucket level scaled by the period (`level * periodMs`) in BigInt, so it
 * is exact where the implementation uses floating point: a bucket of capacity `limit` that
 * drains `limit` units per `periodMs`. What is proved, for random limits, periods and
 * traffic: every verdict equals the model's; no interval of length t ever admits more than
 * `limit + t * limit / periodMs` units; `Retry-After` is the exact first millisecond the
 * request fits; `remaining` is exactly how many more single units fit now.
 */

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type GcraState, gcra } from '../../src/limits/gcra.js'

/** The exact bucket: `scaled` is level * periodMs. */
interface Model {
  scaled: bigint
  at: number
}

function modelDrain(m: Model | undefined, now: number, limit: number): bigint {
  if (!m) return 0n
  const d = m.scaled - BigInt(Math.max(0, now - m.at)) * BigInt(limit)
  return d > 0n ? d : 0n
}

/** Would `need` units fit in the exact bucket at `now`? */
function modelFits(m: Model | undefined, now: number, limit: number, period: number, need: number) {
  return modelDrain(m, now, limit) + BigInt(need) * BigInt(period) <= BigInt(limit) * BigInt(period)
}

interface Step {
  dt: number
  cost: number
}

const params = fc.record({
  limit: fc.integer({ min: 1, max: 60 }),
  periodMs: fc.oneof(
    fc.integer({ min: 1, max: 100 }),
    fc.integer({ min: 100, max: 120_000 }),
    fc.constantFrom(1000, 60_000, 3_600_000),
  ),
})

/** Time steps scaled to the emission interval, so the bucket is exercised near its edges. */
function steps(limit: number, periodMs: number) {
  const interval = Math.max(1, Math.ceil(periodMs / limit))
  return fc.array(
    fc.record({
      dt: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 0, max: interval * 2 }),
        fc.integer({ min: 0, max: periodMs * 2 }),
      ),
      cost: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: limit })),
    }),
    { minLength: 1, maxLength: 120 },
  )
}

/** Replays `trace` as the memory store does: the state is stored only when admitted. */
function replay(limit: number, periodMs: number, trace: Step[]) {
  let state: GcraState | undefined
  let model: Model | undefined
  let now = 1_700_000_000_000
  const admitted: Array<{ t: number; cost: number }> = []
  for (const s of trace) {
    now += s.dt
    const need = s.cost > 0 ? s.cost : 1
    const v = gcra(state, now, limit, periodMs, s.cost)
    expect(v.allowed).toBe(modelFits(model, now, limit, periodMs, need))
    if (v.allowed) {
      state = v.state
      model = {
        scaled: modelDrain(model, now, limit) + BigInt(s.cost) * BigInt(periodMs),
        at: now,
      }
      if (s.cost > 0) admitted.push({ t: now, cost: s.cost })
      expect(v.retryAfterMs).toBe(0)
    } else {
      // Exact Retry-After: refused one millisecond earlier, admitted at that time.
      const r = v.retryAfterMs
      expect(r).toBeGreaterThanOrEqual(1)
      expect(modelFits(model, now + r, limit, periodMs, need)).toBe(true)
      if (r > 1) expect(modelFits(model, now + r - 1, limit, periodMs, need)).toBe(false)
      expect(gcra(state, now + r, limit, periodMs, s.cost).allowed).toBe(true)
    }
  }
  return { admitted, state, now }
}

describe('gcra against the exact leaky bucket', () => {
  it('decides every request exactly as the model and gives the exact Retry-After', () => {
    fc.assert(
      fc.property(
        params.chain((p) => fc.tuple(fc.constant(p), steps(p.limit, p.periodMs))),
        ([{ limit, periodMs }, trace]) => {
          replay(limit, periodMs, trace)
        },
      ),
      { numRuns: 400 },
    )
  })

  it('never admits more than limit + t * limit / periodMs units in any interval of length t', () => {
    fc.assert(
      fc.property(
        params.chain((p) => fc.tuple(fc.constant(p), steps(p.limit, p.periodMs))),
        ([{ limit, periodMs }, trace]) => {
          const { admitted } = replay(limit, periodMs, trace)
          for (let i = 0; i < admitted.length; i++) {
            let units = 0
            for (let j = i; j < admitted.length; j++) {
              units += admitted[j]!.cost
              const t = admitted[j]!.t - admitted[i]!.t
              // units <= limit + t * limit / periodMs, in integers
              expect(units * periodMs).toBeLessThanOrEqual(limit * periodMs + t * limit)
            }
          }
        },
      ),
      { numRuns: 400 },
    )
  })

  it('reports as remaining exactly the single units that still fit at the same instant', () => {
    fc.assert(
      fc.property(
        params.chain((p) => fc.tuple(fc.constant(p), steps(p.limit, p.periodMs))),
        ([{ limit, periodMs }, trace]) => {
          const { state, now } = replay(limit, periodMs, trace)
          let s = state
          const first = gcra(s, now, limit, periodMs, 0)
          for (let k = 0; k < first.remaining; k++) {
            const v = gcra(s, now, limit, periodMs, 1)
            expect(v.allowed).toBe(true)
            s = v.state
          }
          expect(gcra(s, now, limit, periodMs, 1).allowed).toBe(false)
        },
      ),
      { numRuns: 300 },
    )
  })
})
