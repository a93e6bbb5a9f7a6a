/**
 * @module limits/rolling-window.test
 *
 * Unit tests of the bucketed rolling window: a daily quota, the all-time `total`, Retry-After
 * at the bucket edge, counting after the fact. The random traces are in
 * `test/property/rolling-window.test.ts`.
 */

import { describe, expect, it } from 'vitest'
import { rollingWindow, type WindowState, windowAdd } from './rolling-window.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.UTC(2026, 0, 1, 12, 30)

function use(n: number, now: number, state?: WindowState) {
  let s = state
  for (let i = 0; i < n; i++) s = rollingWindow(s, now, 1_000, DAY, HOUR, 1).state
  return s
}

describe('rolling window', () => {
  it('refuses a daily quota until the hour bucket of the oldest request leaves the window', () => {
    let s: WindowState | undefined
    for (let i = 0; i < 3; i++) {
      const v = rollingWindow(s, T0, 3, DAY, HOUR, 1)
      expect(v).toMatchObject({ allowed: true, used: i + 1, remaining: 2 - i })
      s = v.state
    }
    const refused = rollingWindow(s, T0 + DAY, 3, DAY, HOUR, 1)
    // The 12:00 bucket is counted until 13:00 the next day: at most one bucket late.
    expect(refused).toMatchObject({ allowed: false, used: 3, remaining: 0 })
    expect(refused.retryAfterMs).toBe(Date.UTC(2026, 0, 2, 13) - (T0 + DAY))
    expect(rollingWindow(s, Date.UTC(2026, 0, 2, 13) - 1, 3, DAY, HOUR, 1).allowed).toBe(false)
    expect(rollingWindow(s, Date.UTC(2026, 0, 2, 13), 3, DAY, HOUR, 1).allowed).toBe(true)
  })

  it('is rolling, not calendar: midnight frees nothing', () => {
    const s = use(1, Date.UTC(2026, 0, 1, 23, 59))
    const v = rollingWindow(s, Date.UTC(2026, 0, 2, 0, 1), 1, DAY, HOUR, 1)
    expect(v.allowed).toBe(false)
  })

  it('frees only what the leaving buckets held, oldest first', () => {
    let s = use(2, T0)
    s = use(1, T0 + 5 * HOUR, s)
    const v = rollingWindow(s, T0 + 6 * HOUR, 3, DAY, HOUR, 2)
    expect(v.allowed).toBe(false)
    // Two units are needed: the first bucket (2 units) must leave.
    expect(v.retryAfterMs).toBe(Date.UTC(2026, 0, 2, 13) - (T0 + 6 * HOUR))
  })

  it('keeps the total quota for good: no reset, no Retry-After', () => {
    let s: WindowState | undefined
    for (let i = 0; i < 2; i++) s = rollingWindow(s, T0 + i, 2, 0, 0, 1).state
    const v = rollingWindow(s, T0 + 10 * 365 * DAY, 2, 0, 0, 1)
    expect(v).toMatchObject({ allowed: false, resetMs: Infinity, retryAfterMs: Infinity })
  })

  it('never admits a request larger than the limit', () => {
    expect(rollingWindow(undefined, T0, 3, DAY, HOUR, 4)).toMatchObject({
      allowed: false,
      retryAfterMs: Infinity,
    })
  })

  it('counts units added after the fact and never refuses them', () => {
    let s = windowAdd(undefined, T0, DAY, HOUR, 5)
    s = windowAdd(s, T0, DAY, HOUR, 5)
    expect(rollingWindow(s, T0, 3, DAY, HOUR, 0)).toMatchObject({ allowed: false, used: 10 })
  })

  it('keeps its buckets in order when the clock steps back a bucket', () => {
    let s = use(1, T0)
    s = rollingWindow(s, T0 - HOUR, 10, DAY, HOUR, 1).state
    s = windowAdd(s, T0 - 2 * HOUR, DAY, HOUR, 1)
    expect(s.idx).toEqual([Math.floor(T0 / HOUR)])
    expect(s.n).toEqual([3])
  })

  it('drops buckets that left the window from the state', () => {
    const s = use(4, T0)
    const v = rollingWindow(s, T0 + 2 * DAY, 10, DAY, HOUR, 1)
    expect(v.state.idx).toHaveLength(1)
    expect(v.used).toBe(1)
  })
})
