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
    id: `${y}-${String(m + 1).padStart(2, '0')}`,
    start: Date.UTC(y, m, 1),
    end: Date.UTC(y, m + 1, 1),
  }
}

const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/
const MONTH_RULE = 'must be YYYY-MM'

/** A month as every entry takes it (`usage.get`, `reconcile`, `GET /usage`): `YYYY-MM`. */
export const monthSchema = z.string({ error: MONTH_RULE }).regex(MONTH, MONTH_RULE)

/** The period named `YYYY-MM`, or null when the string is not one. */
export function parseMonth(month: string): Period | null {
  const m = MONTH.exec(month)
  if (!m) return null
  return periodOf(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1))
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
