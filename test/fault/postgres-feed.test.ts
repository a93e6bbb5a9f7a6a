/**
 * @module test/fault/postgres-feed
 *
 * The LISTEN/NOTIFY change feed across a PostgreSQL crash, on a private server. Instances A
 * and B share it, each with a ten-minute key cache, `cache.feedDownTtlMs` of one second and a
 * manual clock. B has a key cached; the server is killed (SIGKILL) and kept down for several
 * reconnect attempts. While B's feed is down, B serves its cached key only until the entry is
 * one second old (then it asks the store, which is down: 503), not for ten minutes. The
 * server is restarted: B's feed listens again by itself, and a key revoked on A is refused by
 * B at once, although B had it cached again and its clock never moved.
 * And a revocation whose `pg_notify` fails while only A's feed connection is refused (B keeps
 * listening, so it keeps trusting its cache) is sent again once A can connect.
 */

import { afterAll, describe, expect, it, type TestContext } from 'vitest'
import { migrate, type PostgresStorage, postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth, type Decision, manualClock, type Tollbooth } from '../../src/internal.js'
import { request, until } from '../support/core.js'
import { privateStores } from '../support/fault.js'

const SECRET = 'postgres-feed-fault-secret-postgres-feed-42'
const SCHEMA = 'tb_feed'
const T0 = Date.UTC(2026, 0, 15, 12)

const servers = privateStores()

describe('PostgreSQL change feed across a server crash', () => {
  const storages: PostgresStorage[] = []
  const errors: unknown[] = []
  let migrated: Promise<unknown> | undefined

  /** The private server, its schema migrated (once). */
  const started = async (ctx: TestContext) => {
    const server = await servers.postgres(ctx)
    migrated ??= migrate({ pool: servers.pool(server, { max: 4 }), schema: SCHEMA })
    await migrated
    return server
  }

  const allowed = async (d: Promise<Decision>) => (await d).allowed
  /** Resolves with the ms until `tb` refuses `key` (its cached entry dropped by the feed). */
  const refusedWithin = (tb: Tollbooth, key: string, ms: number) =>
    until(async () => !(await allowed(tb.authenticate(request(key)))), ms)

  afterAll(async () => {
    for (const s of storages) await s.close()
  })

  it('shortens the cache bound while down and listens again after a restart', async (ctx) => {
    const pgServer = await started(ctx)
    const pool = () => servers.pool(pgServer, { max: 4 })
    const clock = manualClock(T0)
    const make = () => {
      const storage = postgresStorage({
        pool: pool(),
        schema: SCHEMA,
        onError: (e) => errors.push(e),
      })
      storages.push(storage)
      const tb = createTollbooth({
        secret: SECRET,
        clock,
        storage,
        storageTimeoutMs: 1000,
        cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100, feedDownTtlMs: 1000 },
        failedAuth: false,
      })
      return { tb, storage }
    }
    const a = make()
    const b = make()
    // The feed's own view, for the figures: when B's connection dropped and came back.
    const states: Array<[boolean, number]> = []
    const messages: string[] = []
    await b.storage.changes.subscribe((m) => messages.push(m), {
      onStatus: (live) => states.push([live, Date.now()]),
    })
    try {
      const { key, record } = await a.tb.keys.create({ accountId: 'acct_feed', name: 'k' })
      // B has the creation's message first: a read of the key that the message overtakes is
      // not cached (it may be older than the change the message stands for).
      await until(() => messages.length > 0, 5000)
      expect(await allowed(b.tb.authenticate(request(key)))).toBe(true)

      // 1. Killed: B's feed is down. Its cached key is served while younger than one second…
      await pgServer.kill()
      const killedAt = Date.now()
      await until(() => states.some(([live]) => !live), 5000)
      expect(await allowed(b.tb.authenticate(request(key)))).toBe(true)
      // …and not once it is older: B asks the store (down), so 503, not the cached "allowed".
      clock.advance(1000)
      expect(await b.tb.authenticate(request(key))).toMatchObject({
        status: 503,
        code: 'storage_unavailable',
      })

      // 2. Down for several reconnect attempts (250 ms, doubling), then restarted.
      await new Promise((r) => setTimeout(r, 2000))
      const attempts = errors.length
      await pgServer.restart()
      const restartedAt = Date.now()
      const relistenMs = await until(() => states.at(-1)?.[0] === true, 10_000)

      // 3. B caches the key again; A revokes it; B refuses it at once (its clock never moved,
      //    so only the feed can tell it).
      await until(() => allowed(b.tb.authenticate(request(key))), 5000)
      const revokedAt = Date.now()
      await a.tb.keys.revoke(record.id)
      const refusedMs = await refusedWithin(b.tb, key, 5000)
      expect(await b.tb.authenticate(request(key))).toMatchObject({ status: 401 })
      console.log(
        `postgres feed: down ${restartedAt - killedAt} ms (${attempts} errors reported: the lost connection and failed attempts), ` +
          `listening again ${relistenMs} ms after the restart, ` +
          `revocation refused by B ${refusedMs} ms after it (revoke itself ${Date.now() - revokedAt - refusedMs} ms)`,
      )
    } finally {
      await Promise.all([a.tb.close(), b.tb.close()])
    }
  }, 60_000)

  it('delivers a revocation published while the publishing connection was refused', async (ctx) => {
    const pgServer = await started(ctx)
    const pool = () => servers.pool(pgServer, { max: 4 })
    // A's keys go through the server's superuser, its change feed through a role of its own
    // that is refused for 300 ms: the revocation's pg_notify fails, and must be sent again.
    const admin = pool()
    await admin.query('DROP ROLE IF EXISTS tb_feeder')
    await admin.query('CREATE ROLE tb_feeder LOGIN')
    const clock = manualClock(T0)
    const make = (url: string) => {
      const keys = postgresStorage({ pool: pool(), schema: SCHEMA })
      const feed = postgresStorage({ pool: servers.pool({ url }, { max: 2 }), schema: SCHEMA })
      storages.push(keys, feed)
      const tb = createTollbooth({
        secret: SECRET,
        clock,
        storage: { ...keys, changes: feed.changes },
        cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100, feedDownTtlMs: 1000 },
        failedAuth: false,
        onError: () => {},
      })
      return { tb, feed }
    }
    const a = make(pgServer.url.replace('postgres@', 'tb_feeder@'))
    const b = make(pgServer.url)
    const states: boolean[] = []
    await b.feed.changes.subscribe(() => {}, { onStatus: (live) => states.push(live) })
    try {
      const { key, record } = await a.tb.keys.create({ accountId: 'acct_feed2', name: 'cut' })
      expect(await allowed(b.tb.authenticate(request(key)))).toBe(true)
      await admin.query('ALTER ROLE tb_feeder NOLOGIN')
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'tb_feeder'",
      )
      await a.tb.keys.revoke(record.id)
      setTimeout(() => void admin.query('ALTER ROLE tb_feeder LOGIN'), 300)
      const refusedMs = await refusedWithin(b.tb, key, 5000)
      expect(states.includes(false)).toBe(false)
      await until(() => a.tb.stats().feedRetries.pending === 0, 2000)
      expect(a.tb.stats().feedRetries).toMatchObject({ pending: 0, dropped: 0 })
      expect(a.tb.stats().feedRetries.retried).toBeGreaterThanOrEqual(1)
      console.log(`postgres feed: revocation refused by B ${refusedMs} ms after it`)
    } finally {
      await Promise.all([a.tb.close(), b.tb.close()])
    }
  }, 60_000)
})
