/**
 * @module test/limits/memory
 *
 * Memory per key stays bounded in the memory store: counters of keys that went idle are
 * swept as traffic goes on, while counters that still count are kept.
 */

import { describe, expect, it } from 'vitest'
import { DAY, HOUR, MINUTE, req, setup } from './setup.js'

const fourLimits = {
  quotas: { daily: 100, total: 1_000 },
  rateLimits: [{ limit: 60, windowMs: MINUTE }],
  concurrency: 2,
}

describe('memory store counters', () => {
  it('sweeps the counters of idle keys as other traffic goes on', async () => {
    const { tb, clock, storage } = setup()
    for (let i = 0; i < 200; i++) {
      const { key } = await tb.keys.create({
        accountId: `acct_${i}`,
        limits: {
          quotas: { daily: 100 },
          rateLimits: [{ limit: 60, windowMs: MINUTE }],
          concurrency: 2,
        },
      })
      const d = await tb.authenticate(req(key))
      expect(d.allowed).toBe(true)
      await tb.settle(d, { status: 200 })
    }
    // Daily quota and rate limit stay; the released concurrency slots may already be gone.
    expect(storage.counters.size).toBeGreaterThanOrEqual(400)
    clock.advance(DAY + HOUR)
    const { key: busy } = await tb.keys.create({ accountId: 'busy', limits: fourLimits })
    for (let i = 0; i < 150; i++) await tb.settle(await tb.authenticate(req(busy)), { status: 200 })
    // Only the busy key's quota counters (daily, total) and rate limit remain.
    expect(storage.counters.size).toBeLessThanOrEqual(3)
  })

  it('keeps the counters that still count: a daily quota used 23 hours ago still refuses', async () => {
    const { tb, clock, storage } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { daily: 1 } } })
    await tb.authenticate(req(key))
    clock.advance(23 * HOUR)
    const { key: busy } = await tb.keys.create({ accountId: 'busy', limits: fourLimits })
    for (let i = 0; i < 300; i++) await tb.settle(await tb.authenticate(req(busy)), { status: 200 })
    expect(storage.counters.sweep(clock.now())).toBe(0)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
  })

  it('keeps a total quota for good, however long the key is idle', async () => {
    const { tb, clock, storage } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { total: 1 } } })
    await tb.authenticate(req(key))
    clock.advance(400 * DAY)
    storage.counters.sweep(clock.now())
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
  })

  it('drops every idle counter at once with sweep()', async () => {
    const { tb, clock, storage } = setup()
    for (let i = 0; i < 20; i++) {
      const { key } = await tb.keys.create({
        accountId: `acct_${i}`,
        limits: { rateLimits: [{ limit: 10, windowMs: 1000 }] },
      })
      await tb.authenticate(req(key))
    }
    expect(storage.counters.sweep(clock.now())).toBe(0)
    clock.advance(99)
    expect(storage.counters.sweep(clock.now())).toBe(0)
    clock.advance(1)
    expect(storage.counters.sweep(clock.now())).toBe(20)
    expect(storage.counters.size).toBe(0)
  })
})
