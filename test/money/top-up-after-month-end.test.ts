/**
 * @module test/money/top-up-after-month-end
 *
 * A top-up belongs to the moment it is paid, on every store alike: January's use beyond the
 * plan comes out of the balance as it stood at January's end, never from money added after,
 * whether the top-up comes in the hour after the month's end (while January's close is still
 * worked out anew at each read) or is the first thing an idle account does days later.
 */

import { describe, expect, test } from 'vitest'
import { fourStores } from '../support/stores.js'
import { FEB, HOUR, january, MINUTE } from './january.js'

const stores = await fourStores('money-top-up')

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`a top-up after the month's end on ${name}`, () => {
    test('the first thing an idle account does in February: January takes only its own 10', async () => {
      const { tb, clock } = await january(await make!(), 10)
      try {
        clock.set(FEB + 3 * 86_400_000)
        const after = await tb.accounts.addCredits('acct_1', 100)
        expect(after.balance).toBe(100)
        expect(after.credits).toMatchObject({ used: 0, limit: 200 })
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        expect(jan.credits).toMatchObject({ used: 150, balance: 10 })
        expect(await tb.storage.accounts.get('acct_1')).toMatchObject({
          balance: 100,
          periodStart: FEB,
        })
      } finally {
        await tb.close()
      }
    })

    test('in the hour after the month ends: the top-up stays whole, before and after the close', async () => {
      const { tb, clock } = await january(await make!(), 10)
      try {
        clock.set(FEB + 10 * MINUTE)
        expect((await tb.accounts.addCredits('acct_1', 100)).balance).toBe(100)
        clock.set(FEB + 20 * MINUTE)
        expect((await tb.accounts.addCredits('acct_1', 5)).balance).toBe(105)
        expect((await tb.accounts.get('acct_1')).credits.limit).toBe(205)
        expect((await tb.usage.get('acct_1', { month: '2026-01' })).credits).toMatchObject({
          used: 150,
          balance: 10,
        })
        // January closed for good.
        clock.set(FEB + 2 * HOUR)
        expect(await tb.accounts.get('acct_1')).toMatchObject({
          balance: 105,
          credits: { used: 0, limit: 205 },
        })
        expect(await tb.storage.accounts.get('acct_1')).toMatchObject({
          balance: 105,
          periodStart: FEB,
        })
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        expect(jan.credits).toMatchObject({ used: 150, balance: 10 })
      } finally {
        await tb.close()
      }
    })

    test('top-ups at once in the hour after the end: the balance at the end is the one recorded', async () => {
      const { tb, clock } = await january(await make!(), 10)
      try {
        clock.set(FEB + 10 * MINUTE)
        await Promise.all(Array.from({ length: 5 }, () => tb.accounts.addCredits('acct_1', 20)))
        expect((await tb.accounts.get('acct_1')).balance).toBe(100)
        clock.set(FEB + 2 * HOUR)
        expect((await tb.accounts.get('acct_1')).balance).toBe(100)
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        expect(jan.credits).toMatchObject({ used: 150, balance: 10 })
      } finally {
        await tb.close()
      }
    })

    test('a top-up paid before the end still pays the overage', async () => {
      const { tb, clock } = await january(await make!(), 10)
      try {
        clock.set(FEB - MINUTE)
        await tb.accounts.addCredits('acct_1', 100)
        clock.set(FEB + 10 * MINUTE)
        expect((await tb.accounts.addCredits('acct_1', 1)).balance).toBe(61)
        clock.set(FEB + 2 * HOUR)
        expect((await tb.accounts.get('acct_1')).balance).toBe(61)
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        expect(jan.credits).toMatchObject({ used: 150, balance: 110 })
      } finally {
        await tb.close()
      }
    })
  })
