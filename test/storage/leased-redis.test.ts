/**
 * @module test/storage/leased-redis
 *
 * Leases over a real Redis (`REDIS_URL`): four instances, each its own `redisStorage` and
 * `leasedCounters` over the same keys, admitting concurrently (64 requests in flight per
 * instance) far beyond a daily quota and a credit balance. Admitted stays at or under the
 * limit and within the stated bound of it; credits are never overspent and, once the leases
 * are closed, Redis holds exactly the charges; most admissions make no Redis call.
 */

import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { leasedCounters } from '../../src/storage/leased-counters.js'
import type { Check } from '../../src/storage/types.js'
import { dailyQuota, LEASE, T0 } from '../support/leases.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const client = await connectRedis()
const N = 4

describe.skipIf(!client)('leases over Redis', () => {
  const prefix = testPrefix('lease')
  afterAll(async () => {
    if (client) {
      await deletePrefix(client, prefix)
      await client.quit()
    }
  })

  const instances = () =>
    Array.from({ length: N }, () => {
      const storage = redisStorage({ client: client!, keyPrefix: prefix })
      return {
        storage,
        counters: leasedCounters(storage.counters, LEASE),
      }
    })

  it('a daily quota: admitted never above the limit, at most one lease per instance short of it', async () => {
    const limit = 20_000
    const quota = dailyQuota(1, { key: '{acct1}:k:key1:q:daily', limit })
    const all = instances()
    let admitted = 0
    // 40,000 requests over 400 ms of the injected clock, 64 in flight per instance.
    for (let ms = 0; ms < 400; ms++) {
      const now = T0 + ms
      await Promise.all(
        all.map(async ({ counters }) => {
          const rs = await Promise.all(
            Array.from({ length: 25 }, () => counters.consume([quota], now)),
          )
          for (const r of rs) if (r.allowed) admitted++
        }),
      )
    }
    const cap = Math.floor(0.01 * limit)
    expect(admitted).toBeLessThanOrEqual(limit)
    expect(admitted).toBeGreaterThanOrEqual(limit - N * cap)
    const stats = all.map((i) => i.counters.stats())
    const local = stats.reduce((s, x) => s + x.localAdmissions, 0)
    const calls = stats.reduce((s, x) => s + x.storeCalls, 0)
    expect(local / admitted).toBeGreaterThan(0.8)
    // Once the quota is spent every request asks Redis (and is refused there); before, about
    // one call per lease.
    const refused = 40_000 - admitted
    expect(calls - refused).toBeLessThan(admitted / 10)
    for (const i of all) await i.counters.close(T0 + 400)
  })

  it('credits: never overspent, and Redis holds exactly the charges after close', async () => {
    const limit = 30_000
    const all = instances()
    let seq = 0
    let charged = 0
    let admittedAmount = 0
    for (let ms = 0; ms < 300; ms++) {
      const now = T0 + ms
      await Promise.all(
        all.map(async ({ counters }) => {
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              const holdId = `h${++seq}`
              const check: Check = {
                type: 'hold',
                key: '{acct2}:credits',
                name: 'credits',
                limit,
                amount: 3,
                holdId,
                ttlMs: 30_000,
              }
              const r = await counters.consume([check], now)
              if (!r.allowed) return
              admittedAmount += 3
              await counters.settle(
                [{ type: 'release', key: '{acct2}:credits', holdId, charge: 2 }],
                now,
              )
              charged += 2
            }),
          )
        }),
      )
    }
    const end = T0 + 300
    for (const i of all) await i.counters.close(end)
    expect(charged).toBeLessThanOrEqual(limit)
    expect(await all[0]!.storage.counters.held('{acct2}:credits', end)).toBe(charged)
    expect(all.reduce((s, i) => s + i.counters.stats().localAdmissions, 0)).toBeGreaterThan(
      (admittedAmount / 3) * 0.8,
    )
  })
  it('close with requests in flight: their credits stay held in Redis until they settle, so the others cannot spend them', async () => {
    const limit = 1000
    const [a, b] = instances()
    const key = '{acct3}:credits'
    const check = (holdId: string): Check => ({
      type: 'hold',
      key,
      name: 'credits',
      limit,
      amount: 2,
      holdId,
      ttlMs: 30_000,
    })
    let charged = 0
    const inFlight: string[] = []
    for (let i = 0; i < 200; i++) {
      const now = T0 + Math.floor(i / 10)
      expect((await a!.counters.consume([check(`h${i}`)], now)).allowed).toBe(true)
      if (i >= 100 && i % 4 === 0) inFlight.push(`h${i}`)
      else {
        await a!.counters.settle([{ type: 'release', key, holdId: `h${i}`, charge: 2 }], now)
        charged += 2
      }
    }
    expect(a!.counters.stats().localAdmissions).toBeGreaterThan(50)
    const now = T0 + 30
    await a!.counters.close(now)
    expect(await b!.storage.counters.held(key, now)).toBe(charged + 2 * inFlight.length)
    for (let i = 0; i < 1000; i++)
      if ((await b!.storage.counters.consume([check(`b${i}`)], now + 1)).allowed) {
        await b!.storage.counters.settle(
          [{ type: 'release', key, holdId: `b${i}`, charge: 2 }],
          now + 1,
        )
        charged += 2
      }
    for (const id of inFlight) {
      await a!.counters.settle([{ type: 'release', key, holdId: id, charge: 2 }], now + 2)
      charged += 2
    }
    // Before: 1,050 charged on a limit of 1,000.
    expect(await b!.storage.counters.held(key, now + 2)).toBe(charged)
    expect(charged).toBe(limit)
  })
})
