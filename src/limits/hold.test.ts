/**
 * @module limits/hold.test
 *
 * Unit tests of holds: concurrency slots and credit reservations. The random traces against
 * a brute-force model are in `test/property/hold.test.ts`.
 */

import { describe, expect, it } from 'vitest'
import { type HoldState, hold, holdIdle, holdTotal, release, renewHold } from './hold.js'

const T0 = 1_700_000_000_000

describe('hold', () => {
  it('refuses a second request in flight under a concurrency cap of 1', () => {
    const a = hold(undefined, T0, 1, 1, 'a', 60_000)
    expect(a).toMatchObject({ allowed: true, used: 1, remaining: 0 })
    expect(hold(a.state, T0, 1, 1, 'b', 60_000)).toMatchObject({ allowed: false, used: 1 })
  })

  it('frees the slot when the request is released, charging nothing', () => {
    const a = hold(undefined, T0, 1, 1, 'a', 60_000)
    const s = release(a.state, T0 + 5, 'a', 0)
    expect(s).toEqual({ used: 0, holds: [] })
    expect(holdIdle(s, T0 + 5)).toBe(true)
    expect(hold(s, T0 + 5, 1, 1, 'b', 60_000).allowed).toBe(true)
  })

  it('frees a slot that is never released when its lease expires', () => {
    const a = hold(undefined, T0, 1, 1, 'a', 30_000)
    expect(hold(a.state, T0 + 29_999, 1, 1, 'b', 30_000).allowed).toBe(false)
    expect(hold(a.state, T0 + 30_000, 1, 1, 'b', 30_000).allowed).toBe(true)
  })

  it('turns a credit reservation into the actual charge and refunds the rest', () => {
    let s: HoldState | undefined
    s = hold(s, T0, 10, 6, 'a', 60_000).state
    expect(hold(s, T0, 10, 6, 'b', 60_000).allowed).toBe(false)
    s = release(s, T0, 'a', 2)
    expect(s.used).toBe(2)
    expect(hold(s, T0, 10, 8, 'b', 60_000)).toMatchObject({ allowed: true, used: 10, remaining: 0 })
  })

  it('counts but never refuses with an infinite limit (overage plans)', () => {
    const v = hold({ used: 1e12, holds: [] }, T0, Infinity, 1e9, 'a', 1000)
    expect(v).toMatchObject({ allowed: true, used: 1e12 + 1e9 })
  })

  it('keeps the other holds in their order when one is released or expires', () => {
    let s: HoldState | undefined
    for (const [id, ttl] of [
      ['a', 60_000],
      ['b', 10],
      ['c', 60_000],
      ['d', 60_000],
    ] as const)
      s = hold(s, T0, 100, 1, id, ttl).state
    // 'b' has expired: pruned; 'c' released: the later ones move down, in order.
    s = release(s, T0 + 10, 'c', 1)
    expect(s.holds.map((h) => h[0])).toEqual(['a', 'd'])
    s = release(s, T0 + 10, 'd', 1)
    s = release(s, T0 + 10, 'a', 1)
    expect(s).toEqual({ used: 3, holds: [] })
  })

  it('ignores releasing a hold that is gone, still adding the charge', () => {
    const s = release(undefined, T0, 'nope', 3)
    expect(s).toEqual({ used: 3, holds: [] })
    expect(holdIdle(s, T0)).toBe(false)
  })

  it('renews a live hold in its place, never a released or lapsed one, never shorter', () => {
    const s = hold(hold(undefined, T0, 3, 1, 'a', 1000).state, T0, 3, 1.5, 'b', 1000).state
    const before = s.holds[0]
    expect(renewHold(s, T0 + 500, 'a', 1000)).toBe(true)
    expect(s.holds.map((h) => h[0])).toEqual(['a', 'b'])
    expect(s.holds[0]).toEqual(['a', 1, T0 + 1500])
    // The tuple a caller may hold is left as it was.
    expect(before).toEqual(['a', 1, T0 + 1000])
    expect(holdTotal(s, T0 + 1200)).toBe(1)
    expect(renewHold(s, T0 + 600, 'a', 100)).toBe(false)
    expect(s.holds[0]![2]).toBe(T0 + 1500)
    // `b` lapsed at T0 + 1000: not made again; an id never held neither.
    expect(renewHold(s, T0 + 1000, 'b', 1000)).toBe(false)
    expect(renewHold(s, T0, 'x', 1000)).toBe(false)
    const released = release(s, T0 + 700, 'a', 0)
    expect(renewHold(released, T0 + 800, 'a', 1000)).toBe(false)
    expect(holdTotal(released, T0 + 800)).toBe(1.5)
  })
})
