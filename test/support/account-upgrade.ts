/**
 * @module test/support/account-upgrade
 *
 * For tollbooth's own tests (not exported): what a store must answer after its accounts were
 * upgraded to keep each closed month's figures. The caller wrote, as the previous version did,
 * {@link OLD_ACCOUNT}: `acct_1`, rolled over into February 2026 (January closed by the previous
 * version with 70 of its plan's 100 credits used: 30 carried over) with a balance of 20, and
 * January's hourly usage totals (70 units). January, closed before the upgrade, shows its use
 * against its plan's credits alone, its carryover and balance unknown (null); February, closed
 * after it, shows its figures as its rollover closed it.
 */

import { expect } from 'vitest'
import { createTollbooth, manualClock, type Storage } from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'

/** The account row the previous version left (ms for times), and January's usage. */
export const OLD_ACCOUNT = {
  id: 'acct_1',
  balance: 20,
  carryover: 30,
  periodStart: Date.UTC(2026, 1, 1),
  /** January's one hourly total of usage category `tts`. */
  janHour: Date.UTC(2026, 0, 10),
  janUnits: 70,
} as const

export async function expectUpgradedAccount(storage: Storage): Promise<void> {
  const clock = manualClock(Date.UTC(2026, 1, 10))
  const tb = createTollbooth({
    secret: SECRET,
    clock,
    storage,
    plans: { roll: { monthlyCredits: 100, carryoverMonths: 1 } },
    defaultTier: 'roll',
  })
  try {
    const january = { used: 70, limit: 100, remaining: 30, carryover: null, balance: null }
    expect((await tb.usage.get('acct_1', { month: '2026-01' })).credits).toEqual(january)
    const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
    const d = await tb.authenticate(req(key), tb.route({ cost: 50 }))
    expect(d.allowed).toBe(true)
    await tb.settle(d, { status: 200 })
    clock.set(Date.UTC(2026, 2, 10))
    expect((await tb.usage.get('acct_1', { month: '2026-02' })).credits).toEqual({
      used: 50,
      limit: 150,
      remaining: 100,
      carryover: 30,
      balance: 20,
    })
    expect((await tb.usage.get('acct_1', { month: '2026-01' })).credits).toEqual(january)
    expect((await tb.usage.get('acct_1')).credits).toEqual({
      used: 0,
      limit: 200,
      remaining: 200,
      carryover: 80,
      balance: 20,
    })
    expect((await storage.accounts.get('acct_1'))?.closedPeriods).toEqual([
      { start: Date.UTC(2026, 1, 1), monthlyCredits: 100, carryover: 30, balance: 20, used: 50 },
    ])
  } finally {
    await tb.close()
  }
}
