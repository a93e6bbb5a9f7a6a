/**
 * @module test/support/fault
 *
 * What the fault tests expect of requests refused while a store is down, frozen or
 * restarting.
 */

import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis, type RedisOptions } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeEach, expect, type TestContext } from 'vitest'
import type { Check, CounterStore, Storage, Tollbooth, UsageStore } from '../../src/index.js'
import { type PostgresServer, startPostgresServer } from '../fault/postgres-server.js'
import { type RedisServer, startRedisServer } from '../fault/redis-server.js'
import { dailyQuota } from './leases.js'

/** What a fault test keeps of one request. */
export interface Refused {
  status: number
  code?: string | undefined
  /** How long the answer took. */
  ms: number
}

/**
 * Every one of `refused` (at least `least` of them) is a 503 `storage_unavailable` answered
 * within the storage timeout plus a second; with `waited`, not before the timeout either (a
 * store that neither answers nor closes: only the timeout ends them).
 */
export function expectUnavailable(
  refused: readonly Refused[],
  timeoutMs: number,
  { least = 1, waited = false }: { least?: number; waited?: boolean } = {},
): void {
  expect(refused.length).toBeGreaterThanOrEqual(least)
  for (const o of refused) {
    expect(o.status).toBe(503)
    expect(o.code).toBe('storage_unavailable')
    if (waited) expect(o.ms).toBeGreaterThanOrEqual(timeoutMs - 5)
    expect(o.ms).toBeLessThan(timeoutMs + 1000)
  }
}

/** What a fault test keeps of one request to `/v1/work`. */
export interface Outcome extends Refused {
  /** The admitted request's id (its usage event's `requestId`). */
  requestId: string | null
  /** The API key it was sent with. */
  key: string
}

/**
 * One GET of `url` with `key`, its answer as an {@link Outcome}; status 0 when no answer came
 * (the process gone, or the connection refused).
 */
export async function send(url: string, key: string): Promise<Outcome> {
  const t = Date.now()
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } })
    const body = (await res.json()) as { code?: string }
    return {
      status: res.status,
      ms: Date.now() - t,
      code: body.code,
      requestId: res.headers.get('x-request-id'),
      key,
    }
  } catch {
    return { status: 0, ms: Date.now() - t, requestId: null, key }
  }
}

/**
 * `workers` loops, each sending `next(worker)` until `stop(outcomes)`, at most `max` requests
 * and `ms` milliseconds in all: the traffic a store's fault happens under. `out` fills as it
 * goes; `done` resolves with it once every loop has stopped.
 */
export function traffic(
  workers: number,
  stop: (out: Outcome[]) => boolean,
  next: (worker: number) => Promise<Outcome>,
  { max, ms }: { max: number; ms: number },
): { out: Outcome[]; done: Promise<Outcome[]> } {
  const out: Outcome[] = []
  const until = Date.now() + ms
  const loop = async (worker: number) => {
    while (!stop(out) && out.length < max && Date.now() < until) out.push(await next(worker))
  }
  const loops = Array.from({ length: workers }, (_, i) => loop(i))
  return { out, done: Promise.all(loops).then(() => out) }
}

/** A private server a fault test can freeze (SIGSTOP: its connections stay open, nothing answers). */
export interface Freezable {
  freeze(frozen: boolean): void
}

/**
 * Runs `body` with `server` frozen. `body` calls `thaw()` where its test goes on with the
 * server back; it is thawed in any case once `body` ends, whatever the outcome.
 */
export async function whileFrozen(
  server: Freezable,
  body: (thaw: () => void) => Promise<void>,
): Promise<void> {
  server.freeze(true)
  let thawed = false
  try {
    await body(() => {
      server.freeze(false)
      thawed = true
    })
  } finally {
    if (!thawed) server.freeze(false)
  }
}

/**
 * How `call` settled, raced against `giveUpMs`: its `PromiseSettledResult`, or null when it was
 * still running then; and how long it took (ms).
 */
export async function settledWithin<T>(
  call: Promise<T>,
  giveUpMs: number,
): Promise<{ result: PromiseSettledResult<T> | null; ms: number }> {
  const t = performance.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  const result = await Promise.race([
    call.then(
      (value): PromiseSettledResult<T> => ({ status: 'fulfilled', value }),
      (reason: unknown): PromiseSettledResult<T> => ({ status: 'rejected', reason }),
    ),
    new Promise<null>((r) => {
      timer = setTimeout(() => r(null), giveUpMs)
    }),
  ])
  clearTimeout(timer)
  return { result, ms: performance.now() - t }
}

/**
 * Starts a fault suite's private server (`start`); null, so that the suite skips, when it
 * cannot be started, unless services are required (`TOLLBOOTH_REQUIRE_SERVICES=1`): then the
 * suite fails with the error.
 */
export async function privateServer<T>(start: () => Promise<T>): Promise<T | null> {
  try {
    return await start()
  } catch (err) {
    if (process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1') throw err
    return null
  }
}

/**
 * The private PostgreSQL and Redis of a fault suite, and the pools and clients its tests open
 * on them. Each server is started by the first test that asks for it, never when the file is
 * collected (`vitest list` starts nothing); that test and the later ones are skipped when it
 * cannot be started, as {@link privateServer} decides. After the suite's last test both are
 * thawed, the clients disconnected, the pools ended and the servers it started ended.
 *
 * With `persistentRedis`, the Redis writes each command to its append-only file before
 * answering (`--appendfsync always`, in a temporary folder removed after the suite): its data
 * survives a kill and a restart.
 */
export function privateStores({ persistentRedis = false }: { persistentRedis?: boolean } = {}): {
  postgres(ctx: TestContext): Promise<PostgresServer>
  redis(ctx: TestContext): Promise<RedisServer>
  /**
   * In the suite it is called in, before each test: the private Redis as {@link redis} gives
   * it, and `start(server)` (the suite's clients, instances, keys) run once, before the first
   * test that runs: what a `beforeAll` would do, but never when the file is only collected.
   */
  withRedis(start: (server: RedisServer) => Promise<void>): void
  /**
   * A pool on `server` (or on another URL of it, e.g. another role's), a connection timeout
   * of 1 s unless `options` says, errors ignored.
   */
  pool(
    server: Pick<PostgresServer, 'url'>,
    options?: Omit<pg.PoolConfig, 'connectionString'>,
  ): pg.Pool
  /**
   * A client on `server`, of ioredis's defaults (no command timeout) unless `options` says,
   * errors ignored.
   */
  client(server: RedisServer, options?: RedisOptions): Redis
} {
  let postgres: Promise<PostgresServer | null> | undefined
  let redis: Promise<RedisServer | null> | undefined
  const pools: pg.Pool[] = []
  const clients: Redis[] = []
  let dir: string | undefined
  afterAll(async () => {
    const [pgServer, redisServer] = await Promise.all([
      postgres?.catch(() => null),
      redis?.catch(() => null),
    ])
    pgServer?.freeze(false)
    redisServer?.freeze(false)
    for (const c of clients) c.disconnect()
    for (const p of pools) await p.end().catch(() => {})
    await pgServer?.stop()
    await redisServer?.kill()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })
  const started = async <T>(server: Promise<T | null>, ctx: TestContext, what: string) =>
    (await server) ?? ctx.skip(`${what} could not be started`)
  const stores: ReturnType<typeof privateStores> = {
    postgres(ctx) {
      postgres ??= privateServer(startPostgresServer)
      return started(postgres, ctx, 'PostgreSQL 15')
    },
    redis(ctx) {
      redis ??= privateServer(() => {
        if (!persistentRedis) return startRedisServer()
        dir = mkdtempSync(join(tmpdir(), 'tb-redis-'))
        return startRedisServer(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir])
      })
      return started(redis, ctx, 'redis-server')
    },
    withRedis(start) {
      let done: Promise<void> | undefined
      beforeEach(async (ctx) => {
        const server = await stores.redis(ctx)
        done ??= start(server)
        await done
      })
    },
    pool(server, options) {
      const pool = new pg.Pool({
        connectionTimeoutMillis: 1000,
        ...options,
        connectionString: server.url,
      })
      pool.on('error', () => {})
      pools.push(pool)
      return pool
    },
    client(server, options = {}) {
      const client = new Redis(`redis://127.0.0.1:${server.port}`, options)
      client.on('error', () => {})
      clients.push(client)
      return client
    },
  }
  return stores
}

/**
 * Resolves with `proc` once its stdout or stderr has printed `marker`; rejects when it exits
 * or fails to start first, or after `timeoutMs` (then it is killed), with what it printed.
 */
export function printed(
  proc: ChildProcess,
  marker: string,
  what: string,
  timeoutMs: number,
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`${what} did not start: ${out}`))
    }, timeoutMs)
    const onData = (d: Buffer) => {
      out += d.toString()
      if (out.includes(marker)) {
        clearTimeout(timer)
        resolve(proc)
      }
    }
    proc.stdout?.on('data', onData)
    proc.stderr?.on('data', onData)
    proc.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    proc.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${what} exited with ${code}: ${out}`))
    })
  })
}

/** Every usage event of key `keyId`, page by page: their request ids and their units in all. */
export async function usageOf(
  usage: Pick<UsageStore, 'logs'>,
  keyId: string,
): Promise<{ requestIds: string[]; units: number }> {
  const requestIds: string[] = []
  let units = 0
  let cursor: string | null = null
  do {
    const page = await usage.logs(keyId, { limit: 100, cursor })
    for (const e of page.data) {
      requestIds.push(e.requestId)
      units += e.units
    }
    cursor = page.nextCursor
  } while (cursor)
  return { requestIds, units }
}

/**
 * What key `keyId`'s all-time quota (`quotas: { total: limit }`) has counted, read with a
 * cost-0 check.
 */
export async function quotaUsed(
  counters: CounterStore,
  accountId: string,
  keyId: string,
  limit = 1_000_000_000,
): Promise<number> {
  const total: Check = {
    type: 'window',
    key: `{${accountId}}:k:${keyId}:q:total`,
    name: 'total',
    limit,
    windowMs: 0,
    bucketMs: 0,
    cost: 0,
  }
  return (await counters.consume([total], Date.now())).results[0]!.used
}

/**
 * The options of a metered tollbooth that waits `storageTimeoutMs` for its store: every key
 * on the `pro` plan (1,000 credits a month), no failed-auth guard, usage kept until flushed.
 */
export const metered = (storageTimeoutMs: number) => ({
  storageTimeoutMs,
  failedAuth: false as const,
  plans: { pro: { monthlyCredits: 1000 } },
  defaultTier: 'pro',
  usage: { flushIntervalMs: 600_000, maxBatch: 100_000, retentionMs: 86_400_000 },
})

/**
 * A key of `accountId` with a daily (1,000) and a monthly (5,000) quota, a rate limit (1,000 a
 * minute) and 50 concurrent requests, every limit decided by the store when `exact`.
 */
export const meteredKey = (tb: Pick<Tollbooth, 'keys'>, accountId: string, exact: boolean) =>
  tb.keys.create({
    accountId,
    limits: {
      quotas: { daily: 1000, monthly: 5000 },
      rateLimits: [{ limit: 1000, windowMs: 60_000 }],
      concurrency: 50,
      exact,
    },
  })

/**
 * What the store counts for a {@link meteredKey} and its account at `now`, once the settle
 * retries have landed (waited for up to 15 s) and the usage is flushed: its quotas, the
 * account's credits used, the key's concurrency slots held, its usage events and their units.
 */
export async function keyFigures(
  {
    tb,
    storage,
    account,
    keyId,
  }: { tb: Tollbooth; storage: Storage; account: string; keyId: string },
  now: () => number,
) {
  const by = Date.now() + 15_000
  while (tb.stats().settleRetries.pending > 0 && Date.now() < by)
    await new Promise((r) => setTimeout(r, 20))
  await tb.flush()
  const at = now()
  const daily = dailyQuota(0, { key: `{${account}}:k:${keyId}:q:daily`, limit: 1000 })
  const monthly = { ...daily, key: `{${account}}:k:${keyId}:q:monthly`, windowMs: 0 }
  const { requestIds, units } = await usageOf(storage.usage, keyId)
  return {
    daily: (await storage.counters.consume([daily], at)).results[0]!.used,
    monthly: (await storage.counters.consume([monthly], at)).results[0]!.used,
    used: (await tb.accounts.get(account)).credits.used,
    slots: await storage.counters.held(`{${account}}:k:${keyId}:c`, at),
    events: requestIds.length,
    units,
  }
}
