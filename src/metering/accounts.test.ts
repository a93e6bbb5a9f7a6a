/**
 * @module metering/accounts.test
 *
 * Plans, tiers, prepaid credits, 402, overage, carryover across a period boundary, and the
 * per-key budget, driven through `authenticate()` + `settle()` with a manual clock.
 */

import { describe, expect, it } from 'vitest'
import { admitted, denied, events, req, setup } from '../../test/metering/helpers.js'
import { ConfigError, createTollbooth, InvalidRequestError, memoryStorage } from '../index.js'
import { resolveOptions } from '../options.js'
import { AccountService, CLOSE_AFTER_MS } from './accounts.js'

const PLANS = {
  free: { display: 'Free', monthlyCredits: 3 },
  pro: {
    display: 'Pro ($99/mo)',
    monthlyCredits: 10,
    overageRate: 0.0008,
    allowOverage: true,
    carryoverMonths: 1,
  },
  roll: { monthlyCredits: 10, carryoverMonths: 2 },
  burst: { monthlyCredits: null, rateLimits: [{ limit: 2, windowMs: 60_000 }] },
}
const opts = { plans: PLANS, defaultTier: 'free' }
const JAN = Date.UTC(2026, 0, 20, 12)
const FEB = Date.UTC(2026, 1, 1, 0, 0, 0)
const MAR = Date.UTC(2026, 2, 1, 0, 0, 0)

/** Runs `n` billed requests of `cost` each; returns how many were served. */
async function spend(s: Awaited<ReturnType<typeof setup>>, n: number, cost = 1, key = s.key) {
  let served = 0
  for (let i = 0; i < n; i++) {
    const d = await s.tb.authenticate(req(key), s.tb.route({ cost, category: 'tts' }))
    if (!d.allowed) continue
    served++
    await s.tb.settle(d, { status: 200 })
  }
  return served
}

describe('plans and tiers', () => {
  it('a new account is on the default tier, with its credit figures', async () => {
    const { tb } = await setup(opts)
    const a = await tb.accounts.get('acct_1')
    expect(a).toMatchObject({
      id: 'acct_1',
      tier: 'free',
      tierDisplay: 'Free',
      balance: 0,
      carryover: 0,
      credits: { used: 0, limit: 3, remaining: 3 },
      period: { id: '2026-01', start: Date.UTC(2026, 0, 1), end: FEB },
    })
    expect(a.plan).toMatchObject({ monthlyCredits: 3, allowOverage: false, carryoverMonths: 0 })
  })

  it('setTier changes the limit at once; an unknown tier is a 400 that changes nothing', async () => {
    const s = await setup(opts)
    expect(await spend(s, 2)).toBe(2)
    const pro = await s.tb.accounts.setTier('acct_1', 'pro')
    expect(pro).toMatchObject({ tier: 'pro', tierDisplay: 'Pro ($99/mo)' })
    expect(pro.credits).toEqual({ used: 2, limit: 10, remaining: 8 })
    const err = await s.tb.accounts.setTier('acct_1', 'platinum').catch((e) => e)
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect(err.status).toBe(400)
    expect(err.message).toMatch(/tier/)
    expect((await s.tb.accounts.get('acct_1')).tier).toBe('pro')
  })

  it('a tier past its expiry falls back to the default tier', async () => {
    const s = await setup(opts, JAN)
    await s.tb.accounts.setTier('acct_1', 'pro', { expiresAt: JAN + 10_000 })
    expect((await s.tb.accounts.get('acct_1')).tier).toBe('pro')
    s.clock.advance(10_000) // within the cache TTL (30 s): the cached account must not outlive the tier
    expect((await s.tb.accounts.get('acct_1')).tier).toBe('free')
  })

  it('without plans, metered routes are unlimited', async () => {
    const s = await setup({})
    expect(await spend(s, 20, 5)).toBe(20)
    expect((await s.tb.accounts.get('acct_1')).credits).toEqual({
      used: 100,
      limit: Infinity,
      remaining: Infinity,
    })
  })

  it('plan rate limits apply across all keys of the account', async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'burst' })
    const other = (await s.tb.keys.create({ accountId: 'acct_1', name: 'o' })).key
    expect(await spend(s, 1)).toBe(1)
    expect(await spend(s, 1, 1, other)).toBe(1)
    const d = denied(await s.tb.authenticate(req(other), s.tb.route({ cost: 1 })))
    expect(d.status).toBe(429)
    expect(d.message).toBe('exceeded the per-minute rate limit on your subscription')
  })

  it('refuses bad plan options at construction, naming the option', () => {
    const bad = [
      { plans: { x: { monthlyCredits: -1 } } },
      { plans: { x: { carryoverMonths: 1.5 } } },
      { plans: { x: { allowOverage: 'yes' } } },
      { plans: { x: { tokens: 1 } } },
      { plans: PLANS, defaultTier: 'gold' },
    ]
    for (const o of bad) {
      expect(() => createTollbooth({ secret: 's'.repeat(40), ...(o as object) })).toThrow(
        ConfigError,
      )
    }
    expect(() =>
      createTollbooth({ secret: 's'.repeat(40), plans: PLANS, defaultTier: 'gold' }),
    ).toThrow(/defaultTier/)
    expect(() =>
      createTollbooth({ secret: 's'.repeat(40), plans: { x: { monthlyCredits: -1 } } }),
    ).toThrow(/plans\.x\.monthlyCredits/)
  })
})

describe('credits: balance, 402 and overage', () => {
  it('out of credits is a 402 with a clear message, and uses up nothing', async () => {
    const s = await setup(opts)
    expect(await spend(s, 5)).toBe(3)
    const d = denied(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 1 })))
    expect(d.status).toBe(402)
    expect(d.code).toBe('insufficient_credits')
    expect(JSON.parse(d.body)).toEqual({
      error: 'Insufficient credits',
      code: 'insufficient_credits',
    })
    expect((await s.tb.accounts.get('acct_1')).credits).toEqual({ used: 3, limit: 3, remaining: 0 })
  })

  it('a request costing more than what remains is refused, a cheaper one still served', async () => {
    const s = await setup(opts)
    expect(await spend(s, 1, 2)).toBe(1)
    expect(denied(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 2 }))).status).toBe(402)
    expect(await spend(s, 1, 1)).toBe(1)
  })

  it('addCredits tops up the balance shared by every key of the account', async () => {
    const s = await setup(opts)
    const other = (await s.tb.keys.create({ accountId: 'acct_1', name: 'o' })).key
    expect(await spend(s, 3)).toBe(3)
    const a = await s.tb.accounts.addCredits('acct_1', 4)
    expect(a.balance).toBe(4)
    expect(a.credits).toEqual({ used: 3, limit: 7, remaining: 4 })
    expect(await spend(s, 2, 1, other)).toBe(2)
    expect(await spend(s, 5)).toBe(2)
  })

  it('addCredits refuses a bad amount or account id with a 400 naming the field', async () => {
    const { tb } = await setup(opts)
    // 1e-10 is below the last place an amount keeps (9 decimals): it would add nothing.
    for (const amount of [0, -5, 1e-10, Number.NaN, Infinity, '10' as unknown as number]) {
      const err = await tb.accounts.addCredits('acct_1', amount).catch((e) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.message).toMatch(/amount/)
    }
    const err = await tb.accounts.addCredits('{bad}', 5).catch((e) => e)
    expect(err.message).toMatch(/accountId/)
    expect((await tb.accounts.get('acct_1')).balance).toBe(0)
    // The smallest top-up, and one with float noise, added as the decimals they stand for.
    expect((await tb.accounts.addCredits('acct_1', 1e-9)).balance).toBe(1e-9)
    expect((await tb.accounts.addCredits('acct_1', 0.1 + 0.2 - 1e-9)).balance).toBe(0.3)
  })

  it('a plan that allows overage serves past its credits and records the overage', async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'pro' })
    expect(await spend(s, 9)).toBe(9)
    // 9 used of 10: a request of 3 crosses the line by 2, the next is all overage.
    for (const cost of [3, 4]) {
      const d = admitted(await s.tb.authenticate(req(s.key), s.tb.route({ cost })))
      await s.tb.settle(d, { status: 200 })
    }
    const [last, crossing] = await events(s.tb, s.keyId)
    expect(crossing).toMatchObject({ units: 3, overage: 2 })
    expect(last).toMatchObject({ units: 4, overage: 4 })
    const all = await events(s.tb, s.keyId)
    expect(all.slice(2).every((e) => e.overage === 0)).toBe(true)
    expect((await s.tb.accounts.get('acct_1')).credits).toEqual({
      used: 16,
      limit: 10,
      remaining: 0,
    })
  })
})

describe('carryover across a period boundary', () => {
  it('moves unused credits into the next month, capped by carryoverMonths', async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'roll' }, JAN)
    expect(await spend(s, 4)).toBe(4)
    s.clock.set(FEB + 1)
    const feb = await s.tb.accounts.get('acct_1')
    expect(feb.period.id).toBe('2026-02')
    expect(feb.carryover).toBe(6)
    expect(feb.credits).toEqual({ used: 0, limit: 16, remaining: 16 })
    expect(await spend(s, 20)).toBe(16)
    // February used everything: nothing carries into March. (January's counter is gone by
    // then: its use is read from the usage recorded, so written first.)
    await s.tb.flush()
    s.clock.set(MAR + 1)
    expect((await s.tb.accounts.get('acct_1')).carryover).toBe(0)
    expect(await spend(s, 20)).toBe(10)
  })

  it('caps the carryover at monthlyCredits x carryoverMonths', async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'roll' }, JAN)
    s.clock.set(FEB + 1)
    expect((await s.tb.accounts.get('acct_1')).carryover).toBe(10)
    s.clock.set(MAR + 1)
    // 20 unused in February (10 + 10 carried), but only 2 months' worth (20) may carry.
    expect((await s.tb.accounts.get('acct_1')).carryover).toBe(20)
    s.clock.set(Date.UTC(2026, 3, 1, 0, 0, 1))
    expect((await s.tb.accounts.get('acct_1')).carryover).toBe(20)
  })

  it('a plan without carryover starts each month afresh', async () => {
    const s = await setup(opts, JAN)
    expect(await spend(s, 1)).toBe(1)
    s.clock.set(FEB)
    const feb = await s.tb.accounts.get('acct_1')
    expect(feb.carryover).toBe(0)
    expect(feb.credits).toEqual({ used: 0, limit: 3, remaining: 3 })
  })

  it('credits used beyond the plan come out of the prepaid balance at rollover', async () => {
    const s = await setup(opts, JAN)
    await s.tb.accounts.addCredits('acct_1', 5)
    expect(await spend(s, 10)).toBe(8) // 3 of the plan + 5 prepaid
    s.clock.set(FEB + 1)
    const feb = await s.tb.accounts.get('acct_1')
    expect(feb.balance).toBe(0)
    expect(feb.credits).toEqual({ used: 0, limit: 3, remaining: 3 })
  })

  it('an unused prepaid balance survives the rollover', async () => {
    const s = await setup(opts, JAN)
    await s.tb.accounts.addCredits('acct_1', 5)
    expect(await spend(s, 4)).toBe(4) // 3 of the plan + 1 prepaid
    s.clock.set(FEB + 1)
    const feb = await s.tb.accounts.get('acct_1')
    expect(feb.balance).toBe(4)
    expect(feb.credits.limit).toBe(7)
  })

  it('rolls over once when two instances share the storage', async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'roll' }, JAN)
    const twin = createTollbooth({
      secret: 'metering-suite-secret-0123456789abcdefgh',
      clock: s.clock,
      storage: s.tb.storage,
      plans: PLANS,
      defaultTier: 'roll',
    })
    expect(await spend(s, 4)).toBe(4)
    s.clock.set(FEB + 1)
    const [a, b] = await Promise.all([s.tb.accounts.get('acct_1'), twin.accounts.get('acct_1')])
    expect(a.carryover).toBe(6)
    expect(b.carryover).toBe(6)
    // Written once January can no longer change, an hour after its end.
    s.clock.set(FEB + CLOSE_AFTER_MS)
    const [c, d] = await Promise.all([s.tb.accounts.get('acct_1'), twin.accounts.get('acct_1')])
    expect(c.carryover).toBe(6)
    expect(d.carryover).toBe(6)
    expect(await s.tb.storage.accounts.get('acct_1')).toMatchObject({
      carryover: 6,
      periodStart: FEB,
    })
  })

  it('a carryover capped at monthlyCredits x carryoverMonths is a decimal (0.7 x 3 = 2.1)', async () => {
    // 0.7 * 3 is 2.0999999999999996 in doubles: the cap is on the amount grid as every sum is.
    const plans = { dime: { monthlyCredits: 0.7, carryoverMonths: 3 } }
    const s = await setup({ plans, defaultTier: 'dime' }, JAN)
    // Four idle months: 0.7, 1.4, 2.1 carried, then the cap (2.1) holds.
    s.clock.set(Date.UTC(2026, 4, 10))
    const a = await s.tb.accounts.get('acct_1')
    expect(a.carryover).toBe(2.1)
    expect(a.credits.limit).toBe(2.8)
    const may = await s.tb.usage.get('acct_1')
    expect(may.credits).toMatchObject({ limit: 2.8, carryover: 2.1 })
    const april = await s.tb.usage.get('acct_1', { month: '2026-04' })
    expect(april.credits).toMatchObject({ limit: 2.8, carryover: 2.1 })
    s.clock.set(Date.UTC(2026, 4, 10) + CLOSE_AFTER_MS)
    await s.tb.accounts.get('acct_1')
    expect((await s.tb.storage.accounts.get('acct_1'))?.carryover).toBe(2.1)
  })

  it('a balance stored before amounts were rounded reads as its decimal in tb.usage.get too', async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'free' }, JAN)
    await s.tb.accounts.addCredits('acct_1', 1)
    // As an earlier version kept it: 0.1 + 0.2 in plain doubles.
    await s.tb.storage.accounts.update('acct_1', { balance: 0.1 + 0.2 })
    expect((await s.tb.accounts.get('acct_1')).balance).toBe(0.3)
    expect((await s.tb.usage.get('acct_1')).credits).toMatchObject({ balance: 0.3, limit: 3.3 })
  })

  it("keeps each closed month's figures, idle months included, a year's worth", async () => {
    const s = await setup({ plans: PLANS, defaultTier: 'roll' }, JAN)
    await s.tb.accounts.addCredits('acct_1', 5)
    expect(await spend(s, 4)).toBe(4)
    await s.tb.flush()
    // Read next in May: January, then three idle months, closed at once.
    s.clock.set(Date.UTC(2026, 4, 10))
    const credits = async (month: string) => (await s.tb.usage.get('acct_1', { month })).credits
    expect(await credits('2026-01')).toEqual({
      used: 4,
      limit: 15,
      remaining: 11,
      carryover: 0,
      balance: 5,
    })
    // 6 carried into February (two months' worth at most), 16 into March, capped at 20.
    expect(await credits('2026-02')).toMatchObject({ used: 0, limit: 21, carryover: 6 })
    expect(await credits('2026-03')).toMatchObject({ used: 0, limit: 31, carryover: 16 })
    expect(await credits('2026-04')).toMatchObject({ used: 0, limit: 35, carryover: 20 })
    // Thirteen months on, the last twelve closed are kept; January's are not any more.
    s.clock.set(Date.UTC(2027, 1, 10))
    await s.tb.accounts.get('acct_1')
    const kept = (await s.tb.storage.accounts.get('acct_1'))?.closedPeriods ?? []
    expect(kept.map((c) => new Date(c.start).toISOString().slice(0, 7))).toEqual(
      Array.from({ length: 12 }, (_, i) =>
        new Date(Date.UTC(2026, 1 + i, 1)).toISOString().slice(0, 7),
      ),
    )
    expect(await credits('2026-01')).toEqual({
      used: 4,
      limit: 10,
      remaining: 6,
      carryover: null,
      balance: null,
    })
    expect(await credits('2026-03')).toMatchObject({ limit: 31, carryover: 16, balance: 5 })
  })
})

describe('per-key budget', () => {
  it('a key with a budget is refused past it while other keys of the account go on', async () => {
    const s = await setup({}, JAN, { limits: { budget: 3 } })
    const other = (await s.tb.keys.create({ accountId: 'acct_1', name: 'o' })).key
    expect(await spend(s, 5)).toBe(3)
    const d = denied(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 1 })))
    expect(d).toMatchObject({ status: 402, code: 'insufficient_credits' })
    expect(d.message).toMatch(/budget/)
    expect(await spend(s, 5, 1, other)).toBe(5)
  })

  it('a refunded response does not use the budget', async () => {
    const s = await setup({}, JAN, { limits: { budget: 2 } })
    const route = s.tb.route({ cost: 2 })
    for (let i = 0; i < 3; i++)
      await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 500 })
    expect(await spend(s, 1, 2)).toBe(1)
    expect(await spend(s, 1, 1)).toBe(0)
  })

  it('the budget is all-time: it does not reset with the period', async () => {
    const s = await setup({}, JAN, { limits: { budget: 2 } })
    expect(await spend(s, 2)).toBe(2)
    s.clock.set(MAR)
    expect(await spend(s, 1)).toBe(0)
  })
})

describe('the admission view kept with a cached key', () => {
  const service = (storage = memoryStorage()) => {
    const now = { t: JAN }
    const o = resolveOptions({ secret: 'x'.repeat(32), storage, ...opts })
    return { s: new AccountService(storage, o, () => now.t), storage, now }
  }

  it('a view read from the store is the one the cache then answers, live', async () => {
    const { s } = service()
    const held = await s.load('acct_1', JAN)
    expect(held.dead).toBe(false)
    expect(held.creditKey).toContain('acct_1')
    // What a key's cache entry keeps after its first request: answered as is, no lookup.
    expect(s.peek('acct_1', JAN + 1, held)).toBe(held)
    expect(await s.load('acct_1', JAN + 1)).toBe(held)
  })

  it('a view whose read a change raced comes back dead, and is not kept', async () => {
    const { s, storage } = service()
    await storage.accounts.ensure(s.defaults('acct_1', JAN))
    const reading = s.load('acct_1', JAN)
    s.invalidate('acct_1')
    const held = await reading
    expect(held.dead).toBe(true)
    expect(s.peek('acct_1', JAN + 1, held)).toBeUndefined()
  })

  it("a view's times count from the cache's base, which a clock six days on moves", async () => {
    const { s } = service()
    const held = await s.load('acct_1', JAN)
    // Small integers from the first time asked for (V8 keeps them in the view, not boxed).
    expect(held.cachedAt).toBe(0)
    expect(s.peek('acct_1', JAN + 1, held)).toBe(held)
    // Moving the base drops every view counted from the old one, held ones too.
    const later = JAN + 7 * 86_400_000
    expect(s.peek('acct_1', later, held)).toBeUndefined()
    expect(held.dead).toBe(true)
    const next = await s.load('acct_1', later)
    expect(next.cachedAt).toBe(0)
    expect(s.peek('acct_1', later + 1, next)).toBe(next)
  })
})
