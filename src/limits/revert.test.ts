/**
 * @module limits/revert.test
 *
 * Taking back one admission: a window's cost leaves the bucket it was counted in (never
 * another, never below zero), a GCRA cost comes back less what has drained since.
 */

import { describe, expect, it } from 'vitest'
import { gcra } from './gcra.js'
import { gcraRemove, undrained, windowRemove } from './revert.js'
import { rollingWindow } from './rolling-window.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = 1_767_225_600_000

describe('windowRemove', () => {
  it('takes the cost out of the bucket of `at`, leaving the others', () => {
    let s = rollingWindow(undefined, T0, 10, DAY, HOUR, 2).state
    s = rollingWindow(s, T0 + 2 * HOUR, 10, DAY, HOUR, 3).state
    expect(windowRemove(s, T0 + 2 * HOUR + 5, DAY, HOUR, 3)).toEqual({
      idx: [T0 / HOUR],
      n: [2],
    })
    expect(windowRemove(s, T0, DAY, HOUR, 1)).toEqual({ idx: s.idx, n: [1, 3] })
    // Never below zero: the emptied bucket goes, the later one is left alone.
    expect(windowRemove(s, T0, DAY, HOUR, 5)).toEqual({ idx: [T0 / HOUR + 2], n: [3] })
    expect(windowRemove(undefined, T0, DAY, HOUR, 1)).toBeUndefined()
  })

  it('counts all-time windows in one bucket', () => {
    const s = rollingWindow(undefined, T0, 10, 0, 0, 4).state
    expect(windowRemove(s, T0 + DAY, 0, 0, 1)!.n).toEqual([3])
  })
})

describe('gcraRemove', () => {
  it('gives back what has not drained since the admission', () => {
    const s = gcra(undefined, T0, 10, 60_000, 6).state
    // At once: all 6 back.
    expect(gcraRemove(s, T0, T0, 10, 60_000, 6)!.level).toBe(0)
    // 12 s later 2 units have drained: 4 of the admission's 6 are still in, 4 come back.
    expect(gcraRemove(s, T0 + 12_000, T0, 10, 60_000, 6)!.level).toBe(0)
    const two = gcra(s, T0, 10, 60_000, 3).state
    expect(gcraRemove(two, T0 + 12_000, T0, 10, 60_000, 3)!.level).toBe(6)
    expect(undrained(3, T0, T0 + 12_000, 10, 60_000)).toBe(1)
    expect(undrained(3, T0, T0 + 60_000, 10, 60_000)).toBe(0)
  })

  it('reckons the drain at the stored time when the cancelling clock is behind it', () => {
    // A counts 6 at T0; B, whose clock is 12 s ahead, counts 3 at T0 + 12 s: level 4 + 3.
    const a = gcra(undefined, T0, 10, 60_000, 6).state
    const b = gcra(a, T0 + 12_000, 10, 60_000, 3).state
    expect(b).toEqual({ level: 7, at: T0 + 12_000 })
    // A cancels on its own clock (T0): at the stored time 4 of its 6 are left, so B's 3 stay,
    // as if A had never been admitted (reckoned at T0, all 6 came back and left 1).
    expect(gcraRemove(b, T0, T0, 10, 60_000, 6)).toEqual({ level: 3, at: T0 + 12_000 })
  })
})
