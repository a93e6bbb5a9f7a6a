/**
 * @module metering/usage.test
 *
 * `tb.usage.get`: credits used/limit/remaining, the breakdown by category, the request
 * count and the reset date, for the current period or `{ month }`, enough for the usage
 * shapes of seeds 000 and 003; `tb.usage.logs`: newest first with cursor pagination, and no
 * secret in any line.
 */

import { describe, expect, it } from 'vitest'
import { admitted, req, setup } from '../../test/metering/helpers.js'
import { InvalidRequestError, NotFoundError } from '../index.js'

const opts = { plans: { pro: { monthlyCredits: 200 } }, defaultTier: 'pro' }
const JAN = Date.UTC(2026, 0, 20, 12)
const FEB = Date.UTC(2026, 1, 3, 9)

describe('usage.get', () => {
  it('reports credits, breakdown by category, request count and reset date', async () => {
    const s = await setup(opts, JAN)
    const tts = s.tb.route({ cost: 2, category: 'tts' })
    const stt = s.tb.route({ cost: 1, category: 'stt' })
    const plain = s.tb.route({ cost: 1 })
    for (let i = 0; i < 3; i++)
      await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), tts)), { status: 200 })
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), stt)), { status: 200 })
    // The handler sets the category and reports the cost after the work.
    const overdraft = s.tb.route({ cost: 1, overrun: { maxOverdraft: 100 } })
    const llm = admitted(await s.tb.authenticate(req(s.key), overdraft))
    llm.report({ category: 'llm', cost: 7 })
    await s.tb.settle(llm, { status: 200 })
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), plain)), { status: 200 })
    // A refunded request is counted as a request, with no credits.
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), stt)), { status: 500 })

    const u = await s.tb.usage.get('acct_1')
    expect(u).toEqual({
      accountId: 'acct_1',
      period: { id: '2026-01', start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 1, 1) },
      credits: { used: 15, limit: 200, remaining: 185, carryover: 0, balance: 0 },
      breakdown: { tts: 6, stt: 1, llm: 7, uncategorized: 1 },
      requests: { tts: 3, stt: 2, llm: 1, uncategorized: 1 },
      requestCount: 7,
      resetDate: Date.UTC(2026, 1, 1),
      groupBy: 'category',
      filter: { category: null, keyCategory: null },
    })

    // Seed 000 (GET /v1/usage) and seed 003 (GET /account/usage) are both one mapping away.
    const seed000 = { credits: u.credits, breakdown: u.breakdown, requestCount: u.requestCount }
    expect(seed000.credits.used).toBe(Object.values(u.breakdown).reduce((a, b) => a + b, 0))
    const seed003 = {
      current: u.credits.used,
      limit: u.credits.limit,
      resetDate: new Date(u.resetDate).toISOString(),
      breakdown: Object.entries(u.requests).map(([operation, count]) => ({ operation, count })),
    }
    expect(seed003.resetDate).toBe('2026-02-01T00:00:00.000Z')
    expect(seed003.breakdown).toContainEqual({ operation: 'tts', count: 3 })
  })

  it('answers a past month from its events after the period boundary', async () => {
    const s = await setup(opts, JAN)
    const route = s.tb.route({ cost: 4, category: 'merge' })
    for (let i = 0; i < 2; i++)
      await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    s.clock.set(FEB)
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })

    const now = await s.tb.usage.get('acct_1')
    expect(now.period.id).toBe('2026-02')
    expect(now.credits.used).toBe(4)
    expect(now.requestCount).toBe(1)
    expect(now.resetDate).toBe(Date.UTC(2026, 2, 1))

    const jan = await s.tb.usage.get('acct_1', { month: '2026-01' })
    expect(jan.period.id).toBe('2026-01')
    expect(jan.credits).toEqual({ used: 8, limit: 200, remaining: 192, carryover: 0, balance: 0 })
    expect(jan.breakdown).toEqual({ merge: 8 })
    expect(jan.requestCount).toBe(2)
    expect(jan.resetDate).toBe(Date.UTC(2026, 1, 1))

    const empty = await s.tb.usage.get('acct_1', { month: '2025-06' })
    expect(empty.requestCount).toBe(0)
    expect(empty.breakdown).toEqual({})
  })

  it('counts other accounts apart', async () => {
    const s = await setup(opts, JAN)
    const other = (await s.tb.keys.create({ accountId: 'acct_2', name: 'x' })).key
    const route = s.tb.route({ cost: 1, category: 'tts' })
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    await s.tb.settle(admitted(await s.tb.authenticate(req(other), route)), { status: 200 })
    await s.tb.settle(admitted(await s.tb.authenticate(req(other), route)), { status: 200 })
    expect((await s.tb.usage.get('acct_1')).requestCount).toBe(1)
    expect((await s.tb.usage.get('acct_2')).credits.used).toBe(2)
  })

  it('refuses a bad month or account id with a 400 naming the field', async () => {
    const s = await setup(opts, JAN)
    for (const month of ['2026-13', '2026-1', 'january', '', '2026-01-01']) {
      const err = await s.tb.usage.get('acct_1', { month }).catch((e) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.message).toMatch(/month/)
    }
    const err = await s.tb.usage.get('acct {1}').catch((e) => e)
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect(err.message).toMatch(/accountId/)
  })
})

describe('usage.logs', () => {
  it('pages a key’s requests newest first with a cursor, each request once', async () => {
    const s = await setup(opts, JAN)
    const route = s.tb.route({ cost: 1, category: 'tts' })
    const ids: string[] = []
    for (let i = 0; i < 45; i++) {
      const d = admitted(await s.tb.authenticate(req(s.key), route))
      ids.push(d.requestId)
      await s.tb.settle(d, { status: 200 })
      // Several requests share a millisecond: the order must still be total.
      if (i % 3 === 0) s.clock.advance(1)
    }
    const pages: string[][] = []
    let cursor: string | null = null
    do {
      const page: Awaited<ReturnType<typeof s.tb.usage.logs>> = await s.tb.usage.logs(s.keyId, {
        limit: 20,
        cursor,
      })
      pages.push(page.data.map((e) => e.requestId))
      expect(page.hasMore).toBe(page.nextCursor !== null)
      cursor = page.nextCursor
    } while (cursor)
    expect(pages.map((p) => p.length)).toEqual([20, 20, 5])
    const seen = pages.flat()
    expect(new Set(seen).size).toBe(45)
    expect(new Set(seen)).toEqual(new Set(ids))
    const times = (await s.tb.usage.logs(s.keyId, { limit: 100 })).data.map((e) => e.time)
    expect(times).toEqual([...times].sort((a, b) => b - a))
    expect(times[0]).toBe(s.clock.now())
  })

  it('a log line is the usage event without the account, and holds no secret', async () => {
    const s = await setup(opts, JAN)
    const route = s.tb.route({ cost: 1, category: 'tts', byok: true })
    const d = admitted(
      await s.tb.authenticate(
        req(s.key, { 'x-provider-key-elevenlabs': 'sk_el_caller_secret_123456' }),
        route,
      ),
    )
    await s.tb.settle(d, { status: 200, provider: 'elevenlabs' })
    const { data } = await s.tb.usage.logs(s.keyId)
    expect(data).toHaveLength(1)
    expect(data[0]).not.toHaveProperty('accountId')
    expect(data[0]).toMatchObject({ bypassed: true, provider: 'elevenlabs', units: 0 })
    const line = JSON.stringify(data)
    const stored = await s.tb.storage.keys.get(s.keyId)
    expect(line).not.toContain(s.key)
    expect(line).not.toContain(s.key.slice(-20))
    expect(line).not.toContain(stored!.hash)
    expect(line).not.toContain('sk_el_caller_secret')
  })

  it('answers 404 for an unknown key or another account’s key, 400 for a bad page', async () => {
    const s = await setup(opts, JAN)
    await expect(s.tb.usage.logs('key_missing')).rejects.toBeInstanceOf(NotFoundError)
    await expect(s.tb.usage.logs(s.keyId, {}, { accountId: 'acct_2' })).rejects.toBeInstanceOf(
      NotFoundError,
    )
    for (const bad of [{ limit: 0 }, { limit: 101 }, { limit: 2.5 }, { extra: 1 }]) {
      const err = await s.tb.usage.logs(s.keyId, bad as never).catch((e) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
    }
    expect((await s.tb.usage.logs(s.keyId, {}, { accountId: 'acct_1' })).data).toEqual([])
  })
})
