/**
 * @module test/fault/redis-managed
 *
 * `redisStorage` on a Redis configured, and operated, as managed services do, each on a private
 * redis-server:
 * - `maxmemory` with an eviction policy (ElastiCache, Azure and Redis Cloud default to
 *   `volatile-lru`): filling the memory evicts a spent rate limit's counter, and the key is
 *   served again (5 more for 10 an hour). Nothing in the storage can prevent that, so it warns
 *   once connected (`TOLLBOOTH_REDIS_EVICTION`, naming the policy); under `noeviction` it does
 *   not, nor with `maxmemory` 0 (no limit: nothing is evicted, whatever the policy).
 * - `noeviction` with the memory full: admissions get 503 `storage_unavailable` (Redis refuses
 *   the writing call whole), the process serves on, and once memory is freed every admitted
 *   request's usage is recorded, credits charged equal the recorded units, the quota counted the
 *   requests served, no hold is left; a usage prune still runs.
 * - an ACL user that may not run FCALL (its admissions went 503 forever: only "unknown command"
 *   made the storage fall back to EVALSHA), or may not use the change channel (Redis 7 users
 *   get no channels by default): admissions work, the feed's error names the channel and the
 *   ACL rule to add, and no error or log line carries the password of the URL.
 * - `FLUSHALL` and `FUNCTION FLUSH`: the usage recorded next is found by key again (the key
 *   index was remembered as written for 10 minutes).
 * - a primary demoted under open connections (a failover): 503s whose log names READONLY (it
 *   said `Storage unavailable` alone), served again once promoted.
 * - `CLIENT KILL` of the change feed's connection: a key revoked on A while B's subscriber is
 *   reconnecting is refused by B once it has resubscribed (its cache emptied); the server's
 *   `timeout` closing an idle connection costs 503s only until the client has reconnected.
 */

import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import {
  type Check,
  createTollbooth,
  type Decision,
  type Denial,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import { request, T0, until, usageEvent } from '../support/core.js'
import { privateStores } from '../support/fault.js'
import { FAIL_FAST, ready } from '../support/redis.js'
import { freePort, type RedisServer } from './redis-server.js'

const SECRET = 'redis-managed-secret-redis-managed-secret'
const PASSWORD = 'pw-3a9f1c77e2d54b06'

const servers = privateStores()

describe('Redis as managed services configure it', () => {
  let redis: RedisServer
  let url: string
  // The operator's connection: queues its commands while it reconnects (the server's
  // `timeout` closes it too).
  let admin: Redis
  beforeEach(async (ctx) => {
    redis = await servers.redis(ctx)
    url = `redis://127.0.0.1:${redis.port}`
    admin ??= servers.client(redis, { maxRetriesPerRequest: 3 })
  })
  const clients: Redis[] = []
  const tbs: Tollbooth[] = []
  /** Everything reported: client errors and `onError`, to search for the password. */
  const reported: string[] = []

  const connect = async (u = url) => {
    const client = new Redis(u, { ...FAIL_FAST, retryStrategy: () => 50 })
    client.on('error', (err) => reported.push(err.message))
    clients.push(client)
    await ready(client)
    return client
  }
  /** An instance on `client`; with `log`, its errors go to the default logger (console.error). */
  const make = (client: Redis, prefix: string, { log = false } = {}) => {
    const storage = redisStorage({ client, keyPrefix: prefix })
    const tb = createTollbooth({
      secret: SECRET,
      storage,
      storageTimeoutMs: 1000,
      failedAuth: false,
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
      ...(log
        ? {}
        : { onError: (err) => reported.push(err instanceof Error ? err.message : String(err)) }),
    })
    tbs.push(tb)
    return { storage, tb, route: tb.route({ cost: 1 }) }
  }
  /** One request with `key`, settled 200 when admitted. */
  const call = async (
    tb: Tollbooth,
    route: ReturnType<Tollbooth['route']>,
    key: string,
  ): Promise<Decision> => {
    const d = await tb.authenticate(request(key), route)
    if (d.allowed) await tb.settle(d, { status: 200 })
    return d
  }
  /** A key's all-time quota as the store counts it. */
  const totalCount = async (storage: Storage, account: string, id: string) => {
    const total: Check = {
      type: 'window',
      key: `{${account}}:k:${id}:q:total`,
      name: 'total',
      limit: 1_000_000,
      windowMs: 0,
      bucketMs: 0,
      cost: 0,
    }
    return (await storage.counters.consume([total], Date.now())).results[0]!.used
  }
  /** Units of the usage events recorded for `id`, and their request ids. */
  const recorded = async (tb: Tollbooth, id: string) => {
    const ids: string[] = []
    let units = 0
    let cursor: string | null = null
    do {
      const page = await tb.storage.usage.logs(id, { limit: 100, cursor })
      for (const e of page.data) {
        ids.push(e.requestId)
        units += e.units
      }
      cursor = page.nextCursor
    } while (cursor)
    return { ids: ids.sort(), units }
  }
  /** `n` requests with `key`, each expected admitted; their request ids. */
  const admitAll = async (
    tb: Tollbooth,
    route: ReturnType<Tollbooth['route']>,
    key: string,
    n: number,
  ) => {
    const ids: string[] = []
    for (let i = 0; i < n; i++) {
      const d = await call(tb, route, key)
      expect(d.allowed, d.allowed ? '' : d.code).toBe(true)
      ids.push(d.requestId)
    }
    return ids
  }
  /**
   * How every test here ends: nothing left to retry, each admitted request's usage recorded
   * once, the key's all-time quota counted them, credits charged (with the holds still live)
   * equal to the units recorded, one a request.
   */
  const expectAccounted = async (
    tb: Tollbooth,
    storage: Storage,
    account: string,
    keyId: string,
    admitted: readonly string[],
  ) => {
    await tb.flush()
    expect(tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
    const { ids, units } = await recorded(tb, keyId)
    expect(ids).toEqual([...admitted].sort())
    expect(await totalCount(storage, account, keyId)).toBe(admitted.length)
    expect((await tb.accounts.get(account)).credits.used).toBe(units)
    expect(units).toBe(admitted.length)
  }
  /** Fills the server's memory with `n` values of 10 kB; the first refusal's text, if any. */
  const fill = async (n: number) => {
    const big = 'v'.repeat(10_000)
    for (let i = 0; i < n; i++) {
      try {
        await admin.set(`filler:${i}`, big)
      } catch (err) {
        return (err as Error).message
      }
    }
    return ''
  }
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1])
  const policyWarnings = (warn: { mock: { calls: unknown[][] } }) =>
    warn.mock.calls.map((c) => String(c[0])).filter((m) => m.includes('TOLLBOOTH_REDIS_EVICTION'))

  afterEach(async () => {
    for (const tb of tbs.splice(0)) await tb.close().catch(() => {})
    for (const c of clients.splice(0)) c.disconnect()
    if (admin) {
      await admin.config('SET', 'maxmemory', '0', 'maxmemory-policy', 'noeviction', 'timeout', '0')
      await admin.config('SET', 'maxmemory-samples', '5')
      await admin.flushall()
    }
    vi.restoreAllMocks()
  })

  afterAll(async () => {
    expect(reported.filter((m) => m.includes(PASSWORD))).toEqual([])
  })

  it('noeviction, memory full: 503 storage_unavailable, then every admitted request recorded and charged once', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const client = await connect()
    const { storage, tb, route } = make(client, 'full:')
    // Commands on one connection are answered in order: the policy check's INFO came first.
    await client.ping()
    await new Promise((r) => setTimeout(r, 10))
    expect(policyWarnings(warn)).toEqual([])

    const { key, record } = await tb.keys.create({
      accountId: 'acct_full',
      limits: { quotas: { total: 1000 }, exact: true },
    })
    const admitted = await admitAll(tb, route, key, 10)
    await tb.flush()
    // Admitted before, settled while full: its charge and usage must land later.
    const inFlight = await tb.authenticate(request(key), route)
    expect(inFlight.allowed).toBe(true)
    admitted.push(inFlight.requestId)
    // Full: used memory past maxmemory (set below it, as a full dataset is), writes refused.
    await admin.config('SET', 'maxmemory', String(Math.floor((await usedMemory()) / 2)))
    expect(await fill(1)).toMatch(/^OOM /)

    await tb.settle(inFlight, { status: 200 })
    const full = await Promise.all(Array.from({ length: 10 }, () => call(tb, route, key)))
    for (const d of full) {
      if (d.allowed) admitted.push(d.requestId)
      else expect([d.status, d.code]).toEqual([503, 'storage_unavailable'])
    }
    expect(full.filter((d) => !d.allowed).length).toBeGreaterThan(0)
    // Its credit release and the refused requests' cancels wait to be retried.
    const waiting = tb.stats().settleRetries.pending
    expect(waiting).toBeGreaterThan(0)

    // Memory freed (the operator raised the limit): requests pass, queued writes land.
    await admin.config('SET', 'maxmemory', '0')
    admitted.push(...(await admitAll(tb, route, key, 5)))
    await until(() => tb.stats().settleRetries.pending === 0, 10_000)
    await expectAccounted(tb, storage, 'acct_full', record.id, admitted)
    console.log(
      `noeviction, full: ${full.filter((d) => !d.allowed).length} of 10 refused (503), ${waiting} settles and cancels waiting, all landed after`,
    )
  })

  it('noeviction, memory full: a prune still frees memory, and the totals match the events left', async () => {
    const client = await connect()
    const { usage } = redisStorage({ client, keyPrefix: 'prune:' })
    await usage.record(Array.from({ length: 10 }, (_, i) => usageEvent(i, { time: T0 + i * 1000 })))
    const summary = () => usage.summarize('acct_1', T0 - 3_600_000, T0 + 3_600_000)
    expect(await summary()).toMatchObject({ requests: 10, units: 10 })
    // Full while the oldest five are pruned: the script's first write is a delete, after which
    // Redis lets a script finish (it never stops one half-way), so totals are taken down too.
    await admin.config('SET', 'maxmemory', String(Math.floor((await usedMemory()) / 2)))
    expect(await fill(1)).toMatch(/^OOM /)
    expect(await usage.prune(T0 + 5000)).toBe(5)
    const left = await usage.logs('key_1', { limit: 100 })
    expect(left.data.map((e) => e.id).sort()).toEqual(['evt_5', 'evt_6', 'evt_7', 'evt_8', 'evt_9'])
    expect(await summary()).toMatchObject({ requests: 5, units: 5 })
  })

  it('allkeys-lru without maxmemory (0, no limit): nothing is evicted, and no warning', async () => {
    await admin.config('SET', 'maxmemory', '0', 'maxmemory-policy', 'allkeys-lru')
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const client = await connect()
    const { tb, route } = make(client, 'nolimit:')
    await client.ping()
    await new Promise((r) => setTimeout(r, 10))
    expect(policyWarnings(warn)).toEqual([])
    // What the policy would act on, were there a limit: 6 MB written, nothing evicted.
    const { key } = await tb.keys.create({ accountId: 'acct_nolimit' })
    expect((await call(tb, route, key)).allowed).toBe(true)
    expect(await fill(600)).toBe('')
    expect(Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))![1])).toBe(0)
  })

  it('allkeys-lru: an evicted rate limit admits again, and the storage warns of the policy once connected', async () => {
    // A limit, as managed services set one: 1 GB here (lowered below once the counters are
    // written).
    await admin.config('SET', 'maxmemory', String(1 << 30), 'maxmemory-policy', 'allkeys-lru')
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const client = await connect()
    const { tb, route } = make(client, 'evict:')
    await client.ping()
    await new Promise((r) => setTimeout(r, 10))
    const warnings = policyWarnings(warn)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('allkeys-lru')
    expect(warnings[0]).toContain('noeviction')
    expect(warnings[0]).toContain('maxmemory 1073741824')

    // Why: a spent rate limit's counter evicted under memory pressure admits the key again
    // (a spent `total` quota too, when its usage, which it is rebuilt from, goes as well).
    const { key } = await tb.keys.create({
      accountId: 'acct_evict',
      limits: { rateLimits: [{ limit: 10, windowMs: 3_600_000 }], exact: true },
    })
    for (let i = 0; i < 10; i++) expect((await call(tb, route, key)).allowed).toBe(true)
    expect((await call(tb, route, key)).allowed).toBe(false)
    await tb.flush()
    // Redis's LRU clock ticks once a second: keys touched within the same second tie.
    await new Promise((r) => setTimeout(r, 1100))
    // Room for 2 MB more (what is not keys, buffers and scripts, varies by less), 6 MB written:
    // about 400 evictions, each of the oldest of 10 keys sampled (LRU is approximate), so
    // tollbooth's keys, idle since before the writes, go with near certainty.
    await admin.config('SET', 'maxmemory', String((await usedMemory()) + 2_000_000))
    await admin.config('SET', 'maxmemory-samples', '10')
    expect(await fill(600)).toBe('')
    const evicted = Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))![1])
    expect(evicted).toBeGreaterThan(0)
    let again = 0
    for (let i = 0; i < 5; i++) if ((await call(tb, route, key)).allowed) again++
    expect(again, 'admitted past a spent rate limit of 10 an hour').toBe(5)
    await tb.flush()
    expect(tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
    console.log(`allkeys-lru: ${evicted} keys evicted, ${again} admitted past a spent rate limit`)
  })

  it('an ACL user without FCALL runs the counters by EVALSHA', async () => {
    await admin.call(
      'ACL',
      'SETUSER',
      'tb_nofcall',
      'on',
      `>${PASSWORD}`,
      '~*',
      '&*',
      '+@all',
      '-fcall',
      '-function',
    )
    const client = await connect(`redis://tb_nofcall:${PASSWORD}@127.0.0.1:${redis.port}`)
    const { storage, tb, route } = make(client, 'nofcall:')
    const { key, record } = await tb.keys.create({
      accountId: 'acct_nofcall',
      limits: { quotas: { total: 100 }, exact: true },
    })
    const admitted = await admitAll(tb, route, key, 5)
    await expectAccounted(tb, storage, 'acct_nofcall', record.id, admitted)
  })

  it('an ACL user without the change channel is told which channel and which rule', async () => {
    // Redis 7 gives a new user no channels (acl-pubsub-default resetchannels).
    await admin.call('ACL', 'SETUSER', 'tb_nochan', 'on', `>${PASSWORD}`, '~*', '+@all')
    const client = await connect(`redis://tb_nochan:${PASSWORD}@127.0.0.1:${redis.port}`)
    const { tb, route } = make(client, 'nochan:')
    const { key, record } = await tb.keys.create({ accountId: 'acct_nochan' })
    expect((await call(tb, route, key)).allowed).toBe(true)
    await tb.keys.revoke(record.id)
    expect((await tb.authenticate(request(key), route)).allowed).toBe(false)
    const channel = [...new Set(reported.filter((m) => m.includes("'nochan:changes'")))]
    expect(channel.map((m) => m.slice(0, 60))).toEqual([
      'tollbooth/redis: the Redis user may not SUBSCRIBE to the cha',
      'tollbooth/redis: the Redis user may not PUBLISH to the chang',
    ])
    expect(channel[0]).toContain('&nochan:changes')
    // Its changes stay queued for a feed that refuses them: a close would wait for them (10 s).
    expect(tb.stats().feedRetries.pending).toBeGreaterThan(0)
    const ended = new Promise((r) => client.once('end', r))
    client.disconnect()
    await ended
  })

  it('FLUSHALL and FUNCTION FLUSH by an operator: a cached key serves on, its usage is recorded, charged once and found by key', async () => {
    const { storage, tb, route } = make(await connect(), 'flush:')
    const { key, record } = await tb.keys.create({
      accountId: 'acct_flush',
      limits: { quotas: { total: 100 }, exact: true },
    })
    await admitAll(tb, route, key, 5)
    await tb.flush()
    await admin.flushall()
    await admin.call('FUNCTION', 'FLUSH')
    // Everything is gone, the key record too: the instance's cache still holds the key, the
    // counters' library is loaded again, the usage written anew.
    const admitted = await admitAll(tb, route, key, 5)
    // Logs by key id go through the key -> account index, gone with the rest: written again
    // once the account's events turn out gone (it was remembered for 10 minutes: no logs).
    await expectAccounted(tb, storage, 'acct_flush', record.id, admitted)
    // And prune finds the account again.
    expect(await storage.usage.prune(Date.now() + 1)).toBe(5)
  })

  it('a primary turned replica (failover): 503 storage_unavailable, the log names READONLY, served again once promoted', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {})
    const { storage, tb, route } = make(await connect(), 'ro:', { log: true })
    const { key, record } = await tb.keys.create({
      accountId: 'acct_ro',
      limits: { quotas: { total: 100 }, exact: true },
    })
    const admitted = await admitAll(tb, route, key, 3)
    await tb.flush()
    // Demoted under its clients' feet, as a failover does to the old primary: the connection
    // stays up, every write is refused. (Its new primary is a port nothing listens on: no sync
    // replaces its data, so the test does not depend on one's timing.)
    await admin.call('REPLICAOF', '127.0.0.1', String(await freePort()))
    try {
      for (let i = 0; i < 3; i++) {
        const d = await tb.authenticate(request(key), route)
        expect(d.allowed ? 200 : [d.status, d.code]).toEqual([503, 'storage_unavailable'])
      }
      const logged = error.mock.calls.map((c) => c.map(String).join(' '))
      expect(logged.filter((l) => l.includes('READONLY')).length).toBeGreaterThanOrEqual(3)
    } finally {
      // Promoted again.
      await admin.call('REPLICAOF', 'NO', 'ONE')
    }
    admitted.push(...(await admitAll(tb, route, key, 3)))
    await until(() => tb.stats().settleRetries.pending === 0, 10_000)
    await expectAccounted(tb, storage, 'acct_ro', record.id, admitted)
  })

  it('CLIENT KILL of the feed connection: a key revoked meanwhile is refused once it resubscribes', async () => {
    const a = make(await connect(), 'kill:')
    const b = make(await connect(), 'kill:')
    const { key, record } = await a.tb.keys.create({ accountId: 'acct_kill' })
    expect((await call(b.tb, b.route, key)).allowed).toBe(true)
    // B's key cache holds the key; its subscriber is cut off, and A revokes while it is down.
    const killed = await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    expect(Number(killed)).toBeGreaterThanOrEqual(2)
    await a.tb.keys.revoke(record.id)
    const ms = await until(async () => !(await b.tb.authenticate(request(key), b.route)).allowed)
    expect(ms).toBeLessThan(1000)
    console.log(`revocation missed by a killed subscriber: refused by B after ${ms} ms`)
  })

  it('server timeout: a connection closed idle refuses (503) only until the client has reconnected', async () => {
    await admin.config('SET', 'timeout', '1')
    const client = await connect()
    let closed = 0
    client.on('close', () => closed++)
    const { tb, route } = make(client, 'idle:')
    const { key, record } = await tb.keys.create({ accountId: 'acct_idle' })
    // Idle past the server's timeout (whole seconds, checked by its cron): it closes the
    // connection, and the client reconnects after its retryStrategy's delay (50 ms here).
    await until(() => closed > 0, 3000)
    const t = Date.now()
    const admitted: string[] = []
    const refused: Denial[] = []
    while (admitted.length < 5 && Date.now() - t < 2000) {
      const d = await call(tb, route, key)
      if (d.allowed) admitted.push(d.requestId)
      else refused.push(d)
      // Requests arrive as I/O: the client's reconnect timer gets its turn between them.
      await new Promise((r) => setTimeout(r, 5))
    }
    const ms = Date.now() - t
    for (const d of refused) expect([d.status, d.code]).toEqual([503, 'storage_unavailable'])
    expect(ms).toBeLessThan(1000)
    await tb.flush()
    expect(tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
    expect((await recorded(tb, record.id)).ids).toEqual(admitted.sort())
    console.log(`server timeout: ${refused.length} refused (503) in the ${ms} ms after the close`)
  })
})
