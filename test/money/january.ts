/**
 * @module test/money/january
 *
 * The month the money suites close: a plan of 100 credits a month with overage allowed, the
 * account `acct_1` topped up with `prepaid` and 150 credits used on January 20th (50 beyond
 * the plan, taken from the balance when January closes).
 */

import { expect } from 'vitest'
import { createTollbooth, manualClock, type Storage } from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'

export const JAN_20 = Date.UTC(2026, 0, 20)
export const FEB = Date.UTC(2026, 1, 1)
export const MINUTE = 60_000
export const HOUR = 3_600_000

/** The options of every instance of these suites (one `clock` shared by them). */
export function overPlan(storage: Storage, clock: ReturnType<typeof manualClock>) {
  return {
    secret: SECRET,
    clock,
    storage,
    plans: { over: { monthlyCredits: 100, allowOverage: true } },
    defaultTier: 'over',
  }
}

export async function january(storage: Storage, prepaid: number) {
  const clock = manualClock(JAN_20)
  const tb = createTollbooth(overPlan(storage, clock))
  const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
  await tb.accounts.addCredits('acct_1', prepaid)
  const d = await tb.authenticate(req(key), tb.route({ cost: 150 }))
  expect(d.allowed).toBe(true)
  await tb.settle(d, { status: 200 })
  await tb.flush()
  return { tb, clock }
}
