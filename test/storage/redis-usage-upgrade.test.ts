/**
 * @module test/storage/redis-usage-upgrade
 *
 * Redis usage recorded by earlier versions, all under the one tag `{usage}`:
 * `upgradeUsageTotals()` moves it under each account's tag, counting in the totals the events of
 * a version without totals, once however often it runs, leaves events of this version alone,
 * deletes the old keys (but for nothing), and the moved events' logs show `ttfbMs` and `code`
 * as null.
 */

import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStorage, upgradeUsageTotals } from '../../adapters/redis/index.js'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import { ConfigError, type UsageEvent } from '../../src/index.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const client = await connectRedis()

type OldEvent = Pick<UsageEvent, 'id' | 'accountId' | 'keyId' | 'time' | 'units' | 'category'>

/**
 * An event as versions before December 2026 stored it, by hand with their key names: its JSON
 * and its three index entries, then one request and its units in each of `totals` (`h:<hour>`,
 * `d:<day>`), under its category.
 */
async function writeOld(
  redis: Redis,
  prefix: string,
  e: OldEvent,
  totals: readonly string[] = [],
): Promise<void> {
  await redis.hset(`${prefix}{usage}:ev`, e.id, JSON.stringify(e))
  await redis.zadd(`${prefix}{usage}:all`, e.time, e.id)
  await redis.zadd(`${prefix}{usage}:acct:${e.accountId}`, e.time, e.id)
  await redis.zadd(`${prefix}{usage}:key:${e.keyId}`, e.time, e.id)
  const cat = e.category ?? 'uncategorized'
  for (const total of totals) {
    await redis.hincrby(`${prefix}{usage}:agg:${e.accountId}:${total}`, `r:${cat}`, 1)
    await redis.hincrbyfloat(`${prefix}{usage}:agg:${e.accountId}:${total}`, `u:${cat}`, e.units)
  }
}

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
    for (const e of old) await writeOld(redis, prefix, e)
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
    // Until the upgrade, only the event of this version shows.
    expect((await storage.usage.logs('key_old', { limit: 500 })).data).toEqual([fresh])

    expect(await upgradeUsageTotals({ client: redis, keyPrefix: prefix })).toBe(450)
    expect(await upgradeUsageTotals({ client: redis, keyPrefix: prefix })).toBe(0)
    // Nothing of the old layout is left: only the new layout's small index is under {usage}.
    expect((await redis.keys(`${prefix}{usage}*`)).sort()).toEqual([
      `${prefix}{usage}:accts`,
      `${prefix}{usage}:keys`,
    ])
    const page = await storage.usage.logs('key_old', { limit: 1 })
    expect(page.data[0]).toMatchObject({ ttfbMs: null, code: null })
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
    // An instance of the previous version still recording during a rolling upgrade: a second
    // run moves what it wrote.
    const late = makeEvent({ accountId, keyId: 'key_old', time: t0 + 7, units: 1, category: 'stt' })
    await writeOld(redis, prefix, late, [
      `h:${t0 - (t0 % 3_600_000)}`,
      `d:${t0 - (t0 % 86_400_000)}`,
    ])
    expect(await upgradeUsageTotals({ client: redis, keyPrefix: prefix })).toBe(1)
    expect(await redis.keys(`${prefix}{usage}:agg:*`)).toEqual([])
    // (the event of this version at t0 + 5 was pruned above)
    expect((await storage.usage.summarize(accountId, ...month)).byCategory['stt']).toEqual({
      requests: 1,
      units: 1,
    })
    expect(await storage.usage.prune(t0 + 8)).toBe(1)
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
    for (const e of old) await writeOld(redis, prefix, e, [`h:${hour}`, `d:${day}`])
    await storage.usage.record([
      makeEvent({ accountId, time: hour + 10_000, units: 5, keyCategory: 'production' }),
      makeEvent({ accountId, time: hour + 11_000, units: 1, keyCategory: 'uncategorized' }),
    ])
    // As if an upgrade had stopped half-way: two of the old events already recorded under
    // their account, still in the old layout. Moving them again counts them once.
    await storage.usage.record(old.slice(0, 2).map((e) => ({ ...e, keyCategory: null })))
    expect(await upgradeUsageTotals({ client: redis, keyPrefix: prefix })).toBe(6)
    // The old totals left with their events.
    expect(await redis.keys(`${prefix}{usage}:agg:*`)).toEqual([])
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
