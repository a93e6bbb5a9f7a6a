/**
 * @module test/fault/reconcile
 *
 * Issue 20 items 6 and 9 on a private redis-server that keeps its data across a kill
 * (append-only file, fsync on every write), under HTTP traffic:
 * - killed (SIGKILL) and restarted: settles that failed while it was down are retried until
 *   it takes them, so the credits charged equal the units of the recorded usage events, and
 *   the admissions whose answer was lost are cancelled, so the all-time quota counts exactly
 *   the requests served and no hold is left;
 * - frozen (SIGSTOP) past the storage timeout: requests answered 503 whose scripts run after
 *   the thaw leave nothing behind (before: their quota counts stayed for good and their
 *   credit holds for 5 minutes).
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { holdState } from '../../adapters/redis/counters.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, memoryStorage, type Storage, type Tollbooth } from '../../src/index.js'
import { privateStores, quotaUsed, usageOf } from '../support/fault.js'
import { FAIL_FAST, ready } from '../support/redis.js'
import type { RedisServer } from './redis-server.js'

const TIMEOUT_MS = 400
// Its data survives a kill: what it had confirmed is there after the restart.
const servers = privateStores({ persistentRedis: true })

describe('counters reconciled after Redis faults', () => {
  let redis: RedisServer
  let client: Redis
  const memory = memoryStorage()
  let storage: Storage
  const errors: unknown[] = []
  let tb: Tollbooth
  let http: ReturnType<typeof serve>
  let base = ''

  /** The client, the instance and its HTTP server on the private Redis `server`. */
  const start = async (server: RedisServer) => {
    redis = server
    client = servers.client(redis, { ...FAIL_FAST, retryStrategy: () => 50 })
    storage = {
      ...memory,
      counters: redisStorage({ client, keyPrefix: 'rc:' }).counters,
    }
    tb = createTollbooth({
      secret: 'reconcile-test-secret-reconcile-test-42',
      storage,
      storageTimeoutMs: TIMEOUT_MS,
      failedAuth: false,
      plans: { big: { monthlyCredits: 1_000_000_000 } },
      defaultTier: 'big',
      usage: { flushIntervalMs: 60_000, maxBatch: 100_000, retentionMs: 86_400_000 },
      onError: (e: unknown) => errors.push(e),
    })
    const app = new Hono()
    app.use('/v1/*', requireApiKey(tb, { cost: 1 }))
    app.get('/v1/work', (c) => c.json({ ok: true }))
    await ready(client)
    http = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => http.once('listening', r))
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  }
  servers.withRedis(start)

  afterAll(async () => {
    await tb?.close()
    http?.close()
  })

  const newKey = async (accountId: string) =>
    tb.keys.create({
      accountId,
      limits: { quotas: { total: 1_000_000_000 }, concurrency: 1000 },
    })

  const call = async (key: string): Promise<number> => {
    const res = await fetch(`${base}/v1/work`, { headers: { authorization: `Bearer ${key}` } })
    await res.arrayBuffer()
    return res.status
  }
  /** `workers` loops of requests until `stop(statuses)`; at most 4000 requests, 25 s. */
  const traffic = (key: string, workers: number, stop: (s: number[]) => boolean) => {
    const out: number[] = []
    const until = Date.now() + 25_000
    const loop = async () => {
      while (!stop(out) && out.length < 4000 && Date.now() < until) out.push(await call(key))
    }
    return { out, done: Promise.all(Array.from({ length: workers }, loop)).then(() => out) }
  }
  const waitFor = async (cond: () => boolean) => {
    while (!cond()) await new Promise((r) => setTimeout(r, 5))
  }
  const count = (xs: number[], status: number) => xs.filter((s) => s === status).length

  /** What the store holds for an account and key once everything has settled. */
  const figures = async (accountId: string, keyId: string) => {
    await tb.flush()
    const { requestIds, units } = await usageOf(memory.usage, keyId)
    const events = requestIds.length
    const quota = await quotaUsed(storage.counters, accountId, keyId)
    const credits = (await tb.accounts.get(accountId)).credits.used
    // Holds left on the credit and concurrency counters (`#<id>` per live hold).
    const raw = await client.keys(`rc:{${accountId}}:*`)
    let holds = 0
    for (const k of raw) {
      holds += holdState(await client.getBuffer(k))?.holds.length ?? 0
    }
    return { events, units, quota, credits, holds }
  }

  it('charges every recorded event and counts every served request after a kill and restart', async () => {
    const { key, record } = await newKey('acct_kill')
    let killed = false
    let restarted = false
    const run = traffic(
      key,
      8,
      (s) => restarted && count(s.slice(s.lastIndexOf(503) + 1), 200) >= 300,
    )
    await waitFor(() => run.out.length >= 300)
    await redis.kill()
    killed = true
    await waitFor(() => count(run.out, 503) >= 50)
    await redis.restart()
    restarted = true
    const statuses = await run.done
    expect(killed).toBe(true)
    const served = count(statuses, 200)
    expect(served + count(statuses, 503)).toBe(statuses.length)
    const f = await figures('acct_kill', record.id)
    console.log(
      `kill: ${served} served, ${count(statuses, 503)} x 503; events ${f.events}, units ${f.units}, credits used ${f.credits}, quota ${f.quota}, holds ${f.holds}; retries ${JSON.stringify(tb.stats().settleRetries)}`,
    )
    expect(f.events).toBe(served)
    expect(f.credits).toBe(f.units)
    expect(f.quota).toBe(served)
    expect(f.holds).toBe(0)
  }, 60_000)

  it('leaves nothing behind of admissions answered 503 while Redis was frozen', async () => {
    const { key, record } = await newKey('acct_freeze')
    let thawed = false
    const run = traffic(key, 8, (s) => thawed && count(s.slice(s.lastIndexOf(503) + 1), 200) >= 200)
    await waitFor(() => run.out.length >= 100)
    redis.freeze(true)
    try {
      await waitFor(() => count(run.out, 503) >= 8)
      await new Promise((r) => setTimeout(r, TIMEOUT_MS))
    } finally {
      redis.freeze(false)
      thawed = true
    }
    const statuses = await run.done
    const served = count(statuses, 200)
    const refused = count(statuses, 503)
    expect(refused).toBeGreaterThanOrEqual(8)
    expect(served + refused).toBe(statuses.length)
    const f = await figures('acct_freeze', record.id)
    console.log(
      `freeze: ${served} served, ${refused} x 503; events ${f.events}, units ${f.units}, credits used ${f.credits}, quota ${f.quota}, holds ${f.holds}; retries ${JSON.stringify(tb.stats().settleRetries)}`,
    )
    expect(f.events).toBe(served)
    expect(f.quota).toBe(served)
    expect(f.credits).toBe(f.units)
    expect(f.credits).toBe(served)
    expect(f.holds).toBe(0)
  }, 60_000)

  it('keeps at most maxPendingSettles waiting, reporting and counting the rest', async () => {
    const dropped: unknown[] = []
    const small = createTollbooth({
      secret: 'reconcile-test-secret-reconcile-test-42',
      storage,
      storageTimeoutMs: TIMEOUT_MS,
      failedAuth: false,
      maxPendingSettles: 3,
      plans: { big: { monthlyCredits: 1_000_000_000 } },
      defaultTier: 'big',
      onError: (e: unknown) => dropped.push(e),
    })
    const { key } = await small.keys.create({ accountId: 'acct_bound' })
    const route = small.route({ cost: 1 })
    const request = {
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/v1/work',
    }
    const ds = await Promise.all(
      Array.from({ length: 10 }, () => small.authenticate(request, route)),
    )
    expect(ds.every((d) => d.allowed)).toBe(true)
    redis.freeze(true)
    try {
      // Every settle times out: its call may still land, so it waits for the call's outcome
      // outside the bound (before: 3 took the room and 7 were dropped at once).
      await Promise.all(ds.map((d) => small.settle(d, { status: 200 })))
      expect(small.stats().settleRetries).toEqual({
        pending: 10,
        waiting: 10,
        retried: 0,
        dropped: 0,
      })
      // The client gives up on them (`commandTimeout`, 2 s): each is to retry, 3 take the
      // room, 7 are dropped and reported.
      const until = Date.now() + 10_000
      while (small.stats().settleRetries.waiting > 0 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20))
      expect(small.stats().settleRetries).toMatchObject({ pending: 3, waiting: 0, dropped: 7 })
      const full = dropped.filter((e) => String(e).includes('settle retry queue full'))
      expect(full).toHaveLength(7)
    } finally {
      redis.freeze(false)
    }
    // Thawed, the calls land (those the client gave up on were in Redis's socket), and the
    // retries find their holds released: every request charged once.
    await small.flush()
    expect(small.stats().settleRetries.pending).toBe(0)
    expect((await small.accounts.get('acct_bound')).credits.used).toBe(10)
    await small.close()
  }, 30_000)
})
