import { describe, expect, it } from 'vitest'
import { manualClock } from '../clock.js'
import { ConfigError, InvalidRequestError } from '../errors.js'
import { memoryStorage } from '../storage/memory.js'
import type { Storage } from '../storage/types.js'
import { createTollbooth } from '../tollbooth.js'
import { applyBillingChanges, BILLING_STATE_KEY } from './apply.js'

const T0 = Date.UTC(2026, 10, 24, 12, 0, 0)
const make = () =>
  createTollbooth({
    secret: 'apply-unit-secret-apply-unit-secret-0001',
    clock: manualClock(T0),
    plans: { free: { monthlyCredits: 10 }, pro: { monthlyCredits: 1_000 } },
    defaultTier: 'free',
  })

describe('applyBillingChanges', () => {
  it('sets the tier with its expiry and remembers the subscription', async () => {
    const tb = make()
    const [r] = await applyBillingChanges(tb, [
      {
        type: 'tier',
        accountId: 'a',
        subscriptionId: 'sub_1',
        at: T0,
        tier: 'pro',
        expiresAt: T0 + 1,
      },
    ])
    expect(r!.applied).toBe(true)
    const a = await tb.accounts.get('a')
    expect(a.tier).toBe('pro')
    expect(a.tierExpiresAt).toBe(T0 + 1)
    expect(a.metadata[BILLING_STATE_KEY]).toEqual({ subscriptionId: 'sub_1', at: T0, ended: false })
  })

  it('asks for the current state only on a tie of two snapshots that disagree', async () => {
    const tb = make()
    const asked: string[] = []
    const current = async (c: { subscriptionId: string }) => {
      asked.push(c.subscriptionId)
      return { type: 'tier', accountId: 'a', subscriptionId: 'x', at: 0, tier: 'free' } as const
    }
    const tier = (at: number, t: string) =>
      ({ type: 'tier', accountId: 'a', subscriptionId: 'sub_1', at, tier: t }) as const
    // Not a snapshot (a checkout, an invoice): never asks, and a snapshot tying with it neither.
    await applyBillingChanges(tb, [tier(T0, 'pro')])
    await applyBillingChanges(tb, [tier(T0, 'free')], { current })
    expect(asked).toEqual([])
    // A snapshot of the same time that agrees: no call.
    await applyBillingChanges(tb, [tier(T0, 'free')], { current })
    expect(asked).toEqual([])
    // One that disagrees: the provider's answer is applied, at the tied time.
    const [r] = await applyBillingChanges(tb, [tier(T0, 'pro')], { current })
    expect(asked).toEqual(['sub_1'])
    expect(r!.current).toMatchObject({ tier: 'free', subscriptionId: 'sub_1', at: T0 })
    expect((await tb.accounts.get('a')).tier).toBe('free')
    // A newer time is ordered by its time: no call.
    await applyBillingChanges(tb, [tier(T0 + 1_000, 'pro')], { current })
    expect(asked).toHaveLength(1)
    expect((await tb.accounts.get('a')).tier).toBe('pro')
  })

  it('keeps other metadata when it records its state', async () => {
    const tb = make()
    await tb.accounts.patch('a', { metadata: { team: 'blue' } })
    await applyBillingChanges(tb, [
      { type: 'cancel', accountId: 'a', subscriptionId: 'sub_1', at: T0 },
    ])
    expect((await tb.accounts.get('a')).metadata['team']).toBe('blue')
  })

  it('grants credits once per grant id, also when applied concurrently', async () => {
    const tb = make()
    const grant = {
      type: 'credits',
      accountId: 'a',
      amount: 50,
      grantId: 'g1',
      reason: 'top-up',
    } as const
    const results = await Promise.all(
      Array.from({ length: 5 }, () => applyBillingChanges(tb, [grant])),
    )
    expect(results.flat().filter((r) => r.applied)).toHaveLength(1)
    expect((await tb.accounts.get('a')).balance).toBe(50)
  })

  it('refuses an unknown tier with a 400 and changes nothing', async () => {
    const tb = make()
    const err = await applyBillingChanges(tb, [
      { type: 'tier', accountId: 'a', subscriptionId: 's', at: T0, tier: 'gold' },
    ]).catch((e) => e)
    expect(err.status).toBe(400)
    expect((await tb.accounts.get('a')).metadata).toEqual({})
  })

  it('refuses a tier named like a member of Object.prototype, and the account keeps its plan', async () => {
    const tb = make()
    for (const tier of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const err = await applyBillingChanges(tb, [
        { type: 'tier', accountId: 'a', subscriptionId: 's', at: T0, tier },
      ]).catch((e) => e)
      expect(err.status, tier).toBe(400)
      expect(err.issues[0].path).toBe('tier')
    }
    const a = await tb.accounts.get('a')
    expect([a.tier, a.metadata]).toEqual(['free', {}])
  })

  it('two instances applying changes of one account at once: the newer wins, as one after the other', async () => {
    // One store, two instances (two processes behind a load balancer). Instance B applies an
    // older event and is held between its read and its write; instance A applies the
    // subscription's deletion meanwhile.
    const shared = memoryStorage()
    let gate: Promise<void> | null = null
    let entered: () => void = () => {}
    const reached = new Promise<void>((r) => {
      entered = r
    })
    const accounts = shared.accounts
    const heldB: Storage = {
      ...shared,
      accounts: {
        get: (id) => accounts.get(id),
        ensure: (d) => accounts.ensure(d),
        addBalance: (id, n) => accounts.addBalance(id, n),
        topUp: (id, t) => accounts.topUp(id, t),
        update: async (id, patch, ifPeriodStart) => {
          if (gate && patch.metadata) {
            const g = gate
            gate = null
            entered()
            await g
          }
          return accounts.update(id, patch, ifPeriodStart)
        },
      },
    }
    const opts = {
      secret: 'apply-unit-secret-apply-unit-secret-0001',
      clock: manualClock(T0),
      plans: { free: { monthlyCredits: 10 }, pro: { monthlyCredits: 1_000 } },
      defaultTier: 'free',
    }
    const a = createTollbooth({ ...opts, storage: shared })
    const b = createTollbooth({ ...opts, storage: heldB })
    let release: () => void = () => {}
    gate = new Promise<void>((r) => {
      release = r
    })
    const older = applyBillingChanges(b, [
      {
        type: 'tier',
        accountId: 'x',
        subscriptionId: 'sub_1',
        at: T0,
        tier: 'pro',
        expiresAt: T0 + 30 * 86_400_000,
      },
    ])
    await reached
    const newer = applyBillingChanges(a, [
      { type: 'cancel', accountId: 'x', subscriptionId: 'sub_1', at: T0 + 1_000 },
    ])
    await new Promise((r) => setTimeout(r, 50))
    release()
    await Promise.all([older, newer])
    const x = await a.accounts.get('x')
    expect([x.tier, x.tierExpiresAt]).toEqual(['free', null])
    expect(x.metadata[BILLING_STATE_KEY]).toEqual({
      subscriptionId: 'sub_1',
      at: T0 + 1_000,
      ended: true,
    })
  })
})

describe('applyBillingChanges: bad arguments', () => {
  const grant = (grantId: string) =>
    ({ type: 'credits', accountId: 'a', amount: 10, grantId, reason: 'top-up' }) as const

  it.each([
    [0, 'options.grantTtlMs must be an integer >= 1 (milliseconds), got 0'],
    [-5, 'options.grantTtlMs must be an integer >= 1 (milliseconds), got -5'],
    [Number.NaN, 'options.grantTtlMs must be an integer >= 1 (milliseconds), got NaN'],
    ['35d', 'options.grantTtlMs must be an integer >= 1 (milliseconds), got "35d"'],
  ])('grantTtlMs %s throws a ConfigError and credits nothing', async (ttl, message) => {
    const tb = make()
    await tb.accounts.ensure('a')
    const err = await applyBillingChanges(tb, [grant('pi_1')], {
      grantTtlMs: ttl as number,
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain(`applyBillingChanges: ${message}`)
    // Retried at once: a record kept 0 ms would have let it credit again.
    await applyBillingChanges(tb, [grant('pi_1')], { grantTtlMs: ttl as number }).catch(() => {})
    expect((await tb.accounts.get('a')).balance).toBe(0)
  })

  it.each([
    ['empty', ''],
    ['256 characters', 'g'.repeat(256)],
    ['a NUL byte', 'pi_\u0000'],
    ['a lone surrogate', 'pi_\ud800'],
  ])('a grantId %s is a 400 naming grantId and credits nothing', async (_, grantId) => {
    const tb = make()
    await tb.accounts.ensure('a')
    const err = await applyBillingChanges(tb, [grant(grantId)]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect((err as InvalidRequestError).issues[0]?.path).toBe('grantId')
    expect((await tb.accounts.get('a')).balance).toBe(0)
  })
})
