/**
 * @module limits/admission.test
 *
 * Unit tests of the admission compiler: which checks a key's limits and a plan become, their
 * counter names, and how a refusal is answered (statuses and messages from the seeds).
 */

import { describe, expect, it } from 'vitest'
import type { CheckResult, KeyRecord } from '../storage/types.js'
import {
  compileKeyLimits,
  compilePlanLimits,
  decidingRefusal,
  instantiate,
  QUOTA_WINDOWS,
  refusal,
  windowName,
} from './admission.js'

function key(limits: KeyRecord['limits']): KeyRecord {
  return {
    id: 'key_1',
    hash: 'h',
    start: 'sk_live_abcd',
    name: 'k',
    accountId: 'acct_1',
    kind: 'consumption',
    category: null,
    scopes: [],
    metadata: {},
    active: true,
    createdAt: 0,
    expiresAt: null,
    lastUsedAt: null,
    revokedAt: null,
    limits,
  }
}

const refused: CheckResult = {
  allowed: false,
  limit: 5,
  used: 5,
  remaining: 0,
  resetMs: 1000,
  retryAfterMs: 1500,
}

describe('admission compiler', () => {
  it('compiles no check for a key without limits', () => {
    expect(compileKeyLimits(key({}))).toEqual([])
  })

  it('compiles each quota as a rolling window of 24 buckets, total as all-time', () => {
    const t = compileKeyLimits(key({ quotas: { monthly: 4, total: 1, daily: 2, weekly: 3 } }))
    expect(t.map((x) => x.name)).toEqual(['total', 'daily', 'weekly', 'monthly'])
    for (const x of t) {
      expect(x.role).toBe('quota')
      const c = x as Extract<typeof x, { type: 'window' }>
      const w = QUOTA_WINDOWS[c.name as keyof typeof QUOTA_WINDOWS]
      expect(c).toMatchObject({ type: 'window', windowMs: w.windowMs, bucketMs: w.bucketMs })
      if (c.windowMs > 0) expect(c.windowMs / c.bucketMs).toBe(24)
    }
    expect(QUOTA_WINDOWS.monthly.windowMs).toBe(30 * 86_400_000)
  })

  it('names every counter under the account hash tag', () => {
    const t = [
      ...compileKeyLimits(
        key({ quotas: { daily: 1 }, rateLimits: [{ limit: 1, windowMs: 1000 }], concurrency: 1 }),
      ),
      ...compilePlanLimits('acct_1', 'pro', [{ limit: 5, windowMs: 60_000 }]),
    ]
    for (const x of t) expect(x.key.startsWith('{acct_1}:')).toBe(true)
    expect(new Set(t.map((x) => x.key)).size).toBe(t.length)
  })

  it('checks a token-rate limit for room (cost 0) and marks it for counting at settle', () => {
    const [t] = compileKeyLimits(
      key({ rateLimits: [{ limit: 1000, windowMs: 60_000, unit: 'tokens' }] }),
    )
    expect(t).toMatchObject({ tokens: true, type: 'gcra', cost: 0, name: 'per-minute-tokens' })
    // Counted at admission with the route's estimate, in a check of the request's own.
    const ttl = { leaseTtlMs: 1000, reservationTtlMs: 2000 }
    const counted = instantiate(t!, { internalId: 'req_1', estimate: 0, tokens: 40 }, ttl)
    expect(counted).toEqual({
      type: 'gcra',
      key: t!.key,
      name: 'per-minute-tokens',
      limit: 1000,
      windowMs: 60_000,
      cost: 40,
      exact: true,
    })
    expect(instantiate(t!, { internalId: 'req_2', estimate: 0, tokens: 0 }, ttl)).toBe(t)
  })

  it('fills in a concurrency hold with one slot and a credit budget with the estimate', () => {
    const [c, b] = compileKeyLimits(key({ concurrency: 2, budget: 50 }))
    const request = { internalId: 'req_1', estimate: 7, tokens: 0 }
    const ttl = { leaseTtlMs: 1000, reservationTtlMs: 2000 }
    expect(instantiate(c!, request, ttl)).toMatchObject({
      amount: 1,
      holdId: 'req_1',
      ttlMs: 1000,
    })
    expect(instantiate(b!, request, ttl)).toMatchObject({ amount: 7, limit: 50, ttlMs: 2000 })
  })

  it('names round windows per-second, per-minute, per-hour, per-day and others by length', () => {
    expect([1000, 60_000, 3_600_000, 86_400_000, 10_000, 250].map(windowName)).toEqual([
      'per-second',
      'per-minute',
      'per-hour',
      'per-day',
      'per-10s',
      'per-250ms',
    ])
  })

  it('answers a reached quota "Rate limit exceeded: quota daily" with the configured status', () => {
    const [t] = compileKeyLimits(key({ quotas: { daily: 5 } }))
    expect(refusal(t!, refused, 401)).toEqual({
      status: 401,
      code: 'quota_exceeded',
      message: 'Rate limit exceeded: quota daily',
      retryAfterMs: 1500,
    })
    expect(refusal(t!, refused, 429).status).toBe(429)
  })

  it('answers a plan limit "exceeded the per-minute rate limit on your subscription" with 429', () => {
    const [t] = compilePlanLimits('acct_1', 'pro', [{ limit: 5, windowMs: 60_000 }])
    expect(refusal(t!, refused, 401)).toMatchObject({
      status: 429,
      code: 'rate_limited',
      message: 'exceeded the per-minute rate limit on your subscription',
      retryAfterMs: 1500,
    })
  })

  it('answers a full concurrency cap with 429 naming the cap', () => {
    const [t] = compileKeyLimits(key({ concurrency: 1 }))
    expect(refusal(t!, { ...refused, limit: 1 }, 429)).toMatchObject({
      status: 429,
      code: 'concurrency_limited',
      message: 'Too many concurrent requests: at most 1 in flight for this key',
    })
  })

  it('lets the refused check with the longest wait answer, the first on a tie', () => {
    const t = [
      ...compilePlanLimits('acct_1', 'pro', [{ limit: 1, windowMs: 1000 }]),
      ...compileKeyLimits(key({ quotas: { daily: 1 }, concurrency: 1 })),
    ]
    const ok = { ...refused, allowed: true, retryAfterMs: 0 }
    const r = (ms: number) => ({ ...refused, retryAfterMs: ms })
    expect(decidingRefusal(t, [ok, ok, ok], 429)).toBe(-1)
    expect(decidingRefusal(t, [r(800), r(3_600_000), ok], 429)).toBe(1)
    expect(decidingRefusal(t, [r(800), ok, r(0)], 429)).toBe(2)
    expect(decidingRefusal(t, [r(5000), r(5000), ok], 429)).toBe(0)
  })
})
