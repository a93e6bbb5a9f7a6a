/**
 * @module test/storage/redis-usage-upgrade
 *
 * Redis events recorded by a version without usage totals: `upgradeUsageTotals()` adds them
 * to the totals summaries read, once however often it runs, leaves events of this version
 * alone, and their logs show `ttfbMs` and `code` as null before and after.
 */

import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStorage, upgradeUsageTotals } from '../../adapters/redis/index.js'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import { ConfigError } from '../../src/index.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const client = await connectRedis()

describe.skipIf(!client)('upgradeUsageTotals on Redis', () => {
  let redis: Redis
  const prefix = testPrefix('upgrade')
  const own = testPrefix('upgrade-key-category')
  beforeAll(() => {
    redis = client!
  })
  afterAll(async () => {
    await deletePrefix(redis, prefix)
    await deletePrefix(redis, own)
    redis.disconnect()
  })

  it('totals events of the previous version once, and only those', async () => {
    const storage = redisStorage({ client: redis, keyPrefix: prefix })
    const accountId = 'acct_old'
    const t0 = Date.UTC(2026, 0, 5, 10)
    // As the previous version stored them: the event's JSON (without ttfbMs and code) and its
    // three index entries, no totals.
    const old = Array.from({ length: 450 }, (_, i) => {
      const {
        ttfbMs: _t,
        code: _c,
        ...e
      } = makeEvent({
        accountId,
        keyId: 'key_old',
        time: t0 + i * 60_000,
        units: (i % 4) / 2,
        category: i % 2 ? 'tts' : null,
      })
      return e
    })
    for (const e of old) {
      await redis.hset(`${prefix}{usage}:ev`, e.id, JSON.stringify(e))
      await redis.zadd(`${prefix}{usage}:all`, e.time, e.id)
      await redis.zadd(`${prefix}{usage}:acct:${accountId}`, e.time, e.id)
      await redis.zadd(`${prefix}{usage}:key:${e.keyId}`, e.time, e.id)
    }
    const fresh = makeEvent({
      accountId,
      keyId: 'key_old',
      time: t0 + 5,
      units: 7,
      category: 'stt',
    })
    await storage.usage.record([fresh])
    const month = [Date.UTC(2026, 0, 1), Date.UTC(2026, 1, 1)] as const
    expect((await storage.usage.summarize(accountId, ...month)).requests).toBe(1)
    const page = await storage.usage.logs('key_old', { limit: 1 })
    expect(page.data[0]).toMatchObject({ ttfbMs: null, code: null })

    expect(await upgradeUsageTotals({ client: redis, keyPrefix: prefix })).toBe(450)
    expect(await upgradeUsageTotals({ client: redis, keyPrefix: prefix })).toBe(0)
    const units = old.reduce((a, e) => a + e.units, 0)
    const tts = old.filter((e) => e.category === 'tts')
    expect(await storage.usage.summarize(accountId, ...month)).toEqual({
      requests: 451,
      units: units + 7,
      byCategory: {
        tts: { requests: tts.length, units: tts.reduce((a, e) => a + e.units, 0) },
        uncategorized: {
          requests: 450 - tts.length,
          units: units - tts.reduce((a, e) => a + e.units, 0),
        },
        stt: { requests: 1, units: 7 },
      },
      byKeyCategory: { uncategorized: { requests: 451, units: units + 7 } },
    })
    expect((await storage.usage.logs('key_old', { limit: 500 })).data.at(-1)).toMatchObject({
      keyCategory: null,
    })
    // Pruned later, an upgraded event leaves its totals as any other.
    expect(await storage.usage.prune(t0 + 100 * 60_000)).toBe(101)
    expect((await storage.usage.summarize(accountId, ...month)).requests).toBe(350)
  })

  it('counts totals of the version before key categories under uncategorized keys', async () => {
    // A prefix of its own: the prune below would take the other test's events too.
    const prefix = own
    const storage = redisStorage({ client: redis, keyPrefix: prefix })
    const accountId = 'acct_prev'
    const hour = Date.UTC(2026, 2, 3, 10)
    const day = Date.UTC(2026, 2, 3)
    // As the previous version stored them: events without keyCategory, totals by category.
    const old = Array.from({ length: 6 }, (_, i) => {
      const { keyCategory: _k, ...e } = makeEvent({
        accountId,
        keyId: 'key_prev',
        time: hour + i * 1000,
        units: 2,
        category: i % 2 ? 'tts' : null,
      })
      return e
    })
    for (const e of old) {
      await redis.hset(`${prefix}{usage}:ev`, e.id, JSON.stringify(e))
      await redis.zadd(`${prefix}{usage}:all`, e.time, e.id)
      await redis.zadd(`${prefix}{usage}:acct:${accountId}`, e.time, e.id)
      await redis.zadd(`${prefix}{usage}:key:${e.keyId}`, e.time, e.id)
      for (const agg of [`h:${hour}`, `d:${day}`]) {
        const cat = e.category ?? 'uncategorized'
        await redis.hincrby(`${prefix}{usage}:agg:${accountId}:${agg}`, `r:${cat}`, 1)
        await redis.hincrbyfloat(`${prefix}{usage}:agg:${accountId}:${agg}`, `u:${cat}`, e.units)
      }
    }
    await storage.usage.record([
      makeEvent({ accountId, time: hour + 10_000, units: 5, keyCategory: 'production' }),
      makeEvent({ accountId, time: hour + 11_000, units: 1, keyCategory: 'uncategorized' }),
    ])
    const want = {
      requests: 8,
      units: 18,
      byCategory: { tts: { requests: 5, units: 12 }, uncategorized: { requests: 3, units: 6 } },
      byKeyCategory: {
        production: { requests: 1, units: 5 },
        uncategorized: { requests: 7, units: 13 },
      },
    }
    // From day totals, hour totals, and the events themselves (off hour boundaries).
    expect(await storage.usage.summarize(accountId, day, day + 86_400_000)).toEqual(want)
    expect(await storage.usage.summarize(accountId, hour, hour + 3_600_000)).toEqual(want)
    expect(await storage.usage.summarize(accountId, hour, hour + 20_000)).toEqual(want)
    expect(
      await storage.usage.summarize(accountId, hour, hour + 3_600_000, {
        keyCategory: 'production',
      }),
    ).toEqual({
      requests: 1,
      units: 5,
      byCategory: { tts: { requests: 1, units: 5 } },
      byKeyCategory: { production: { requests: 1, units: 5 } },
    })
    // The old events leave their totals when pruned.
    expect(await storage.usage.prune(hour + 6000)).toBe(6)
    expect(await storage.usage.summarize(accountId, day, day + 86_400_000)).toMatchObject({
      requests: 2,
      byKeyCategory: {
        production: { requests: 1, units: 5 },
        uncategorized: { requests: 1, units: 1 },
      },
    })
  })

  it('refuses a bad client or prefix by name', async () => {
    await expect(upgradeUsageTotals({ client: {} as never })).rejects.toBeInstanceOf(ConfigError)
    await expect(upgradeUsageTotals({ client: redis, keyPrefix: 'a{b}' })).rejects.toThrow(
      /keyPrefix/,
    )
  })
})
