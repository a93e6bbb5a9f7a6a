/**
 * @module test/metering/request-log
 *
 * The request log as seed 002 describes it: every request made with a known key is recorded,
 * refused ones included (status, error code, 0 credits), queued in the usage out-box like
 * served ones (nothing written per request), and left out of usage summaries; each entry has
 * its time to first byte beside its total duration, and the category its key had when the
 * request was made, which usage summaries break down by.
 */

import { describe, expect, it } from 'vitest'
import { memoryStorage } from '../../src/index.js'
import { admitted, denied, events, req, setup } from './helpers.js'

/** An out-box that only flushes when asked, so a test sees what is written when. */
const QUIET = { usage: { flushIntervalMs: 3_600_000, maxBatch: 10_000 } }

describe('request log', () => {
  it('logs a refused request with its status, code and 0 credits, and does not count it', async () => {
    const storage = memoryStorage()
    const s = await setup({ storage, ...QUIET }, undefined, {
      limits: { rateLimits: [{ limit: 1, windowMs: 60_000 }] },
    })
    const route = s.tb.route({ cost: 1, category: 'tts' })
    const ok = admitted(await s.tb.authenticate(req(s.key), route))
    await s.tb.settle(ok, { status: 200 })
    const refused = denied(await s.tb.authenticate(req(s.key), route))
    expect(refused).toMatchObject({ status: 429, code: 'rate_limited' })
    // Queued, not written: the hot path made no storage write for it.
    expect((await storage.usage.logs(s.keyId, { limit: 10 })).data).toEqual([])

    const log = await events(s.tb, s.keyId)
    expect(log).toHaveLength(2)
    expect(log.find((e) => e.status === 429)).toMatchObject({
      requestId: refused.requestId,
      keyId: s.keyId,
      accountId: 'acct_1',
      status: 429,
      code: 'rate_limited',
      units: 0,
      overage: 0,
      durationMs: 0,
      ttfbMs: null,
      category: 'tts',
      method: 'POST',
      path: '/v1/synthesize',
      ip: '127.0.0.1',
    })
    expect(log.find((e) => e.status === 200)).toMatchObject({ code: null, units: 1 })
    // The management API's shape (tb.usage.logs) shows the same.
    const page = await s.tb.usage.logs(s.keyId)
    expect(page.data.map((e) => [e.status, e.code, e.units])).toEqual(
      expect.arrayContaining([
        [429, 'rate_limited', 0],
        [200, null, 1],
      ]),
    )
    const usage = await s.tb.usage.get('acct_1')
    expect(usage.requestCount).toBe(1)
    expect(usage.requests).toEqual({ tts: 1 })
    expect(usage.breakdown).toEqual({ tts: 1 })
  })

  it('logs refusals for an inactive key, a missing scope and missing credits; not unknown keys', async () => {
    const s = await setup({ plans: { p: { monthlyCredits: 0 } }, defaultTier: 'p', ...QUIET })
    const route = s.tb.route({ cost: 1 })
    expect(denied(await s.tb.authenticate(req(s.key), route)).code).toBe('insufficient_credits')
    const scoped = s.tb.route({ scopes: ['admin'] })
    expect(denied(await s.tb.authenticate(req(s.key), scoped)).code).toBe('insufficient_scope')
    await s.tb.keys.update(s.keyId, { active: false })
    expect(denied(await s.tb.authenticate(req(s.key), route)).code).toBe('inactive_api_key')
    // A well-formed key that is not stored, and a malformed one: no key to log them under.
    const other = await s.tb.keys.create({ accountId: 'acct_2' })
    await s.tb.keys.delete(other.record.id)
    expect(denied(await s.tb.authenticate(req(other.key), route)).code).toBe('invalid_api_key')
    expect(denied(await s.tb.authenticate(req('sk_nope'), route)).code).toBe('invalid_api_key')

    const log = await events(s.tb, s.keyId)
    expect(log.map((e) => [e.status, e.code, e.units]).sort()).toEqual([
      [401, 'inactive_api_key', 0],
      [402, 'insufficient_credits', 0],
      [403, 'insufficient_scope', 0],
    ])
    expect(await events(s.tb, other.record.id)).toEqual([])
    expect((await s.tb.usage.get('acct_1')).requestCount).toBe(0)
  })

  it("records a response's time to first byte beside its total duration", async () => {
    const s = await setup()
    const d = admitted(await s.tb.authenticate(req(s.key)))
    s.clock.advance(240)
    const e = await s.tb.settle(d, { status: 200, ttfbMs: 15 })
    expect(e).toMatchObject({ durationMs: 240, ttfbMs: 15, code: null })
    const [logged] = await events(s.tb, s.keyId)
    expect(logged).toMatchObject({ durationMs: 240, ttfbMs: 15 })
    expect(logged!.ttfbMs!).toBeLessThan(logged!.durationMs)
  })

  it("records the key's category of the moment, served or refused, and summarizes by it", async () => {
    const s = await setup({ ...QUIET }, undefined, {
      category: 'production',
      limits: { rateLimits: [{ limit: 2, windowMs: 60_000 }] },
    })
    const route = s.tb.route({ cost: 1, category: 'tts' })
    const served = await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), {
      status: 200,
    })
    expect(served).toMatchObject({ category: 'tts', keyCategory: 'production' })
    await s.tb.keys.update(s.keyId, { category: 'staging' })
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    expect(denied(await s.tb.authenticate(req(s.key), route)).code).toBe('rate_limited')
    await s.tb.keys.update(s.keyId, { category: null })
    s.clock.advance(60_000)
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })

    const log = await events(s.tb, s.keyId)
    expect(log.map((e) => [e.status, e.keyCategory])).toHaveLength(4)
    expect(log.map((e) => [e.status, e.keyCategory])).toEqual(
      expect.arrayContaining([
        [200, 'production'],
        [200, 'staging'],
        [200, null],
        [429, 'staging'],
      ]),
    )
    const usage = await s.tb.usage.get('acct_1', { groupBy: 'keyCategory' })
    expect(usage.requests).toEqual({ production: 1, staging: 1, uncategorized: 1 })
    expect(usage.groupBy).toBe('keyCategory')
    const summary = await s.tb.usage.summarize('acct_1', 0, s.clock.now() + 1, {
      keyCategory: 'staging',
    })
    expect(summary).toEqual({
      requests: 1,
      units: 1,
      byCategory: { tts: { requests: 1, units: 1 } },
      byKeyCategory: { staging: { requests: 1, units: 1 } },
    })
  })
})
