/**
 * @module test/fault/redis-feed
 *
 * The Redis pub/sub change feed across a Redis crash, on a private redis-server: instances A
 * and B keep keys in PostgreSQL (which the crash leaves alone) and talk through the feed;
 * ten-minute key caches, `cache.feedDownTtlMs` of one second, a manual clock. A key revoked on
 * A while Redis is down never reaches B as a message; B serves its cached entry only until it
 * is one second old, then reads the key again and refuses it. Once Redis is back and B has
 * resubscribed, a key revoked on A is refused by B at once, although B's clock never moved.
 */

import { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Decision, manualClock, type Storage } from '../../src/internal.js'
import { request, until } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { FAIL_FAST, ready } from '../support/redis.js'
import { type RedisServer, startRedisServer } from './redis-server.js'

const SECRET = 'redis-feed-fault-secret-redis-feed-fault'
const T0 = Date.UTC(2026, 0, 15, 12)

let server: RedisServer | null = null
try {
  server = await startRedisServer()
} catch (err) {
  if (process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1') throw err
}

describe.skipIf(!server || skipPostgres)('Redis change feed across a Redis crash', () => {
  const redis = server!
  const clients: Redis[] = []
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
    for (const c of clients) c.disconnect()
    await redis.kill()
    await drop()
    await pool?.end()
  })

  it('shortens the cache bound while down and drops revoked keys once resubscribed', async () => {
    const clock = manualClock(T0)
    const make = async () => {
      const client = new Redis(`redis://127.0.0.1:${redis.port}`, {
        ...FAIL_FAST,
        retryStrategy: () => 50,
      })
      client.on('error', () => {})
      clients.push(client)
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
      return { tb, storage }
    }
    const a = await make()
    const b = await make()
    const states: boolean[] = []
    await b.storage.changes!.subscribe(() => {}, { onStatus: (live) => states.push(live) })
    const allowed = async (d: Promise<Decision>) => (await d).allowed
    try {
      const one = await a.tb.keys.create({ accountId: 'acct_rfeed', name: 'one' })
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
      const refusedMs = await until(
        async () => !(await allowed(b.tb.authenticate(request(two.key)))),
        5000,
      )
      console.log(
        `redis feed: resubscribed ${resubscribedMs} ms after the restart, revocation refused by B ${refusedMs} ms after it`,
      )
    } finally {
      await Promise.all([a.tb.close(), b.tb.close()])
    }
  }, 60_000)
})
