/**
 * @module test/storage/redis-keys
 *
 * The Redis key layout: each record a HASH under a bucket of its hash (`{kh:<b>}`), the id index
 * under a bucket of the id (`{ki:<b>}`), each account's ids under `{u:<accountId>}`, and nothing
 * under `{keys}`. An index entry whose record is gone is skipped and replaced. Records of the
 * layout before December 2026 (all under `{keys}`, written here by hand with its key names) are
 * found by hash, by id and by account, moved as they are read, and `upgradeKeyRecords()` moves
 * all of them.
 */

import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage, upgradeKeyRecords } from '../../adapters/redis/index.js'
import { keyId, makeKey, newAccountId } from '../../adapters/testing/fixtures.js'
import { ConfigError, type KeyRecord } from '../../src/internal.js'
import { connectRedis, prefixPerTest } from '../support/redis.js'

const client = await connectRedis()

/** FNV-1a (32 bits) mod 256, written out again here so a changed bucket function shows. */
function bucket(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % 256
}

/** A key as versions before December 2026 stored it, by hand with their key names. */
async function writeOld(redis: Redis, prefix: string, k: KeyRecord): Promise<void> {
  const { lastUsedAt, ...rest } = k
  await redis.hset(`${prefix}{keys}:rec`, k.id, JSON.stringify(rest))
  if (lastUsedAt !== null) await redis.hset(`${prefix}{keys}:used`, k.id, String(lastUsedAt))
  await redis.hset(`${prefix}{keys}:hash`, k.hash, k.id)
  await redis.zadd(`${prefix}{keys}:acct:${k.accountId}`, 0, k.id)
}

describe.skipIf(!client)('redis key layout', () => {
  const redis = client!
  const newPrefix = prefixPerTest(redis)
  afterAll(() => redis.quit())

  it('creates, finds by hash and id, lists, revokes and deletes a key in its own buckets', async () => {
    const prefix = newPrefix('rkeys')
    const { keys } = redisStorage({ client: redis, keyPrefix: prefix })
    const accountId = newAccountId()
    const k = makeKey({ accountId, lastUsedAt: 1_767_225_600_500 })
    const other = makeKey({ accountId })
    await keys.insert(k)
    await keys.insert(other)

    const record = `${prefix}{kh:${bucket(k.hash)}}:k:${k.hash}`
    const { lastUsedAt: _, ...rest } = k
    expect(await redis.hgetall(record)).toEqual({
      j: JSON.stringify(rest),
      u: '1767225600500',
    })
    expect(await redis.hget(`${prefix}{ki:${bucket(k.id)}}:id`, k.id)).toBe(k.hash)
    expect(await redis.zrange(`${prefix}{u:${accountId}}:keys`, 0, -1)).toEqual([k.id, other.id])
    expect(await redis.keys(`${prefix}{keys}*`)).toEqual([])

    expect(await keys.getByHash(k.hash)).toEqual(k)
    expect(await keys.get(k.id)).toEqual(k)
    expect((await keys.list(accountId, { limit: 10 })).data).toEqual([other, k])

    const revokedAt = 1_767_225_700_000
    expect(await keys.update(k.id, { revokedAt })).toEqual({ ...k, revokedAt })
    expect((await keys.getByHash(k.hash))?.revokedAt).toBe(revokedAt)
    expect((await keys.list(accountId, { limit: 10 })).data).toEqual([other])
    expect((await keys.list(accountId, { limit: 10, includeRevoked: true })).data).toHaveLength(2)

    expect(await keys.delete(k.id)).toBe(true)
    expect(await redis.exists(record)).toBe(0)
    expect(await redis.hexists(`${prefix}{ki:${bucket(k.id)}}:id`, k.id)).toBe(0)
    expect(await redis.zrange(`${prefix}{u:${accountId}}:keys`, 0, -1)).toEqual([other.id])
    expect(await keys.get(k.id)).toBeNull()
    expect(await keys.getByHash(k.hash)).toBeNull()
  })

  it('skips an index entry whose record is gone, and gives its id to a new key', async () => {
    const prefix = newPrefix('rkeys-stale')
    const { keys } = redisStorage({ client: redis, keyPrefix: prefix })
    const accountId = newAccountId()
    const live = makeKey({ accountId })
    await keys.insert(live)
    // As a delete that stopped after the record: the index entries are left.
    const gone = makeKey({ accountId })
    await redis.hset(`${prefix}{ki:${bucket(gone.id)}}:id`, gone.id, gone.hash)
    await redis.zadd(`${prefix}{u:${accountId}}:keys`, 0, gone.id)
    expect(await keys.get(gone.id)).toBeNull()
    expect((await keys.list(accountId, { limit: 10 })).data).toEqual([live])
    expect(await keys.delete(gone.id)).toBe(false)
    const again = makeKey({ id: gone.id, accountId })
    await keys.insert(again)
    expect(await keys.get(gone.id)).toEqual(again)
    // A live key's id is still refused.
    await expect(keys.insert(makeKey({ id: live.id, accountId }))).rejects.toThrow(/DUPLICATE/)
  })

  it('finds keys of the old {keys} layout by hash, id and account, and moves them', async () => {
    const prefix = newPrefix('rkeys-old')
    const accountId = newAccountId()
    const old = Array.from({ length: 5 }, (_, i) =>
      makeKey({ accountId, lastUsedAt: i % 2 ? 1_767_225_600_000 + i : null }),
    )
    for (const k of old) await writeOld(redis, prefix, k)
    const { keys } = redisStorage({ client: redis, keyPrefix: prefix })
    const oldRec = `${prefix}{keys}:rec`
    const movedTo = (k: KeyRecord) => `${prefix}{kh:${bucket(k.hash)}}:k:${k.hash}`

    expect(await keys.getByHash(old[0]!.hash)).toEqual(old[0])
    expect(await redis.hexists(oldRec, old[0]!.id)).toBe(0)
    expect(await redis.exists(movedTo(old[0]!))).toBe(1)

    expect(await keys.get(old[1]!.id)).toEqual(old[1])
    expect(await redis.hexists(oldRec, old[1]!.id)).toBe(0)

    // lastUsedAt of a key still in the old layout lands there.
    await keys.touch([{ id: old[2]!.id, lastUsedAt: 1_767_300_000_000 }])
    expect(await redis.hget(`${prefix}{keys}:used`, old[2]!.id)).toBe('1767300000000')
    old[2]!.lastUsedAt = 1_767_300_000_000

    // An update of an old key moves it, then patches it.
    expect(await keys.update(old[3]!.id, { name: 'Renamed' })).toEqual({
      ...old[3],
      name: 'Renamed',
    })
    old[3]!.name = 'Renamed'

    // A list moves the account's keys left, then lists them all.
    const listed = await keys.list(accountId, { limit: 10 })
    expect(listed.data).toEqual(old.slice().reverse())
    expect(await redis.keys(`${prefix}{keys}*`)).toEqual([])
    for (const k of old) {
      expect(await keys.getByHash(k.hash)).toEqual(k)
      expect(await keys.get(k.id)).toEqual(k)
    }
  })

  it('upgradeKeyRecords moves every old record, in batches, once', async () => {
    const prefix = newPrefix('rkeys-upgrade')
    const accounts = Array.from({ length: 5 }, () => newAccountId())
    const old = Array.from({ length: 250 }, (_, i) =>
      makeKey({
        accountId: accounts[i % 5]!,
        lastUsedAt: i % 3 ? 1_767_225_600_000 + i : null,
        revokedAt: i % 7 ? null : 1_767_225_700_000,
      }),
    )
    for (const k of old) await writeOld(redis, prefix, k)
    // One key already in the new layout (moved by a read) stays as it is.
    const { keys } = redisStorage({ client: redis, keyPrefix: prefix })
    expect(await keys.getByHash(old[0]!.hash)).toEqual(old[0])

    expect(await upgradeKeyRecords({ client: redis, keyPrefix: prefix })).toBe(249)
    expect(await redis.keys(`${prefix}{keys}*`)).toEqual([])
    expect(await upgradeKeyRecords({ client: redis, keyPrefix: prefix })).toBe(0)

    const fresh = redisStorage({ client: redis, keyPrefix: prefix }).keys
    for (const k of old) {
      expect(await fresh.getByHash(k.hash)).toEqual(k)
      expect(await fresh.get(k.id)).toEqual(k)
    }
    for (const a of accounts) {
      const all = await fresh.list(a, { limit: 100, includeRevoked: true })
      expect(all.data.map((k) => k.id)).toEqual(
        old
          .filter((k) => k.accountId === a)
          .map((k) => k.id)
          .reverse(),
      )
    }
    expect(await fresh.get(keyId(99_999))).toBeNull()
  })

  it('upgradeKeyRecords throws a ConfigError naming a bad option', async () => {
    await expect(upgradeKeyRecords({ client: redis, keyPrefix: 'a{b}' })).rejects.toThrow(
      ConfigError,
    )
    await expect(upgradeKeyRecords({ client: {} as never })).rejects.toThrow(/client/)
  })
})
