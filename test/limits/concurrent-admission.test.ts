/**
 * @module test/limits/concurrent-admission
 *
 * 1,000 `authenticate` calls started at once on one key: each limit of 100 lets exactly 100
 * through, because admission is one atomic step over every limit.
 */

import { describe, expect, it } from 'vitest'
import type { Decision } from '../../src/index.js'
import { MINUTE, req, setup } from './setup.js'

async function flood(tb: ReturnType<typeof setup>['tb'], keys: string[], n = 1000) {
  const ds: Decision[] = await Promise.all(
    Array.from({ length: n }, (_, i) => tb.authenticate(req(keys[i % keys.length]!))),
  )
  return ds.filter((d) => d.allowed).length
}

describe('1,000 concurrent admissions on one key', () => {
  it('admits exactly 100 under a total quota of 100', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { total: 100 } },
    })
    expect(await flood(tb, [key])).toBe(100)
    expect(await flood(tb, [key], 50)).toBe(0)
  })

  it('admits exactly 100 under a rate limit of 100 per minute', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 100, windowMs: MINUTE }] },
    })
    expect(await flood(tb, [key])).toBe(100)
  })

  it('admits exactly 100 under a concurrency cap of 100', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 100 } })
    expect(await flood(tb, [key])).toBe(100)
  })

  it('admits exactly 100 under a plan limit of 100 per minute shared by four keys', async () => {
    const { tb } = setup({
      plans: { pro: { rateLimits: [{ limit: 100, windowMs: MINUTE }] } },
      defaultTier: 'pro',
    })
    const keys = await Promise.all(
      [1, 2, 3, 4].map(async () => (await tb.keys.create({ accountId: 'acct_1' })).key),
    )
    expect(await flood(tb, keys)).toBe(100)
  })

  it('admits exactly the tightest of several limits and counts only the admitted', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: {
        quotas: { daily: 150 },
        rateLimits: [{ limit: 100, windowMs: MINUTE }],
        concurrency: 500,
      },
    })
    expect(await flood(tb, [key])).toBe(100)
    clock.advance(MINUTE)
    // The 900 refused requests used none of the daily quota: 50 of it are left.
    expect(await flood(tb, [key])).toBe(50)
  })
})
