/**
 * @module test/property/memory-counters
 *
 * The memory store's atomic multi-limit `consume` against the brute-force models: random
 * admissions over a rolling quota, a GCRA rate limit and a hold (concurrency or credits),
 * each request checking a random subset of them, mixed with settle operations and time steps.
 * What is proved: an admission passes exactly when every model admits it; a refused
 * admission counts nothing anywhere (all or none); settle's releases and late additions land
 * as the models say; the incremental sweep never drops a counter that still matters.
 */

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { memoryStorage } from '../../src/storage/memory.js'
import type { Check, SettleOp } from '../../src/storage/types.js'
import { GcraModel, HoldModel, WindowModel } from './models.js'

type Step =
  | { kind: 'consume'; dt: number; mask: number; cost: number; amount: number; ttlMs: number }
  | { kind: 'release'; dt: number; pick: number; charge: number }
  | { kind: 'add'; dt: number; toWindow: boolean; cost: number }
  | { kind: 'sweep'; dt: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('consume' as const),
      dt: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 0, max: 400 }),
        fc.integer({ min: 0, max: 5000 }),
      ),
      mask: fc.integer({ min: 1, max: 7 }),
      cost: fc.integer({ min: 0, max: 3 }),
      amount: fc.integer({ min: 0, max: 3 }),
      ttlMs: fc.integer({ min: 1, max: 3000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('release' as const),
      dt: fc.integer({ min: 0, max: 400 }),
      pick: fc.nat(),
      charge: fc.integer({ min: 0, max: 3 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      dt: fc.integer({ min: 0, max: 400 }),
      toWindow: fc.boolean(),
      cost: fc.integer({ min: 1, max: 5 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('sweep' as const),
      dt: fc.integer({ min: 0, max: 8000 }),
    }),
  },
)

const scenario = fc.record({
  wLimit: fc.integer({ min: 1, max: 12 }),
  buckets: fc.integer({ min: 1, max: 12 }),
  bucketMs: fc.integer({ min: 1, max: 400 }),
  allTime: fc.boolean(),
  gLimit: fc.integer({ min: 1, max: 12 }),
  periodMs: fc.integer({ min: 1, max: 6000 }),
  hLimit: fc.integer({ min: 0, max: 8 }),
  steps: fc.array(step, { minLength: 1, maxLength: 120 }),
})

describe('memory counters against the models', () => {
  it('admits a multi-limit request only when every limit allows it, and then counts all', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const { counters } = memoryStorage()
        const windowMs = s.allTime ? 0 : s.buckets * s.bucketMs
        const w = new WindowModel(s.wLimit, windowMs, s.bucketMs)
        const g = new GcraModel(s.gLimit, s.periodMs)
        const h = new HoldModel(s.hLimit)
        const windowCheck = (cost: number): Extract<Check, { type: 'window' }> => ({
          type: 'window',
          key: '{a}:q',
          name: 'daily',
          limit: s.wLimit,
          windowMs,
          bucketMs: s.bucketMs,
          cost,
        })
        const gcraCheck = (cost: number): Extract<Check, { type: 'gcra' }> => ({
          type: 'gcra',
          key: '{a}:r',
          name: 'per-minute',
          limit: s.gLimit,
          windowMs: s.periodMs,
          cost,
        })
        let now = 1_700_000_000_000
        let seq = 0
        const holds: Array<{ id: string; amount: number }> = []
        for (const st of s.steps) {
          now += st.dt
          if (st.kind === 'consume') {
            const id = `r${seq++}`
            const checks: Check[] = []
            if (st.mask & 1) checks.push(windowCheck(st.cost))
            if (st.mask & 2) checks.push(gcraCheck(st.cost))
            if (st.mask & 4)
              checks.push({
                type: 'hold',
                key: '{a}:c',
                name: 'credits',
                limit: s.hLimit,
                amount: st.amount,
                holdId: id,
                ttlMs: st.ttlMs,
              })
            const fits = [
              !(st.mask & 1) || w.fits(now, st.cost),
              !(st.mask & 2) || g.fits(now, st.cost),
              !(st.mask & 4) || h.fits(now, st.amount),
            ]
            const r = await counters.consume(checks, now)
            expect(r.allowed).toBe(fits.every(Boolean))
            expect(r.results.map((x) => x.allowed)).toEqual(
              [1, 2, 4].filter((bit) => st.mask & bit).map((bit) => fits[Math.log2(bit)]),
            )
            if (r.allowed) {
              if (st.mask & 1) w.add(now, st.cost)
              if (st.mask & 2) g.add(now, st.cost)
              if (st.mask & 4) {
                h.add(now, id, st.amount, st.ttlMs)
                holds.push({ id, amount: st.amount })
              }
            }
          } else if (st.kind === 'release') {
            if (holds.length === 0) continue
            const [x] = holds.splice(st.pick % holds.length, 1)
            const op: SettleOp = { type: 'release', key: '{a}:c', holdId: x!.id, charge: st.charge }
            await counters.settle([op], now)
            h.release(x!.id, st.charge)
          } else if (st.kind === 'sweep') {
            // A full sweep drops only idle counters: every later verdict still matches.
            counters.sweep(now)
          } else {
            const check = st.toWindow ? windowCheck(st.cost) : gcraCheck(st.cost)
            await counters.settle([{ type: 'add', check }], now)
            if (st.toWindow) w.add(now, st.cost)
            else g.add(now, st.cost)
          }
          expect(await counters.held('{a}:c', now)).toBe(h.total(now))
        }
      }),
      { numRuns: 300 },
    )
  })

  it('lets exactly limit of many concurrent admissions through', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 300 }),
        async (limit, n) => {
          const { counters } = memoryStorage()
          const now = 1_700_000_000_000
          const results = await Promise.all(
            Array.from({ length: n }, (_, i) =>
              counters.consume(
                [
                  {
                    type: 'window',
                    key: '{a}:q',
                    name: 'total',
                    limit,
                    windowMs: 0,
                    bucketMs: 0,
                    cost: 1,
                  },
                  {
                    type: 'hold',
                    key: '{a}:c',
                    name: 'concurrency',
                    limit: 1e9,
                    amount: 1,
                    holdId: `r${i}`,
                    ttlMs: 1000,
                  },
                ],
                now,
              ),
            ),
          )
          expect(results.filter((r) => r.allowed)).toHaveLength(Math.min(limit, n))
          expect(await counters.held('{a}:c', now)).toBe(Math.min(limit, n))
        },
      ),
      { numRuns: 50 },
    )
  })
})
