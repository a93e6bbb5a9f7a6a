import { describe, expect, it } from 'vitest'
import { LocalHolds } from './local-holds.js'

describe('LocalHolds', () => {
  it('keeps the live total as holds come, go, expire and move', () => {
    const h = new LocalHolds()
    h.set('a', 2, 100)
    h.set('b', 0.1, 50)
    h.set('c', 0.2, 200)
    expect(h.amount(0)).toBeCloseTo(2.3, 12)
    expect(h.count(0)).toBe(3)
    // Set again: replaced, not added.
    h.set('a', 3, 100)
    expect(h.amount(0)).toBeCloseTo(3.3, 12)
    // 'b' expires at 50 (live before, gone at it).
    expect(h.amount(49)).toBeCloseTo(3.3, 12)
    expect(h.amount(50)).toBeCloseTo(3.2, 12)
    expect(h.has('b')).toBe(false)
    expect(h.delete('a')).toBe(true)
    expect(h.delete('a')).toBe(false)
    expect(h.expiresAt('c')).toBe(200)
    expect(h.amount(60)).toBeCloseTo(0.2, 12)
    // Empty: exactly 0, no rounding left over.
    h.delete('c')
    expect(h.amount(60)).toBe(0)

    const from = new LocalHolds()
    const to = new LocalHolds()
    from.set('x', 1, 10)
    from.set('y', 4, 30)
    to.set('z', 1, 40)
    from.moveTo(to, 20)
    expect([from.size, from.amount(20)]).toEqual([0, 0])
    expect([to.count(20), to.amount(20), to.has('x')]).toEqual([2, 5, false])
    // The soonest expiry came with the moved hold: it still expires on time.
    expect(to.amount(30)).toBe(1)
  })

  it('a deleted soonest hold does not keep an expired one counted', () => {
    const h = new LocalHolds()
    h.set('a', 1, 10)
    h.set('b', 1, 20)
    h.delete('a')
    expect(h.amount(25)).toBe(0)
    expect(h.count(25)).toBe(0)
  })

  it('renews a live hold to a later expiry, never a deleted or expired one', () => {
    const h = new LocalHolds()
    h.set('a', 2, 100)
    h.set('b', 1, 100)
    expect(h.renew('a', 300, 50)).toBe(true)
    expect(h.expiresAt('a')).toBe(300)
    expect(h.renew('a', 200, 60)).toBe(true)
    expect(h.expiresAt('a')).toBe(300)
    expect(h.amount(150)).toBe(2)
    expect(h.renew('b', 400, 150)).toBe(false)
    h.delete('a')
    expect(h.renew('a', 500, 160)).toBe(false)
    expect(h.count(160)).toBe(0)
  })
})
