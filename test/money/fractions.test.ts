/**
 * @module test/money/fractions
 *
 * Fractional charges on every store alike: thirty charges of 0.1, each recorded in a usage
 * batch of its own, give the same figure in the credit counter (`credits.used`), the usage
 * breakdown and `tb.usage.summarize`, on memory, SQLite, Redis and PostgreSQL. Redis added
 * its usage totals with HINCRBYFLOAT (long double, printed to 17 digits), so its breakdown
 * read 3.0000000000000004 where the credits used were 3.0000000000000013; both are 3 now,
 * every sum of amounts being rounded to the decimal it stands for (`limits/amount`).
 *
 * And a balance of 0.3 serves exactly three requests of 0.1 and ends at 0: in binary doubles
 * 0.1 + 0.1 + 0.1 is 0.30000000000000004, above 0.3, and the third was refused (402).
 */

import { describe, expect, test } from 'vitest'
import { createTollbooth, manualClock } from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'
import { fourStores } from '../support/stores.js'

const stores = await fourStores('money-fractions')
const T = Date.UTC(2026, 0, 15, 12)

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`fractional charges on ${name}`, () => {
    test('thirty charges of 0.1: the counter, the breakdown and the summary agree', async () => {
      const clock = manualClock(T)
      const tb = createTollbooth({ secret: SECRET, clock, storage: await make!() })
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'k' })
        for (let i = 0; i < 30; i++) {
          const d = await tb.authenticate(req(key), tb.route({ cost: 0.1, category: 'tts' }))
          expect(d.allowed).toBe(true)
          await tb.settle(d, { status: 200 })
          await tb.flush() // a usage batch each
          clock.advance(1000)
        }
        const used = (await tb.accounts.get('acct_1')).credits.used
        expect(used).toBe(3) // 3.0000000000000013 in plain doubles
        const usage = await tb.usage.get('acct_1')
        expect(usage.credits.used).toBe(used)
        expect(usage.breakdown).toEqual({ tts: used })
        const s = await tb.usage.summarize('acct_1', T - 3_600_000, T + 3_600_000)
        expect(s).toMatchObject({
          requests: 30,
          units: used,
          byCategory: { tts: { requests: 30, units: used } },
        })
      } finally {
        await tb.close()
      }
    })

    test("tb.usage.get's remaining is the decimal, this month and a closed one (10 - 9.7 = 0.3)", async () => {
      const clock = manualClock(T)
      const tb = createTollbooth({
        secret: SECRET,
        clock,
        storage: await make!(),
        plans: { ten: { monthlyCredits: 10 } },
        defaultTier: 'ten',
      })
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_3', name: 'k' })
        const d = await tb.authenticate(req(key), tb.route({ cost: 9.7, category: 'tts' }))
        expect(d.allowed).toBe(true)
        await tb.settle(d, { status: 200 })
        await tb.flush()
        // 10 - 9.7 is 0.3000000000000007 in plain doubles.
        const now = (await tb.usage.get('acct_3')).credits
        expect(now).toMatchObject({ used: 9.7, limit: 10, remaining: 0.3 })
        clock.set(Date.UTC(2026, 1, 10))
        const january = (await tb.usage.get('acct_3', { month: '2026-01' })).credits
        expect(january).toMatchObject({ used: 9.7, limit: 10, remaining: 0.3 })
      } finally {
        await tb.close()
      }
    })

    test('a balance of 0.3 serves exactly three requests of 0.1 and ends at 0', async () => {
      const clock = manualClock(T)
      const tb = createTollbooth({
        secret: SECRET,
        clock,
        storage: await make!(),
        plans: { payg: { monthlyCredits: 0 } },
        defaultTier: 'payg',
      })
      try {
        const { key, record } = await tb.keys.create({ accountId: 'acct_2', name: 'k' })
        await tb.accounts.addCredits('acct_2', 0.1)
        expect((await tb.accounts.addCredits('acct_2', 0.2)).balance).toBe(0.3)
        const route = tb.route({ cost: 0.1, category: 'tts' })
        const remaining: string[] = []
        for (let i = 0; i < 3; i++) {
          const d = await tb.authenticate(req(key), route)
          expect(d.allowed, `request ${i + 1}`).toBe(true)
          await tb.settle(d, { status: 200 })
          if (d.allowed) remaining.push(d.responseHeaders()['X-Usage-Remaining']!)
        }
        expect(remaining).toEqual(['0.2', '0.1', '0'])
        const refused = await tb.authenticate(req(key), route)
        expect(refused).toMatchObject({ allowed: false, status: 402 })
        expect(refused.headers).toMatchObject({
          'X-Usage-Current': '0.3',
          'X-Usage-Remaining': '0',
        })
        const a = await tb.accounts.get('acct_2')
        expect(a.credits).toEqual({ used: 0.3, limit: 0.3, remaining: 0 })
        await tb.flush()
        const s = await tb.usage.summarize('acct_2', T - 3_600_000, T + 3_600_000)
        expect(s).toMatchObject({ requests: 3, units: 0.3 })
        // A price per token with float noise (1234 × 0.0008 = 0.9872000000000001) is charged
        // and recorded as the decimal.
        await tb.accounts.addCredits('acct_2', 1)
        const d = await tb.authenticate(req(key), tb.route({ cost: () => 1234 * 0.0008 }))
        expect(d.allowed).toBe(true)
        await tb.settle(d, { status: 200 })
        await tb.flush()
        expect((await tb.accounts.get('acct_2')).credits).toEqual({
          used: 1.2872,
          limit: 1.3,
          remaining: 0.0128,
        })
        const logs = await tb.usage.logs(record.id)
        expect(logs.data[0]!.units).toBe(0.9872)
      } finally {
        await tb.close()
      }
    })
  })
