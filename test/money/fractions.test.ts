/**
 * @module test/money/fractions
 *
 * Fractional charges on every store alike: thirty charges of 0.1, each recorded in a usage
 * batch of its own, give the same figure in the credit counter (`credits.used`), the usage
 * breakdown and `tb.usage.summarize`, on memory, SQLite, Redis and PostgreSQL. Redis added
 * its usage totals with HINCRBYFLOAT (long double, printed to 17 digits), so its breakdown
 * read 3.0000000000000004 where the credits used were 3.0000000000000013.
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
        let sum = 0
        for (let i = 0; i < 30; i++) {
          const d = await tb.authenticate(req(key), tb.route({ cost: 0.1, category: 'tts' }))
          expect(d.allowed).toBe(true)
          await tb.settle(d, { status: 200 })
          sum += 0.1
          await tb.flush() // a usage batch each
          clock.advance(1000)
        }
        const used = (await tb.accounts.get('acct_1')).credits.used
        expect(used).toBe(sum) // 3.0000000000000013, as JavaScript adds them
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
  })
