/**
 * @module limits/gcra.test
 *
 * Unit tests of GCRA: bursts, exact Retry-After, sub-millisecond emission intervals, room
 * checks for token limits, counting after the fact. The random traces are in
 * `test/property/gcra.test.ts`.
 */

import { describe, expect, it } from 'vitest'
import { type GcraState, gcra, gcraAdd, gcraIdle } from './gcra.js'

const T0 = 1_700_000_000_000
const MINUTE = 60_000

function burst(n: number, limit: number, periodMs: number, now = T0) {
  let state: GcraState | undefined
  let allowed = 0
  for (let i = 0; i < n; i++) {
    const v = gcra(state, now, limit, periodMs, 1)
    if (v.allowed) {
      allowed++
      state = v.state
    }
  }
  return { state, allowed }
}

describe('gcra', () => {
  it('admits a burst of limit, then refuses with the exact wait for one unit', () => {
    const { state, allowed } = burst(100, 60, MINUTE)
    expect(allowed).toBe(60)
    const v = gcra(state, T0, 60, MINUTE, 1)
    expect(v).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1000, resetMs: MINUTE })
    expect(gcra(state, T0 + 999, 60, MINUTE, 1).allowed).toBe(false)
    expect(gcra(state, T0 + 1000, 60, MINUTE, 1).allowed).toBe(true)
  })

  it('gives a Retry-After of exactly one period for 1 per hour (no float rounding)', () => {
    const { state } = burst(1, 1, 3_600_000)
    expect(gcra(state, T0, 1, 3_600_000, 1).retryAfterMs).toBe(3_600_000)
    expect(gcra(state, T0, 1, 3_600_000, 0).retryAfterMs).toBe(3_600_000)
    expect(gcra(state, T0 + 3_600_000, 1, 3_600_000, 1).allowed).toBe(true)
  })

  it('reports remaining and reset after each admission', () => {
    let state: GcraState | undefined
    for (let i = 1; i <= 3; i++) {
      const v = gcra(state, T0, 10, 10_000, 1)
      state = v.state
      expect(v.remaining).toBe(10 - i)
      expect(v.resetMs).toBe(i * 1000)
    }
  })

  it('counts every unit of a 1e9-per-minute limit, whose emission interval is 60 ns', () => {
    const limit = 1e9
    let v = gcra(undefined, T0, limit, MINUTE, limit - 3)
    expect(v.remaining).toBe(3)
    for (const left of [2, 1, 0]) {
      v = gcra(v.state, T0, limit, MINUTE, 1)
      expect(v).toMatchObject({ allowed: true, remaining: left })
    }
    expect(gcra(v.state, T0, limit, MINUTE, 1)).toMatchObject({ allowed: false, retryAfterMs: 1 })
    // One millisecond drains 1e9 / 60000 = 16666.67 units: exactly 16666 more single units fit.
    let state = v.state
    let admitted = 0
    for (;;) {
      const w = gcra(state, T0 + 1, limit, MINUTE, 1)
      if (!w.allowed) break
      state = w.state
      admitted++
    }
    expect(admitted).toBe(16_666)
  })

  it('checks a token limit for room with cost 0 without counting anything', () => {
    const v = gcra(undefined, T0, 1000, MINUTE, 0)
    expect(v).toMatchObject({ allowed: true, remaining: 1000 })
    expect(v.state.level).toBe(0)
  })

  it('counts reported tokens after the fact beyond the limit, refusing until room is back', () => {
    const state = gcraAdd(undefined, T0, 1000, MINUTE, 1500)
    const v = gcra(state, T0, 1000, MINUTE, 0)
    // 501 tokens must drain at 1000 per minute: 30,060 ms.
    expect(v).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 30_060 })
    expect(gcra(state, T0 + 30_059, 1000, MINUTE, 0).allowed).toBe(false)
    expect(gcra(state, T0 + 30_060, 1000, MINUTE, 0).allowed).toBe(true)
  })

  it('refills nothing when the clock steps back', () => {
    const { state } = burst(5, 5, MINUTE)
    expect(gcra(state, T0 - 10_000, 5, MINUTE, 1).allowed).toBe(false)
  })

  it('never moves the stored time back: a clock 1 s behind gains no drain (50/min, 6 s)', () => {
    // Two instances alternate every 10 ms for 6 s, one clock 1 s behind: with the request's own
    // time stored, each step back and forth refilled 1 s (89 admitted). At most the exact 55,
    // plus what 2 s of skew can add (50 + 8 * 50 / 60 = 56.7).
    let state: GcraState | undefined
    let admitted = 0
    for (let i = 0, t = 0; t < 6000; i++, t += 10) {
      const v = gcra(state, T0 + t - (i % 2 ? 1000 : 0), 50, MINUTE, 1)
      if (v.allowed) {
        admitted++
        state = v.state
      }
    }
    expect(admitted).toBeLessThanOrEqual(56)
    expect(admitted).toBeGreaterThanOrEqual(54)
  })

  it('keeps the later time: an earlier clock neither lowers `at` nor drains', () => {
    const s = gcra(undefined, T0, 10, 10_000, 5).state
    const v = gcra(s, T0 - 2000, 10, 10_000, 1)
    expect(v.state).toEqual({ level: 6, at: T0 })
    // Its waits are counted from its own clock: 2 s behind the stored time.
    expect(v.resetMs).toBe(6000 + 2000)
    expect(gcraAdd(s, T0 - 2000, 10, 10_000, 1)).toEqual({ level: 6, at: T0 })
    const full = gcra(undefined, T0, 10, 10_000, 10).state
    expect(gcra(full, T0 - 2000, 10, 10_000, 1)).toMatchObject({
      allowed: false,
      retryAfterMs: 1000 + 2000,
    })
  })

  it('holds the limit for as long as a clock far ahead leads: the price of never moving back', () => {
    // One request from a clock 1 h ahead (60/min); then a client of 1 request/s on clocks that
    // are right: the stored time stays 1 h ahead, nothing drains until true time gets there.
    let state = gcra(undefined, T0 + 3_600_000, 60, MINUTE, 1).state
    let admitted = 0
    let retryAfterMs = 0
    for (let s = 0; s < 600; s++) {
      const v = gcra(state, T0 + s * 1000, 60, MINUTE, 1)
      if (v.allowed) {
        admitted++
        state = v.state
      } else retryAfterMs = v.retryAfterMs
    }
    expect(admitted).toBe(59)
    expect(retryAfterMs).toBeGreaterThan(2_900_000)
    // Once true time passes the stored one, it drains as ever.
    expect(gcra(state, T0 + 3_600_000 + MINUTE, 60, MINUTE, 1).allowed).toBe(true)
  })

  it('is idle, so droppable, exactly once fully drained', () => {
    const { state } = burst(3, 10, 10_000)
    expect(gcraIdle(state!, T0 + 2999, 10, 10_000)).toBe(false)
    expect(gcraIdle(state!, T0 + 3000, 10, 10_000)).toBe(true)
  })
})
