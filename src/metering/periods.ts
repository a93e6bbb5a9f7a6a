/**
 * @module metering/periods
 *
 * Billing periods are calendar months in UTC: credits reset on the 1st at 00:00 UTC (the
 * `resetDate` of `003_a3f67200bbf2a6b6.txt`). Pure functions of a time.
 */

import { z } from 'zod'
import { InvalidRequestError } from '../errors.js'

/** Start (inclusive) and end (exclusive) of the month containing `now`, and its `YYYY-MM` id. */
export interface Period {
  id: string
  start: number
  end: number
}

export function periodOf(now: number): Period {
  const d = new Date(now)
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  return {
    id: `${String(y).padStart(4, '0')}-${String(m + 1).padStart(2, '0')}`,
    start: monthStart(y, m),
    end: monthStart(y, m + 1),
  }
}

/**
 * The first instant of month `m` (0-based, may be 12) of year `y`, for any year: `Date.UTC`
 * takes a year 0-99 as 1900-1999 (`0050-01` was January 1950).
 */
function monthStart(y: number, m: number): number {
  const d = new Date(0)
  d.setUTCFullYear(y, m, 1)
  return d.getTime()
}

const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/
const MONTH_RULE = 'must be YYYY-MM'

/** A month as every entry takes it (`usage.get`, `reconcile`, `GET /usage`): `YYYY-MM`. */
export const monthSchema = z.string({ error: MONTH_RULE }).regex(MONTH, MONTH_RULE)

/** The period named `YYYY-MM`, or null when the string is not one. */
export function parseMonth(month: string): Period | null {
  const m = MONTH.exec(month)
  if (!m) return null
  return periodOf(monthStart(Number(m[1]), Number(m[2]) - 1))
}

/**
 * The period of an optional `month` argument: the one containing `now` when it is left out.
 *
 * @throws {InvalidRequestError} (400) naming `month` when it is not `YYYY-MM`
 */
export function periodOfMonth(month: unknown, now: number): Period {
  if (month === undefined) return periodOf(now)
  const p = typeof month === 'string' ? parseMonth(month) : null
  if (!p)
    throw new InvalidRequestError(`Invalid request: month: ${MONTH_RULE}`, [
      { path: 'month', message: MONTH_RULE },
    ])
  return p
}

/** The period after `p`. */
export function nextPeriod(p: Period): Period {
  return periodOf(p.end)
}
