/**
 * @module test/money/rollover
 *
 * The turn of a month while credits of the ending one are still moving, on every store alike:
 * a request admitted on the last millisecond of January settles in February (charged less than
 * the estimate it held), and an instance whose clock is a second behind admits into January
 * after another has read the account in February. The balance the rollover leaves, and the
 * carryover, follow what January was charged, not what it held at the turn.
 */

import { describe, expect, test } from 'vitest'
import { type Clock, createTollbooth, manualClock, type Storage } from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'
import { fourStores } from '../support/stores.js'

const LAST_MS = Date.UTC(2026, 0, 31, 23, 59, 59, 999)
const FEB = Date.UTC(2026, 1, 1)
const HOUR = 3_600_000

const stores = await fourStores('money-rollover')

function instance(storage: Storage, clock: Clock, plans: Record<string, unknown>, tier: string) {
  return createTollbooth({
    secret: SECRET,
    clock,
    storage,
    plans: plans as never,
    defaultTier: tier,
  })
}

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`rollover on ${name}`, () => {
    test('a January request settled in February takes its charge from the balance, not its estimate', async () => {
      const clock = manualClock(LAST_MS - 1000)
      const tb = instance(await make!(), clock, { pre: { monthlyCredits: 0 } }, 'pre')
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
        await tb.accounts.addCredits('acct_1', 100)
        clock.set(LAST_MS)
        const d = await tb.authenticate(req(key), tb.route({ cost: 100 }))
        expect(d.allowed).toBe(true)
        // February: the account is read while January's hold of 100 is open.
        clock.set(FEB + 500)
        const open = await tb.accounts.get('acct_1')
        expect(open.credits.limit).toBe(0) // the hold counts until it settles: nothing over-admitted
        expect(
          (await tb.authenticate(req(key), tb.route({ cost: 1 }))).allowed,
          'a February request while the hold is open',
        ).toBe(false)
        clock.set(FEB + 1000)
        await tb.settle(d, { status: 200, cost: 10 })
        await tb.flush()
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        expect(jan.credits.used).toBe(10)
        expect((await tb.accounts.get('acct_1')).balance).toBe(90)
        // Once January is closed for good, and after.
        clock.set(FEB + 2 * HOUR)
        const feb = await tb.accounts.get('acct_1')
        expect(feb).toMatchObject({ balance: 90, credits: { used: 0, limit: 90, remaining: 90 } })
        expect(await tb.storage.accounts.get('acct_1')).toMatchObject({
          balance: 90,
          periodStart: FEB,
        })
        expect((await tb.authenticate(req(key), tb.route({ cost: 90 }))).allowed).toBe(true)
      } finally {
        await tb.close()
      }
    })

    test('the carryover counts what January was charged, not the hold open at the turn', async () => {
      const clock = manualClock(LAST_MS)
      const plans = { roll: { monthlyCredits: 100, carryoverMonths: 1 } }
      const tb = instance(await make!(), clock, plans, 'roll')
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
        const d = await tb.authenticate(req(key), tb.route({ cost: 100 }))
        expect(d.allowed).toBe(true)
        clock.set(FEB + 500)
        expect((await tb.accounts.get('acct_1')).carryover).toBe(0)
        clock.set(FEB + 1000)
        await tb.settle(d, { status: 200, cost: 10 })
        await tb.flush()
        clock.set(FEB + 2 * HOUR)
        const feb = await tb.accounts.get('acct_1')
        expect(feb).toMatchObject({ carryover: 90, credits: { used: 0, limit: 190 } })
      } finally {
        await tb.close()
      }
    })

    test('an instance a second behind admits into January after another read February: the balance is spent once', async () => {
      const clock = manualClock(LAST_MS - 5000)
      const behind: Clock = { now: () => clock.now() - 1000 }
      const storage = await make!()
      const plans = { pre: { monthlyCredits: 0 } }
      const a = instance(storage, clock, plans, 'pre')
      const b = instance(storage, behind, plans, 'pre')
      try {
        const { key } = await a.keys.create({ accountId: 'acct_1', name: 'k' })
        await a.accounts.addCredits('acct_1', 100)
        const route = (tb: typeof a) => tb.route({ cost: 10 })
        const spend = async (tb: typeof a, n: number) => {
          let served = 0
          for (let i = 0; i < n; i++) {
            const d = await tb.authenticate(req(key), route(tb))
            if (!d.allowed) continue
            served++
            await tb.settle(d, { status: 200 })
          }
          return served
        }
        expect(await spend(b, 5)).toBe(5) // 50 of the 100, in January
        // True time 00:00:00.200 on February 1st: A reads the account (February's figures);
        // B's clock still says January, its view of January cached, and it goes on.
        clock.set(FEB + 200)
        expect((await a.accounts.get('acct_1')).credits.limit).toBe(50)
        clock.set(FEB + 500)
        expect(await spend(b, 10)).toBe(5) // the other 50, in January
        await a.flush()
        await b.flush()
        // Past A's cache: February has nothing left.
        clock.set(FEB + 60_000)
        expect(await spend(a, 10)).toBe(0)
        clock.set(FEB + 2 * HOUR)
        expect((await a.accounts.get('acct_1')).balance).toBe(0)
        expect(await spend(a, 10)).toBe(0)
        await a.flush()
        const jan = await a.usage.get('acct_1', { month: '2026-01' })
        const feb = await a.usage.get('acct_1', { month: '2026-02' })
        expect(jan.credits.used + feb.credits.used).toBe(100)
      } finally {
        await a.close()
        await b.close()
      }
    })
  })
