/**
 * @module tollbooth/testing/accounts
 *
 * Conformance tests of `AccountStore` (idempotent ensure, compare-and-set update, the closed
 * periods' figures kept as given, atomic balance, a top-up once per idempotency key), `SecretStore` (one sealed key per account and provider) and, when present, the
 * `ChangeFeed` (a published hash reaches every subscriber).
 */

import { describe, expect, it } from 'vitest'
import {
  eventually,
  type GetStorage,
  makeAccount,
  makeSecret,
  newAccountId,
  randomHash,
} from './fixtures.js'

export function accountStoreTests(get: GetStorage): void {
  describe('accounts', () => {
    it('creates an account once and then returns it unchanged', async () => {
      const a = makeAccount({ tier: 'pro', metadata: { plan: { seats: 3 } } })
      expect(await get().accounts.get(a.id)).toBeNull()
      expect(await get().accounts.ensure(a)).toEqual(a)
      const again = await get().accounts.ensure({ ...a, tier: 'free', balance: 99 })
      expect(again).toEqual(a)
      expect(await get().accounts.get(a.id)).toEqual(a)
    })

    it('returns the same record to concurrent ensures', async () => {
      const a = makeAccount()
      const all = await Promise.all(
        Array.from({ length: 20 }, (_, i) => get().accounts.ensure({ ...a, balance: i })),
      )
      expect(new Set(all.map((r) => r.balance)).size).toBe(1)
      expect(await get().accounts.get(a.id)).toEqual(all[0])
    })

    it('updates the patched fields; null for an unknown account', async () => {
      const a = makeAccount()
      await get().accounts.ensure(a)
      const patch = {
        tier: 'scale',
        tierExpiresAt: 1_800_000_000_000,
        billingCustomerId: 'cus_123',
        metadata: { k: 'v' },
      }
      expect(await get().accounts.update(a.id, patch)).toEqual({ ...a, ...patch })
      expect(await get().accounts.get(a.id)).toEqual({ ...a, ...patch })
      expect(await get().accounts.update(newAccountId(), { tier: 'x' })).toBeNull()
      expect(await get().accounts.update(a.id, { tier: null })).toEqual({
        ...a,
        ...patch,
        tier: null,
      })
    })

    it('returns metadata with its fields in the order given, nested too', async () => {
      const metadata = {
        zeta: 1,
        a: { y: [{ d: 1.5, c: 'x' }], b: 1.5, aa: null },
        longest_name_first: true,
        b: [1e21, 0.1 + 0.2],
      }
      const given = JSON.stringify(metadata)
      const a = makeAccount({ metadata })
      expect(JSON.stringify((await get().accounts.ensure(a)).metadata)).toBe(given)
      expect(JSON.stringify((await get().accounts.get(a.id))?.metadata)).toBe(given)
      const b = makeAccount()
      await get().accounts.ensure(b)
      expect(JSON.stringify((await get().accounts.update(b.id, { metadata }))?.metadata)).toBe(
        given,
      )
      expect(JSON.stringify((await get().accounts.get(b.id))?.metadata)).toBe(given)
    })

    it('applies an update with ifPeriodStart only when the period matches', async () => {
      const a = makeAccount({ periodStart: 1000, carryover: 5 })
      await get().accounts.ensure(a)
      const rollover = { periodStart: 2000, carryover: 7 }
      expect(await get().accounts.update(a.id, rollover, 999)).toBeNull()
      expect(await get().accounts.get(a.id)).toEqual(a)
      expect(await get().accounts.update(a.id, rollover, 1000)).toEqual({ ...a, ...rollover })
      expect(await get().accounts.update(a.id, { carryover: 0 }, 1000)).toBeNull()
      expect((await get().accounts.get(a.id))?.carryover).toBe(7)
    })

    it('keeps the closed periods a rollover writes, as given, with its compare-and-set', async () => {
      const a = makeAccount({ periodStart: 1000, balance: 50 })
      expect((await get().accounts.ensure(a)).closedPeriods).toBeUndefined()
      const closedPeriods = [
        { start: 0, monthlyCredits: null, carryover: 0, balance: 0.1 + 0.2, used: 2.5 },
        { start: 1000, monthlyCredits: 100, carryover: 60, balance: 50, used: 200 },
      ]
      const rollover = { periodStart: 2000, carryover: 0, closedPeriods }
      expect(await get().accounts.update(a.id, rollover, 999)).toBeNull()
      expect((await get().accounts.get(a.id))?.closedPeriods).toBeUndefined()
      expect(await get().accounts.update(a.id, rollover, 1000)).toEqual({ ...a, ...rollover })
      expect(await get().accounts.get(a.id)).toEqual({ ...a, ...rollover })
      // Other changes keep them.
      expect(await get().accounts.addBalance(a.id, -40)).toEqual({ ...a, ...rollover, balance: 10 })
      expect((await get().accounts.update(a.id, { tier: 'pro' }))?.closedPeriods).toEqual(
        closedPeriods,
      )
    })

    it("adds a rollover's addToBalance in its compare-and-set, once, among concurrent adds", async () => {
      const a = makeAccount({ periodStart: 1000, balance: 60 })
      await get().accounts.ensure(a)
      const close = { periodStart: 2000, carryover: 0, addToBalance: -50.1 }
      expect(await get().accounts.update(a.id, close, 999)).toBeNull()
      expect((await get().accounts.get(a.id))?.balance).toBe(60)
      const [closed] = await Promise.all([
        get().accounts.update(a.id, close, 1000),
        ...Array.from({ length: 20 }, () => get().accounts.addBalance(a.id, 0.1)),
      ])
      expect(closed).toMatchObject({ periodStart: 2000, carryover: 0 })
      expect(closed).not.toHaveProperty('addToBalance')
      // A second close with the same compare finds the period moved: nothing taken twice.
      expect(await get().accounts.update(a.id, close, 1000)).toBeNull()
      expect(await get().accounts.get(a.id)).toEqual({ ...a, periodStart: 2000, balance: 11.9 })
      // Given with a balance, the amount is added to it.
      expect(await get().accounts.update(a.id, { balance: 5, addToBalance: 0.2 })).toMatchObject({
        balance: 5.2,
      })
    })

    it('lets exactly one of concurrent period rollovers win', async () => {
      const a = makeAccount({ periodStart: 1000 })
      await get().accounts.ensure(a)
      const all = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          get().accounts.update(a.id, { periodStart: 2000, carryover: i }, 1000),
        ),
      )
      expect(all.filter((r) => r !== null)).toHaveLength(1)
    })

    it('adds to the balance atomically under 100 concurrent adds', async () => {
      const a = makeAccount({ balance: 10 })
      await get().accounts.ensure(a)
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => get().accounts.addBalance(a.id, i % 2 ? 3 : -1)),
      )
      expect((await get().accounts.get(a.id))?.balance).toBe(10 + 50 * 3 - 50)
      expect(await get().accounts.addBalance(a.id, 0.25)).toEqual({ ...a, balance: 110.25 })
      expect(await get().accounts.addBalance(newAccountId(), 5)).toBeNull()
    })
    it('keeps a balance of fractional credits as the decimal it is', async () => {
      const a = makeAccount({ balance: 1 })
      await get().accounts.ensure(a)
      // In binary doubles 1 - 0.9 is 0.09999999999999998 and 0.1 + 0.2 is 0.30000000000000004.
      expect((await get().accounts.addBalance(a.id, -0.9))?.balance).toBe(0.1)
      expect((await get().accounts.addBalance(a.id, 0.2))?.balance).toBe(0.3)
      for (let i = 0; i < 3; i++) await get().accounts.addBalance(a.id, -0.1)
      expect((await get().accounts.get(a.id))?.balance).toBe(0)
      for (let i = 0; i < 10; i++) await get().accounts.addBalance(a.id, 0.0008)
      expect((await get().accounts.get(a.id))?.balance).toBe(0.008)
      await get().accounts.addBalance(a.id, 1_000_000 - 0.008)
      await get().accounts.addBalance(a.id, 0.3)
      expect((await get().accounts.get(a.id))?.balance).toBe(1_000_000.3)
    })

    it('tops up once per idempotency key of the account, the credit and its record in one step', async () => {
      const a = makeAccount({ balance: 5 })
      const b = makeAccount()
      await get().accounts.ensure(a)
      await get().accounts.ensure(b)
      const key = `order-${a.id}`
      const now = 1_000_000
      const t = { key, amount: 10, now, expiresAt: now + 1000 }
      // Concurrent calls with the key (a retry racing the first): one adds.
      const all = await Promise.all(Array.from({ length: 10 }, () => get().accounts.topUp(a.id, t)))
      expect(all.filter((r) => r?.applied)).toHaveLength(1)
      for (const r of all) expect(r).toMatchObject({ amount: 10 })
      expect((await get().accounts.get(a.id))?.balance).toBe(15)
      // A first call that lands after its retry (its clock earlier) adds nothing either.
      expect(await get().accounts.topUp(a.id, { ...t, now: now - 500 })).toEqual({
        applied: false,
        amount: 10,
      })
      // The key with another amount: the record comes back, nothing added.
      expect(await get().accounts.topUp(a.id, { ...t, amount: 11, now: now + 999 })).toEqual({
        applied: false,
        amount: 10,
      })
      expect((await get().accounts.get(a.id))?.balance).toBe(15)
      // A key is its account's: the same key on another account is a top-up of its own, once.
      const onB = { ...t, amount: 7, now: now + 1 }
      const both = await Promise.all([1, 2, 3].map(() => get().accounts.topUp(b.id, onB)))
      expect(both.filter((r) => r?.applied)).toHaveLength(1)
      for (const r of both) expect(r).toMatchObject({ amount: 7 })
      expect((await get().accounts.get(b.id))?.balance).toBe(7)
      expect((await get().accounts.get(a.id))?.balance).toBe(15)
      // Another key adds; the amount is added rounded as addBalance adds it.
      expect(
        await get().accounts.topUp(a.id, { ...t, key: `${key}-2`, amount: 0.1, now: now + 1 }),
      ).toEqual({ applied: true, amount: 0.1 })
      expect((await get().accounts.get(a.id))?.balance).toBe(15.1)
      // Past its expiry the record counts as none: the key adds again.
      const later = { ...t, amount: 0.2, now: now + 1000, expiresAt: now + 2000 }
      expect(await get().accounts.topUp(a.id, later)).toEqual({ applied: true, amount: 0.2 })
      expect(await get().accounts.topUp(b.id, later)).toEqual({ applied: true, amount: 0.2 })
      expect((await get().accounts.get(b.id))?.balance).toBe(7.2)
      const again = { ...later, key: `${key}-2`, amount: 0.1 }
      expect((await get().accounts.topUp(a.id, again))?.applied).toBe(true)
      expect(await get().accounts.get(a.id)).toMatchObject({ ...a, balance: 15.4 })
      // No account: null, nothing kept.
      const missing = newAccountId()
      const free = { ...t, key: `${key}-3` }
      expect(await get().accounts.topUp(missing, free)).toBeNull()
      expect(await get().accounts.get(missing)).toBeNull()
      await get().accounts.ensure(makeAccount({ id: missing }))
      expect((await get().accounts.topUp(missing, free))?.applied).toBe(true)
      expect((await get().accounts.get(missing))?.balance).toBe(10)
    })
  })

  describe('secrets', () => {
    it('puts, replaces, gets, lists and deletes provider keys per account', async () => {
      const s = makeSecret()
      const other = makeSecret({ accountId: s.accountId, provider: 'openai' })
      await get().secrets.put(s)
      await get().secrets.put(other)
      expect(await get().secrets.get(s.accountId, 'elevenlabs')).toEqual(s)
      const replaced = { ...s, sealed: s.sealed + 'x', last4: 'abcd', verifiedAt: 1234 }
      await get().secrets.put(replaced)
      expect(await get().secrets.get(s.accountId, 'elevenlabs')).toEqual(replaced)
      const list = await get().secrets.list(s.accountId)
      expect(list.slice().sort((a, b) => (a.provider < b.provider ? -1 : 1))).toEqual([
        replaced,
        other,
      ])
      expect(await get().secrets.delete(s.accountId, 'elevenlabs')).toBe(true)
      expect(await get().secrets.delete(s.accountId, 'elevenlabs')).toBe(false)
      expect(await get().secrets.get(s.accountId, 'elevenlabs')).toBeNull()
      expect(await get().secrets.list(s.accountId)).toEqual([other])
    })

    it('keeps accounts apart', async () => {
      const a = makeSecret()
      const b = makeSecret({ provider: a.provider })
      await get().secrets.put(a)
      await get().secrets.put(b)
      expect(await get().secrets.get(a.accountId, a.provider)).toEqual(a)
      expect(await get().secrets.get(b.accountId, a.provider)).toEqual(b)
      expect(await get().secrets.delete(b.accountId, 'openai')).toBe(false)
      expect(await get().secrets.list(a.accountId)).toEqual([a])
      expect(await get().secrets.list(newAccountId())).toEqual([])
      expect(await get().secrets.get(newAccountId(), a.provider)).toBeNull()
    })
  })

  describe('changes', () => {
    it('delivers a published hash or account message to subscribers, and stops after unsubscribe', async () => {
      const feed = get().changes
      if (!feed) return
      const seenA: string[] = []
      const seenB: string[] = []
      const offA = await feed.subscribe((h) => seenA.push(h))
      const offB = await feed.subscribe((h) => seenB.push(h))
      const first = randomHash()
      await feed.publish(first)
      await eventually(() => seenA.includes(first) && seenB.includes(first))
      // Account changes travel as `account:<id>`, carried unchanged like a hash.
      const account = `account:${newAccountId()}`
      await feed.publish(account)
      await eventually(() => seenA.includes(account) && seenB.includes(account))
      offA()
      const second = randomHash()
      await feed.publish(second)
      await eventually(() => seenB.includes(second))
      expect(seenA).not.toContain(second)
      offB()
    })
  })
}
