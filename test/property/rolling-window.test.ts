/**
 * @module test/property/rolling-window
 *
 * The bucketed rolling window against a brute-force model that keeps every admitted event
 * with its time, on an injected clock. What is proved, for random windows, bucket sizes
 * (dividing the window or not) and traffic:
 * - every verdict equals the bucket rule computed from the raw events;
 * - no closed window `[t - W, t]` ever holds more than `limit` admitted units;
 * - a refusal comes at most one bucket early: the events of the last `W + bucketMs` (for a
 *   bucket that divides the window) already fill the limit;
 * - `Retry-After` is the first millisecond the request fits, and `remaining` is exact;
 * - the all-time window (`total`) admits exactly `limit` units, ever.
 */

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { rollingWindow, type WindowState, windowAdd } from '../../src/limits/rolling-window.js'

interface Event {
  t: number
  cost: number
  /** Counted after the fact (`windowAdd`), not admitted. */
  late?: boolean
}

const sumWhere = (events: Event[], keep: (e: Event) => boolean) =>
  events.reduce((s, e) => (keep(e) ? s + e.cost : s), 0)

/** The bucket rule from raw events: the buckets from `floor(now/b) - ceil(W/b)` on. */
function bucketUsed(events: Event[], now: number, windowMs: number, bucketMs: number) {
  const first = Math.floor(now / bucketMs) - Math.ceil(windowMs / bucketMs)
  return sumWhere(events, (e) => Math.floor(e.t / bucketMs) >= first)
}

const shape = fc.oneof(
  // bucket divides the window, as every quota window does
  fc
    .record({ n: fc.integer({ min: 1, max: 30 }), bucketMs: fc.integer({ min: 1, max: 500 }) })
    .map(({ n, bucketMs }) => ({ windowMs: n * bucketMs, bucketMs })),
  // any bucket (the failed-auth guard rounds its bucket up)
  fc
    .record({ windowMs: fc.integer({ min: 1, max: 5000 }), k: fc.integer({ min: 1, max: 24 }) })
    .map(({ windowMs, k }) => ({ windowMs, bucketMs: Math.max(1, Math.ceil(windowMs / k)) })),
)

const scenario = fc
  .record({ limit: fc.integer({ min: 1, max: 20 }), shape })
  .chain(({ limit, shape: { windowMs, bucketMs } }) =>
    fc.record({
      limit: fc.constant(limit),
      windowMs: fc.constant(windowMs),
      bucketMs: fc.constant(bucketMs),
      start: fc.integer({ min: 0, max: 10 * bucketMs }),
      trace: fc.array(
        fc.record({
          dt: fc.oneof(
            fc.constant(0),
            fc.integer({ min: 0, max: bucketMs }),
            fc.integer({ min: 0, max: windowMs + 2 * bucketMs }),
          ),
          cost: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: limit + 1 })),
          late: fc.boolean(),
        }),
        { minLength: 1, maxLength: 150 },
      ),
    }),
  )

describe('rolling window against the brute-force model', () => {
  it('admits exactly what the bucket rule allows and never more than limit in any window', () => {
    fc.assert(
      fc.property(scenario, ({ limit, windowMs, bucketMs, start, trace }) => {
        let state: WindowState | undefined
        let now = 1_700_000_000_000 - ((1_700_000_000_000 % bucketMs) - start)
        const events: Event[] = []
        const span = Math.ceil(windowMs / bucketMs) * bucketMs
        for (const step of trace) {
          now += step.dt
          const used = bucketUsed(events, now, windowMs, bucketMs)
          const v = rollingWindow(state, now, limit, windowMs, bucketMs, step.cost)
          expect(v.allowed).toBe(used + step.cost <= limit)
          if (v.allowed) {
            state = v.state
            if (step.cost > 0) events.push({ t: now, cost: step.cost })
            expect(v.used).toBe(used + step.cost)
            expect(v.remaining).toBe(limit - used - step.cost)
            // Safety: the closed window [now - W, now] holds at most limit.
            expect(sumWhere(events, (e) => e.t >= now - windowMs)).toBeLessThanOrEqual(limit)
          } else {
            expect(v.used).toBe(used)
            expect(v.remaining).toBe(Math.max(0, limit - used))
            // At most one bucket early: (now - span - bucketMs, now] is already full.
            const recent = sumWhere(events, (e) => e.t > now - span - bucketMs)
            expect(recent + step.cost).toBeGreaterThan(limit)
            // Retry-After: the first millisecond the same request fits.
            const r = v.retryAfterMs
            if (step.cost > limit) expect(r).toBe(Infinity)
            else {
              expect(r).toBeGreaterThanOrEqual(1)
              expect(
                bucketUsed(events, now + r, windowMs, bucketMs) + step.cost,
              ).toBeLessThanOrEqual(limit)
              expect(
                bucketUsed(events, now + r - 1, windowMs, bucketMs) + step.cost,
              ).toBeGreaterThan(limit)
              expect(
                rollingWindow(state, now + r, limit, windowMs, bucketMs, step.cost).allowed,
              ).toBe(true)
            }
          }
          // Counting after the fact (settle) goes through the same buckets, never refusing.
          if (step.late && step.cost > 0 && v.allowed && events.length % 7 === 0) {
            state = windowAdd(state, now, windowMs, bucketMs, 1)
            events.push({ t: now, cost: 1, late: true })
          }
        }
        // Safety over every window, not only those ending at an admission: what was counted
        // after the fact only makes admission stricter.
        for (const e of events) {
          const admitted = sumWhere(events, (x) => !x.late && x.t >= e.t && x.t <= e.t + windowMs)
          expect(admitted).toBeLessThanOrEqual(limit)
        }
      }),
      { numRuns: 500 },
    )
  })

  it('never admits more than limit in any closed window when counting only at admission', () => {
    fc.assert(
      fc.property(scenario, ({ limit, windowMs, bucketMs, trace }) => {
        let state: WindowState | undefined
        let now = 1_700_000_000_000
        const events: Event[] = []
        for (const step of trace) {
          now += step.dt
          const v = rollingWindow(state, now, limit, windowMs, bucketMs, step.cost)
          if (v.allowed) {
            state = v.state
            if (step.cost > 0) events.push({ t: now, cost: step.cost })
          }
        }
        for (const e of events)
          expect(sumWhere(events, (x) => x.t >= e.t && x.t <= e.t + windowMs)).toBeLessThanOrEqual(
            limit,
          )
      }),
      { numRuns: 500 },
    )
  })

  it('admits exactly limit units all-time and then refuses for good', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(
          fc.record({
            dt: fc.integer({ min: 0, max: 1e10 }),
            cost: fc.integer({ min: 1, max: 3 }),
          }),
          {
            maxLength: 100,
          },
        ),
        (limit, trace) => {
          let state: WindowState | undefined
          let now = 1_700_000_000_000
          let admitted = 0
          for (const step of trace) {
            now += step.dt
            const v = rollingWindow(state, now, limit, 0, 0, step.cost)
            expect(v.allowed).toBe(admitted + step.cost <= limit)
            if (v.allowed) {
              state = v.state
              admitted += step.cost
              expect(v.resetMs).toBe(Infinity)
            } else expect(v.retryAfterMs).toBe(Infinity)
          }
          expect(state?.idx.length ?? 0).toBeLessThanOrEqual(1)
        },
      ),
      { numRuns: 300 },
    )
  })
})
