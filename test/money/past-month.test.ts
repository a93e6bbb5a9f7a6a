/**
 * @module test/money/past-month
 *
 * A past month's usage read (`tb.usage.get(id, { month })`, `GET /usage?month=`) on every
 * store alike: its limit is the plan the month was closed with (the tier in force at its
 * start, as the rollover takes it), not the plan in force when it is read.
 */

import { describe, expect, test } from 'vitest'
import { createTollbooth, manualClock } from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'
import { fourStores } from '../support/stores.js'

const JAN = Date.UTC(2026, 0, 10)
const FEB_10 = Date.UTC(2026, 1, 10)
const FEB_20 = Date.UTC(2026, 1, 20)

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
        expect(jan.credits).toEqual({ used: 500, limit: 1000, remaining: 500 })
        const view = await tb.accounts.get('acct_1', jan.period)
        expect(view.credits).toEqual({ used: 500, limit: 1000, remaining: 500 })
        // February's own figures are free's, with the balance.
        expect((await tb.usage.get('acct_1')).credits.limit).toBe(150)
      } finally {
        await tb.close()
      }
    })
  })
