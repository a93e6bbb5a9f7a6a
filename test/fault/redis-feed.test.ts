/**
 * @module test/fault/redis-feed
 *
 * The Redis pub/sub change feed across a Redis crash, on a private redis-server: instances A
 * and B keep keys in PostgreSQL (which the crash leaves alone) and talk through the feed;
 * ten-minute key caches, `cache.feedDownTtlMs` of one second, a manual clock. A key revoked on
 * A while Redis is down never reaches B as a message; B serves its cached entry only until it
 * is one second old, then reads the key again and refuses it. Once Redis is back and B has
 * resubscribed, a key revoked on A is refused by B at once, although B's clock never moved.
 * And a revocation whose PUBLISH fails while only A's connection is down (B keeps listening,
 * so it keeps trusting its cache) is sent again once A has reconnected.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import {
  createTollbooth,
  type Decision,
  manualClock,
  type Storage,
  type Tollbooth,
} from '../../src/internal.js'
import { request, until } from '../support/core.js'
import { privateStores } from '../support/fault.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { FAIL_FAST, ready } from '../support/redis.js'
import type { RedisServer } from './redis-server.js'

const SECRET = 'redis-feed-fault-secret-redis-feed-fault'
const T0 = Date.UTC(2026, 0, 15, 12)

const servers = privateStores()

describe.skipIf(skipPostgres)('Redis change feed across a Redis crash', () => {
  let redis: RedisServer
  servers.withRedis(async (server) => {
    redis = server
  })
  const storages: Storage[] = []
  let pool: pg.Pool
  let schema = ''
  let drop: () => Promise<void> = async () => {}

  beforeAll(async () => {
    pool = newPool(6)
    const f = await freshSchema(pool)
    schema = f.schema
    drop = f.drop
  })

  afterAll(async () => {
    for (const s of storages) await s.close?.()
    await drop()
    await pool?.end()
  })

  const allowed = async (d: Promise<Decision>) => (await d).allowed
  /** Resolves with the ms until `tb` refuses `key` (its cached entry dropped by the feed). */
  const refusedWithin = (tb: Tollbooth, key: string, ms: number) =>
    until(async () => !(await allowed(tb.authenticate(request(key)))), ms)

  /**
   * An instance with its own Redis client (reconnecting every `retryMs`) and PostgreSQL keys;
   * `states` records its feed's `onStatus` reports.
   */
  const make = async (clock: ReturnType<typeof manualClock>, retryMs = 50) => {
    const client = servers.client(redis, { ...FAIL_FAST, retryStrategy: () => retryMs })
    await ready(client)
    const feed = redisStorage({ client, keyPrefix: 'feed:' })
    storages.push(feed)
    const keys = postgresStorage({ pool, schema })
    storages.push(keys)
    const storage: Storage = { ...keys, changes: feed.changes! }
    const tb = createTollbooth({
      secret: SECRET,
      clock,
      storage,
      cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100, feedDownTtlMs: 1000 },
      failedAuth: false,
      onError: () => {},
    })
    const states: boolean[] = []
    const messages: string[] = []
    await storage.changes!.subscribe((m) => messages.push(m), {
      onStatus: (live) => states.push(live),
    })
    return { tb, client, states, messages }
  }

  it('shortens the cache bound while down and drops revoked keys once resubscribed', async () => {
    const clock = manualClock(T0)
    const a = await make(clock)
    const b = await make(clock)
    const states = b.states
    try {
      const heard = b.messages.length
      const one = await a.tb.keys.create({ accountId: 'acct_rfeed', name: 'one' })
      // B has the creation's message first: a read of the key that the message overtakes is
      // not cached (it may be older than the change the message stands for).
      await until(() => b.messages.length > heard, 5000)
      expect(await allowed(b.tb.authenticate(request(one.key)))).toBe(true)

      // 1. Redis killed: a revocation made now is never delivered to B.
      await redis.kill()
      await until(() => states.includes(false), 5000)
      await a.tb.keys.revoke(one.record.id)
      expect(await allowed(b.tb.authenticate(request(one.key)))).toBe(true)
      // One second after B cached it, B no longer trusts its entry, reads it again: revoked.
      clock.advance(1000)
      expect(await b.tb.authenticate(request(one.key))).toMatchObject({ status: 401 })

      // 2. Redis back: B resubscribes by itself and hears revocations at once again.
      await redis.restart()
      const resubscribedMs = await until(() => states.at(-1) === true, 10_000)
      const two = await a.tb.keys.create({ accountId: 'acct_rfeed', name: 'two' })
      expect(await allowed(b.tb.authenticate(request(two.key)))).toBe(true)
      await a.tb.keys.revoke(two.record.id)
      const refusedMs = await refusedWithin(b.tb, two.key, 5000)
      console.log(
        `redis feed: resubscribed ${resubscribedMs} ms after the restart, revocation refused by B ${refusedMs} ms after it`,
      )
    } finally {
      await Promise.all([a.tb.close(), b.tb.close()])
    }
  }, 60_000)

  it('delivers a revocation published while the publishing connection was down', async () => {
    // A's client is cut off alone (B's subscriber stays live, so B keeps trusting its cache)
    // and reconnects only after 300 ms: the revocation's PUBLISH fails, and must be sent again.
    const clock = manualClock(T0)
    const a = await make(clock, 300)
    const b = await make(clock)
    const admin = servers.client(redis, FAIL_FAST)
    const states = b.states
    try {
      const key = await a.tb.keys.create({ accountId: 'acct_rfeed2', name: 'cut' })
      expect(await allowed(b.tb.authenticate(request(key.key)))).toBe(true)
      const id = await a.client.client('ID')
      const gone = new Promise((r) => a.client.once('close', r))
      await admin.client('KILL', 'ID', String(id))
      await gone
      await a.tb.keys.revoke(key.record.id)
      const refusedMs = await refusedWithin(b.tb, key.key, 5000)
      expect(states.includes(false)).toBe(false)
      // Sent again once, then nothing left waiting.
      await until(() => a.tb.stats().feedRetries.pending === 0, 2000)
      expect(a.tb.stats().feedRetries).toEqual({ pending: 0, waiting: 0, retried: 1, dropped: 0 })
      console.log(`redis feed: revocation refused by B ${refusedMs} ms after it`)
    } finally {
      await Promise.all([a.tb.close(), b.tb.close()])
    }
  }, 60_000)
})
