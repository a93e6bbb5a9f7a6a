/**
 * @module test/metering/concurrency
 *
 * The reservation proof: credits are held at admission, atomically with every other check,
 * so concurrent requests can never overspend a balance. 200 concurrent requests of cost 1
 * against a prepaid balance of 50 serve exactly 50, leave the balance at 0, and no figure
 * ever goes negative, also across the period rollover that spends the balance.
 */

import { describe, expect, it } from 'vitest'
import type { Admission, Decision } from '../../src/index.js'
import { req, setup } from './helpers.js'

/** A plan with no monthly credits: the account runs on its prepaid balance alone. */
const PREPAID = { plans: { prepaid: { monthlyCredits: 0 } }, defaultTier: 'prepaid' }

/** Yields to the event loop a pseudo-random number of times, so handlers interleave. */
async function work(i: number): Promise<void> {
  for (let n = (i * 7919) % 5; n > 0; n--) await new Promise((r) => setImmediate(r))
}

describe('credit reservations under concurrency', () => {
  it('200 concurrent requests of cost 1 against a balance of 50 serve exactly 50', async () => {
    const { tb, clock, key, keyId } = await setup(PREPAID)
    const second = (await tb.keys.create({ accountId: 'acct_1', name: 'shared' })).key
    await tb.accounts.addCredits('acct_1', 50)
    const route = tb.route({ cost: 1, category: 'tts', byok: true })
    const remaining: number[] = []

    const one = async (i: number): Promise<Decision> => {
      const d = await tb.authenticate(req(i % 2 ? key : second), route)
      if (d.allowed) {
        await work(i)
        remaining.push(Number(d.responseHeaders()['X-Usage-Remaining']))
        await tb.settle(d, { status: 200 })
      }
      // Sampled while others are in flight: the figures never go below zero.
      const c = (await tb.accounts.get('acct_1')).credits
      expect(c.used).toBeLessThanOrEqual(50)
      expect(c.remaining).toBeGreaterThanOrEqual(0)
      return d
    }
    const all = await Promise.all(Array.from({ length: 200 }, (_, i) => one(i)))

    const served = all.filter((d): d is Admission => d.allowed)
    const refused = all.filter((d) => !d.allowed)
    expect(served).toHaveLength(50)
    expect(refused).toHaveLength(150)
    for (const d of refused) {
      expect(d).toMatchObject({ status: 402, code: 'insufficient_credits' })
    }
    // Each served request saw its own slot of the balance: 49 … 0, each once.
    expect(remaining.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect((await tb.accounts.get('acct_1')).credits).toEqual({ used: 50, limit: 50, remaining: 0 })
    const usage = await tb.usage.get('acct_1')
    expect(usage.requestCount).toBe(50)
    expect(usage.breakdown).toEqual({ tts: 50 })
    // The key's log: its 25 served requests and its 75 refused ones (0 credits each).
    const log = (await tb.usage.logs(keyId, { limit: 100 })).data
    expect(log.filter((e) => e.code === null).map((e) => e.units)).toEqual(Array(25).fill(1))
    expect(log.filter((e) => e.code === 'insufficient_credits').map((e) => e.units)).toEqual(
      Array(75).fill(0),
    )

    // The period ends: the 50 spent credits come out of the prepaid balance, which is 0, not less.
    clock.set(Date.UTC(2026, 1, 1, 0, 0, 1))
    const feb = await tb.accounts.get('acct_1')
    expect(feb.balance).toBe(0)
    expect(feb.credits).toEqual({ used: 0, limit: 0, remaining: 0 })
    expect((await tb.authenticate(req(key), route)).allowed).toBe(false)
  })

  it('concurrent refunds free the balance for later requests, never more', async () => {
    const { tb, key } = await setup(PREPAID)
    await tb.accounts.addCredits('acct_1', 10)
    const route = tb.route({ cost: 1 })
    // Half of the served requests fail (500) and are refunded.
    let billed = 0
    const run = async (i: number) => {
      const d = await tb.authenticate(req(key), route)
      if (!d.allowed) return false
      await work(i)
      const status = i % 2 ? 500 : 200
      if (status === 200) billed++
      await tb.settle(d, { status })
      return true
    }
    let served = 0
    for (let round = 0; round < 10 && billed < 10; round++) {
      const batch = await Promise.all(Array.from({ length: 30 }, (_, i) => run(round * 30 + i)))
      served += batch.filter(Boolean).length
    }
    expect(billed).toBe(10)
    expect(served).toBeGreaterThan(10)
    expect((await tb.accounts.get('acct_1')).credits).toEqual({ used: 10, limit: 10, remaining: 0 })
  })

  it('a per-key budget and the account balance are reserved together', async () => {
    const { tb, key } = await setup(PREPAID, undefined, { limits: { budget: 5 } })
    const other = (await tb.keys.create({ accountId: 'acct_1', name: 'o' })).key
    await tb.accounts.addCredits('acct_1', 8)
    const route = tb.route({ cost: 1 })
    const fire = (k: string, n: number) =>
      Promise.all(Array.from({ length: n }, () => tb.authenticate(req(k), route)))
    const [a, b] = await Promise.all([fire(key, 40), fire(other, 40)])
    const servedA = a.filter((d) => d.allowed).length
    const servedB = b.filter((d) => d.allowed).length
    expect(servedA).toBeLessThanOrEqual(5)
    expect(servedA + servedB).toBe(8)
    await Promise.all([...a, ...b].map((d) => tb.settle(d, { status: 200 })))
    expect((await tb.accounts.get('acct_1')).credits.remaining).toBe(0)
  })
})
