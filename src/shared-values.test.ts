import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { NO_FIELDS, NO_ITEMS, sharedValues } from './shared-values.js'

const copy = <T>(v: T): T => structuredClone(v)

describe('sharedValues', () => {
  it('answers one frozen copy for equal plain data, deeply frozen, apart from the original', () => {
    const shared = sharedValues(copy)
    const a = { quotas: { daily: 10 }, rateLimits: [{ limit: 5, windowMs: 1000 }] }
    const b = { quotas: { daily: 10 }, rateLimits: [{ limit: 5, windowMs: 1000 }] }
    const s = shared(a)
    expect(shared(b)).toBe(s)
    expect(s).not.toBe(a)
    expect(s).toEqual(a)
    expect(
      Object.isFrozen(s) && Object.isFrozen(s.quotas) && Object.isFrozen(s.rateLimits[0]),
    ).toBe(true)
    a.quotas.daily = 11
    expect(s.quotas.daily).toBe(10)
  })

  it('keeps values JSON would confuse as they are', () => {
    const shared = sharedValues(copy)
    // Each is its own value: text alone would make -0 of 0, null of Infinity and NaN, and drop
    // an undefined field or a symbol key.
    const odd: unknown[] = [
      { n: -0 },
      { n: Number.POSITIVE_INFINITY },
      { n: Number.NaN },
      { n: undefined },
      { [Symbol('s')]: 1, n: 0 },
      { d: new Date(0) },
      [1, undefined],
    ]
    for (const v of odd) expect(shared(v)).toBe(v)
    expect(shared({ n: 0 })).toEqual({ n: 0 })
    expect(shared({ n: null })).toEqual({ n: null })
  })

  it('shares the empty object and list', () => {
    const shared = sharedValues(copy)
    expect(shared({})).toBe(NO_FIELDS)
    expect(shared([])).toBe(NO_ITEMS)
    expect(shared(Object.create(null))).not.toBe(NO_FIELDS)
  })

  it('stops sharing new values once full, and keeps those it has', () => {
    const shared = sharedValues(copy, 2)
    const one = shared({ a: 1 })
    shared({ a: 2 })
    const third = { a: 3 }
    expect(shared(third)).toBe(third)
    expect(shared({ a: 1 })).toBe(one)
  })

  it('a shared value equals the value it stands for (random JSON-like data)', () => {
    const shared = sharedValues(copy)
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (x, y) => {
        const sx = shared(x)
        const sy = shared(y)
        expect(sx).toStrictEqual(x)
        expect(sy).toStrictEqual(y)
        // The same copy only for values that are the same.
        if (sx === sy && typeof x === 'object' && x !== null) expect(y).toStrictEqual(x)
      }),
      { numRuns: 500 },
    )
  })
})
