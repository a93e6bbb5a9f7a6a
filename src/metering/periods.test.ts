/**
 * @module metering/periods.test
 *
 * Billing periods are calendar months in UTC: boundaries, `YYYY-MM` parsing, the next period.
 */

import { describe, expect, it } from 'vitest'
import { nextPeriod, parseMonth, periodOf } from './periods.js'

describe('periods', () => {
  it('a period is the UTC calendar month around a time', () => {
    expect(periodOf(Date.UTC(2026, 1, 14, 23, 59))).toEqual({
      id: '2026-02',
      start: Date.UTC(2026, 1, 1),
      end: Date.UTC(2026, 2, 1),
    })
    // The last millisecond of January is January; the next one is February.
    expect(periodOf(Date.UTC(2026, 1, 1) - 1).id).toBe('2026-01')
    expect(periodOf(Date.UTC(2026, 1, 1)).id).toBe('2026-02')
  })

  it('the next period of December is January of the next year', () => {
    const dec = periodOf(Date.UTC(2025, 11, 31, 12))
    expect(nextPeriod(dec)).toEqual(periodOf(Date.UTC(2026, 0, 1)))
    expect(nextPeriod(dec).id).toBe('2026-01')
  })

  it('parses YYYY-MM and refuses anything else', () => {
    expect(parseMonth('2026-01')).toEqual(periodOf(Date.UTC(2026, 0, 1)))
    expect(parseMonth('2024-02')?.end).toBe(Date.UTC(2024, 2, 1))
    for (const bad of ['2026-00', '2026-13', '2026-1', '26-01', '2026-01-01', '', 'x'])
      expect(parseMonth(bad)).toBeNull()
  })

  it('a month of a year before 100 is that year, not 1900 + it', () => {
    const p = parseMonth('0050-12')!
    expect(p.id).toBe('0050-12')
    expect(new Date(p.start).toISOString()).toBe('0050-12-01T00:00:00.000Z')
    expect(new Date(p.end).toISOString()).toBe('0051-01-01T00:00:00.000Z')
    expect(periodOf(p.start)).toEqual(p)
    expect(parseMonth('0999-01')!.id).toBe('0999-01')
    expect(nextPeriod(parseMonth('0099-12')!).id).toBe('0100-01')
  })
})
