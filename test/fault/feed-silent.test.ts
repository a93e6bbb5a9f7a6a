/**
 * @module test/fault/feed-silent
 *
 * A change feed that stops delivering without knowing it: instance B's subscriber connection
 * (Redis SUBSCRIBE on a private redis-server; PostgreSQL LISTEN) goes through a TCP proxy that
 * holds back what the server sends it, with no error and no close, as a half-open connection
 * after a partition, a NAT dropping an idle flow or a pooler reassigning the server connection
 * would. Keys live in PostgreSQL; ten-minute key caches, `feedDownTtlMs` of one second, a
 * manual clock, `feedProbeMs` of 100. A key revoked on A while B's feed is silent never
 * reaches B as a message: B must notice the silence by its probe and serve its cached entry
 * only until one second old (before, it served it for the whole ten minutes). Once the proxy
 * delivers again, B hears its probe, trusts its cache in full again, and hears revocations.
 */

import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Decision, manualClock, type Storage } from '../../src/internal.js'
import { request, until } from '../support/core.js'
import { privateStores } from '../support/fault.js'
import { DATABASE_URL, freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { startProxy, type TcpProxy } from '../support/proxy.js'
import { FAIL_FAST, feedDelivered, ready } from '../support/redis.js'
import type { RedisServer } from './redis-server.js'

const SECRET = 'feed-silent-fault-secret-feed-silent-fault'
const T0 = Date.UTC(2026, 0, 15, 12)
const servers = privateStores()

describe.skipIf(skipPostgres)('a change feed gone silent (no error, no close)', () => {
  let redis: RedisServer
  const cleanups: Array<() => Promise<void> | void> = []
  let pool: pg.Pool
  let schema = ''

  beforeAll(async () => {
    pool = newPool(8)
    const f = await freshSchema(pool)
    schema = f.schema
    cleanups.push(f.drop)
  })

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c()
    await pool?.end()
  })

  const allowed = async (d: Promise<Decision>) => (await d).allowed

  /** An instance on `feed`'s change feed and PostgreSQL keys; `messages` what its feed heard. */
  const make = async (feed: Storage['changes'], clock: ReturnType<typeof manualClock>) => {
    const keys = postgresStorage({ pool, schema })
    const storage: Storage = { ...keys, changes: feed }
    const errors: unknown[] = []
    const tb = createTollbooth({
      secret: SECRET,
      clock,
      storage,
      cache: {
        ttlMs: 600_000,
        negativeTtlMs: 600_000,
        max: 100,
        feedDownTtlMs: 1000,
        feedProbeMs: 100,
      },
      failedAuth: false,
      onError: (e: unknown) => errors.push(e),
    })
    const messages: string[] = []
    // Changes only: the instances' feed probes pass through too.
    const off = await feed!.subscribe((m) => m.startsWith('tollbooth:') || messages.push(m))
    cleanups.push(off)
    return { tb, messages, errors }
  }

  /** Redis: A's client direct, B's through the proxy (its subscriber connection muted). */
  const redisFeeds = async (proxy: TcpProxy) => {
    const feeds: Array<Storage['changes']> = []
    for (const port of [redis.port, proxy.port]) {
      const client = new Redis(`redis://127.0.0.1:${port}`, FAIL_FAST)
      client.on('error', () => {})
      await ready(client)
      const s = redisStorage({ client, keyPrefix: 'silent:' })
      cleanups.push(async () => {
        await s.close?.()
        client.disconnect()
      })
      feeds.push(s.changes)
    }
    return feeds
  }

  /** PostgreSQL: both publish on the pool; B's LISTEN connection comes through the proxy. */
  const postgresFeeds = async (proxy: TcpProxy) => {
    const url = new URL(DATABASE_URL)
    url.host = `127.0.0.1:${proxy.port}`
    const listenPool = new pg.Pool({ connectionString: url.toString(), max: 2 })
    listenPool.on('error', () => {})
    const a = postgresStorage({ pool, schema })
    const b = postgresStorage({ pool, schema, listenPool })
    cleanups.push(async () => {
      await a.close?.()
      await b.close?.()
      await listenPool.end()
    })
    return [a.changes, b.changes]
  }

  /** The port the proxy forwards to: the private Redis (started by the test), the shared PostgreSQL. */
  const redisPort = async (ctx: TestContext) => {
    redis = await servers.redis(ctx)
    return redis.port
  }
  const postgresPort = async () => new URL(DATABASE_URL).port || 5432

  for (const [name, port, marker, feeds] of [
    ['Redis', redisPort, /SUBSCRIBE/i, redisFeeds],
    ['PostgreSQL', postgresPort, /LISTEN/, postgresFeeds],
  ] as const) {
    it(`${name}: a key revoked on A is refused by B after feedDownTtlMs, and the feed trusted again once it delivers`, async (ctx) => {
      const proxy = await startProxy(Number(await port(ctx)), marker)
      cleanups.push(() => proxy.close())
      const [feedA, feedB] = await feeds(proxy)
      const clock = manualClock(T0)
      const a = await make(feedA, clock)
      const b = await make(feedB, clock)
      // A third instance without a feed: its changes reach B by no message at all.
      const c = createTollbooth({
        secret: SECRET,
        clock,
        storage: { ...postgresStorage({ pool, schema }), changes: undefined },
        failedAuth: false,
        onError: () => {},
      })
      /** A key created on A, once B heard its creation (a read it overtakes is not cached). */
      const created = async (name: string) => {
        const heard = b.messages.length
        const k = await a.tb.keys.create({ accountId: 'acct_silent', name })
        await until(() => b.messages.length > heard, 5000)
        return k
      }
      try {
        expect(proxy.marked).toBe(1)
        const one = await created('one')
        expect(await allowed(b.tb.authenticate(request(one.key)))).toBe(true)

        // 1. B's subscriber hears nothing more, and nothing tells it so.
        proxy.mute(true)
        await a.tb.keys.revoke(one.record.id)
        clock.advance(1000)
        // B no longer trusts its one-second-old entry once its probe went unanswered.
        const refusedMs = await until(
          async () => !(await allowed(b.tb.authenticate(request(one.key)))),
          3000,
        )
        expect(await b.tb.authenticate(request(one.key))).toMatchObject({ status: 401 })
        // Said once, with what to check, and shown by stats().
        expect(b.errors).toHaveLength(1)
        expect(b.errors[0]).toMatchObject({ code: 'storage_unavailable' })
        expect((b.errors[0] as Error).message).toMatch(/^change feed silent: .*listenPool/)
        expect(b.tb.stats().feed).toEqual({ delivering: false, silent: true, silences: 1 })

        // 2. Delivering again: a revocation on A reaches B as a message...
        proxy.mute(false)
        const two = await created('two')
        await until(() => b.errors.length === 2, 3000)
        expect((b.errors[1] as Error).message).toMatch(/^the change feed delivers again/)
        expect(b.tb.stats().feed).toEqual({ delivering: true, silent: false, silences: 1 })
        expect(await allowed(b.tb.authenticate(request(two.key)))).toBe(true)
        await a.tb.keys.revoke(two.record.id)
        const backMs = await until(
          async () => !(await allowed(b.tb.authenticate(request(two.key)))),
          3000,
        )
        // ...and B trusts its cache for the whole TTL again: a key revoked silently (on C, no
        // feed) stays served from B's cache past feedDownTtlMs.
        const three = await created('three')
        expect(await allowed(b.tb.authenticate(request(three.key)))).toBe(true)
        // Its first use is published too (and drops B's entry when it comes back): once heard,
        // B caches it for good.
        await feedDelivered({ changes: feedB! })
        expect(await allowed(b.tb.authenticate(request(three.key)))).toBe(true)
        await c.keys.revoke(three.record.id)
        clock.advance(2000)
        expect(await allowed(b.tb.authenticate(request(three.key)))).toBe(true)
        console.log(
          `${name} feed silent: revoked key refused by B ${refusedMs} ms after the mute (feedProbeMs 100); back: a revocation refused by B ${backMs} ms after it`,
        )
        expect([a.errors, b.errors.length]).toEqual([[], 2])
      } finally {
        proxy.mute(false)
        await Promise.all([a.tb.close(), b.tb.close(), c.close()])
      }
    }, 30_000)
  }
})
