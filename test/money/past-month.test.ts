/**
 * @module test/money/past-month
 *
 * A past month's usage read (`tb.usage.get(id, { month })`, `GET /usage?month=`) on every
 * store alike: its limit is the plan the month was closed with (the tier in force at its
 * start, as the rollover takes it), not the plan in force when it is read, plus the carryover
 * and the prepaid balance the month had, as the rollover closed it.
 */

import { describe, expect, test } from 'vitest'
import { createTollbooth, manualClock } from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'
import { fourStores } from '../support/stores.js'

const JAN = Date.UTC(2026, 0, 10)
const FEB_10 = Date.UTC(2026, 1, 10)
const FEB_20 = Date.UTC(2026, 1, 20)
const MAR = Date.UTC(2026, 2, 1)
const MAR_10 = Date.UTC(2026, 2, 10)
const HOUR = 3_600_000

const stores = await fourStores('money-past-month')

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`a past month's usage on ${name}`, () => {
    test('counts against the plan of its tier then, after the tier expired', async () => {
      const clock = manualClock(JAN)
      const tb = createTollbooth({
        secret: SECRET,
        clock,
        storage: await make!(),
        plans: { free: { monthlyCredits: 100 }, pro: { monthlyCredits: 1000 } },
        defaultTier: 'free',
      })
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
        await tb.accounts.addCredits('acct_1', 50)
        await tb.accounts.setTier('acct_1', 'pro', { expiresAt: FEB_10 })
        for (let i = 0; i < 5; i++) {
          const d = await tb.authenticate(req(key), tb.route({ cost: 100 }))
          expect(d.allowed).toBe(true)
          await tb.settle(d, { status: 200 })
        }
        clock.set(FEB_20)
        // January was closed against pro's 1,000: nothing came out of the balance.
        expect((await tb.accounts.get('acct_1')).balance).toBe(50)
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        // Its limit: pro's 1,000 and the balance of 50 it had.
        const closed = { used: 500, limit: 1050, remaining: 550, carryover: 0, balance: 50 }
        expect(jan.credits).toEqual(closed)
        const view = await tb.accounts.get('acct_1', jan.period)
        expect(view.credits).toEqual({ used: 500, limit: 1050, remaining: 550 })
        // February's own figures are free's, with the balance.
        expect((await tb.usage.get('acct_1')).credits.limit).toBe(150)
      } finally {
        await tb.close()
      }
    })

    test('shows the carryover and balance it had, as it was closed, and after the next month closed', async () => {
      const clock = manualClock(JAN)
      const tb = createTollbooth({
        secret: SECRET,
        clock,
        storage: await make!(),
        plans: { roll: { monthlyCredits: 100, carryoverMonths: 1 } },
        defaultTier: 'roll',
      })
      const spend = async (key: string, cost: number) => {
        const d = await tb.authenticate(req(key), tb.route({ cost }))
        expect(d.allowed).toBe(true)
        await tb.settle(d, { status: 200 })
      }
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
        await tb.accounts.addCredits('acct_1', 50)
        await spend(key, 40) // January: 60 of its 100 unused, carried into February
        clock.set(FEB_10)
        expect((await tb.usage.get('acct_1')).credits).toEqual({
          used: 0,
          limit: 210,
          remaining: 210,
          carryover: 60,
          balance: 50,
        })
        await spend(key, 200) // February: 100 + 60 carried over, then 40 of the balance
        const february = { used: 200, limit: 210, remaining: 10, carryover: 60, balance: 50 }
        const january = { used: 40, limit: 150, remaining: 110, carryover: 0, balance: 50 }
        // In March's first hour February is closed only provisionally, then for good.
        for (const at of [MAR + HOUR / 2, MAR + 2 * HOUR, MAR_10]) {
          clock.set(at)
          const feb = await tb.usage.get('acct_1', { month: '2026-02' })
          expect(feb.credits, new Date(at).toISOString()).toEqual(february)
          // The account's view of February: the same credits; its balance and carryover are now's.
          expect(await tb.accounts.get('acct_1', feb.period)).toMatchObject({
            credits: { used: 200, limit: 210, remaining: 10 },
            balance: 10,
            carryover: 0,
          })
          const jan = await tb.usage.get('acct_1', { month: '2026-01' })
          expect(jan.credits, new Date(at).toISOString()).toEqual(january)
          expect((await tb.usage.get('acct_1')).credits).toEqual({
            used: 0,
            limit: 110,
            remaining: 110,
            carryover: 0,
            balance: 10,
          })
        }
        expect(await tb.storage.accounts.get('acct_1')).toMatchObject({
          periodStart: MAR,
          balance: 10,
        })
      } finally {
        await tb.close()
      }
    })
  })
