/**
 * @module test/storage/key-feed-race
 *
 * A key revoked on one instance while another instance's read of it is on its way. Instance B
 * misses its cache and reads the key from Redis; the store answers with the key as it was, but
 * the answer reaches B only after instance A has revoked the key and B has taken A's
 * change-feed message (which dropped nothing: B had nothing cached yet). B must not then cache
 * the record it read: cached, the revoked key stayed valid on B for its whole `cache.ttlMs`.
 *
 * B's store is the real Redis store; only the answer of its key read is held back until the
 * test lets it go (and the feed's messages are observed as they arrive), to make that order.
 */

import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type KeyRecord, type Storage } from '../../src/index.js'
import { request } from '../support/core.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const SECRET = 'key-feed-race-secret-key-feed-race-secret'
const redis = await connectRedis()

describe.skipIf(!redis)('a key revoked while another instance reads it', () => {
  const prefix = testPrefix('keyrace')
  const storages: Storage[] = []
  afterAll(async () => {
    for (const s of storages) await s.close?.()
    await deletePrefix(redis as Redis, prefix)
    await (redis as Redis).quit()
  })

  it('is not cached by that read: the next request on B is refused', async () => {
    const a = redisStorage({ client: redis!, keyPrefix: prefix })
    const real = redisStorage({ client: redis!, keyPrefix: prefix })
    storages.push(a, real)

    // B's store: its key reads answer when `release` is called; its feed reports each message.
    let held: Promise<void> | null = null
    let release = () => {}
    let readStarted = () => {}
    const started = new Promise<void>((r) => (readStarted = r))
    const keys = Object.create(real.keys) as Storage['keys']
    keys.getByHash = async (hash: string): Promise<KeyRecord | null> => {
      const record = await real.keys.getByHash(hash)
      if (held) {
        readStarted()
        await held
      }
      return record
    }
    const seen: string[] = []
    const changes = Object.create(real.changes!) as NonNullable<Storage['changes']>
    changes.subscribe = (listener, options) =>
      real.changes!.subscribe((message) => {
        listener(message)
        seen.push(message)
      }, options)
    const b = Object.assign(Object.create(real), { keys, changes }) as Storage

    const options = {
      secret: SECRET,
      cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100 },
      failedAuth: false as const,
    }
    const tbA = createTollbooth({ ...options, storage: a })
    const tbB = createTollbooth({ ...options, storage: b })
    try {
      // B listens before the race: a message of A's store reaches it.
      const deadline = Date.now() + 3000
      while (!seen.includes('warm-up') && Date.now() < deadline) {
        await a.changes!.publish('warm-up')
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(seen, 'B listens to the feed').toContain('warm-up')
      const { key, record } = await tbA.keys.create({ accountId: 'acct_race', name: 'k' })
      held = new Promise<void>((r) => (release = r))
      const first = tbB.authenticate(request(key))
      await started // B's read has its (valid) record, not yet handed to B
      const before = seen.length
      await tbA.keys.revoke(record.id)
      const by = Date.now() + 3000
      while (seen.length === before && Date.now() < by) await new Promise((r) => setTimeout(r, 5))
      expect(seen.length, 'B took the revocation message').toBeGreaterThan(before)
      held = null
      release()
      // The request that began before the revocation is served on what it read.
      expect((await first).allowed).toBe(true)
      // The next one is not served from a cache of that read.
      const next = await tbB.authenticate(request(key))
      expect(next.allowed).toBe(false)
      if (!next.allowed) expect(next.status).toBe(401)
    } finally {
      release()
      await tbA.close()
      await tbB.close().catch(() => {})
    }
  })
})
