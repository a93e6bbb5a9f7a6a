import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { roundAmount } from './amount.js'

/** A decimal of nano-units as the number it names (exact decimal text, then one rounding). */
const nanos = (n: bigint) => {
  const neg = n < 0n
  const a = neg ? -n : n
  const text = `${a / 1_000_000_000n}.${(a % 1_000_000_000n).toString().padStart(9, '0')}`
  return Number(neg ? `-${text}` : text)
}

describe('roundAmount', () => {
  it('gives the decimals binary doubles miss', () => {
    expect(0.1 + 0.1 + 0.1).toBe(0.30000000000000004)
    expect(roundAmount(0.1 + 0.1 + 0.1)).toBe(0.3)
    expect(roundAmount(1 - 0.9)).toBe(0.1)
    expect(roundAmount(1234 * 0.0008)).toBe(0.9872)
    expect(roundAmount(0.3 - 0.1 - 0.1 - 0.1)).toBe(0)
  })

  it('keeps 9 decimals below 1e6, then 15 significant digits, and nothing changes from 1e15', () => {
    expect(roundAmount(0.000_000_001)).toBe(1e-9)
    expect(roundAmount(0.000_000_000_4)).toBe(0)
    expect(roundAmount(999_999.123_456_789_4)).toBe(999_999.123_456_789)
    expect(roundAmount(1_234_567.123_456_789)).toBe(1_234_567.123_456_79)
    expect(roundAmount(12_345_678.123_456_789)).toBe(12_345_678.123_456_8)
    expect(roundAmount(1e14 + 0.3)).toBe(1e14)
    expect(roundAmount(2 ** 53 - 1)).toBe(2 ** 53 - 1)
    expect(roundAmount(1e15 + 1)).toBe(1e15 + 1)
    expect(roundAmount(Infinity)).toBe(Infinity)
    expect(roundAmount(-Infinity)).toBe(-Infinity)
    expect(roundAmount(Number.NaN)).toBeNaN()
  })

  it('never answers -0, and is odd on the grid', () => {
    expect(Object.is(roundAmount(-1e-10), 0)).toBe(true)
    expect(Object.is(roundAmount(-0), 0)).toBe(true)
    expect(roundAmount(-(0.1 + 0.2))).toBe(-0.3)
    expect(roundAmount(-1_234_567.123_456_789)).toBe(-1_234_567.123_456_79)
  })

  it('adds decimals of up to 9 places below 1e6 as decimals, in any order (fast-check)', () => {
    const amount = fc.bigInt({ min: -999_999_999_999_999n, max: 999_999_999_999_999n })
    fc.assert(
      fc.property(fc.array(amount, { minLength: 1, maxLength: 20 }), (xs) => {
        let exact = 0n
        let total = 0
        for (const x of xs) {
          exact += x
          if (exact > 999_999_999_999_999n || exact < -999_999_999_999_999n) return
          total = roundAmount(total + nanos(x))
          expect(total).toBe(nanos(exact))
        }
        // Rounding what is already on the grid changes nothing.
        expect(roundAmount(total)).toBe(total)
        expect(String(total)).toBe(String(nanos(exact)))
      }),
    )
  })
})
