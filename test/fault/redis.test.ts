/**
 * @module test/fault/redis
 *
 * Redis dies under traffic and comes back. A Hono API whose counters live on a redis-server
 * started here (keys and usage in memory) serves a steady stream of requests; the server is
 * killed: requests get 503 `storage_unavailable` within the storage timeout and the process
 * keeps serving; the server is restarted: requests pass again. Every admitted request has
 * exactly one usage event, and no refused one has any. A frozen (SIGSTOP) server, which
 * neither answers nor closes, gets 503s once the storage timeout passes, under traffic; what it
 * counted for them after the timeout is cancelled: once the retries have landed, the key's daily
 * quota has counted exactly the requests served since the restart (Redis came back empty), the
 * account's credits (rebuilt from the recorded usage after the restart) equal the units
 * recorded, and no concurrency slot or credit reservation is left held.
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import {
  type Check,
  createTollbooth,
  memoryStorage,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import {
  expectUnavailable,
  type Outcome,
  privateStores,
  send,
  traffic as trafficOf,
} from '../support/fault.js'
import { FAIL_FAST, ready } from '../support/redis.js'
import type { RedisServer } from './redis-server.js'

const TIMEOUT_MS = 500

const servers = privateStores()

describe('Redis killed and restarted under traffic', () => {
  let redis: RedisServer
  let client: Redis
  const errors: string[] = []
  const memory = memoryStorage()
  let storage: Storage
  let tb: Tollbooth
  let http: ReturnType<typeof serve>
  let base = ''
  let key = ''
  let keyId = ''
  // A key with no concurrency limit: its limits are leased (a concurrency slot is decided by
  // the store, and with it the whole admission).
  let leasedKey = ''
  let leasedKeyId = ''
  // A key whose every limit the store decides (`exact`), used on the route with no cost.
  let plainKey = ''
  let plainKeyId = ''
  // A daily quota alone (`exact`), on an account of its own on the route with no cost: its
  // calls carry no other key's settles, so the script answers them on its lone-check path.
  let loneKey = ''
  let loneKeyId = ''

  /** The client, the instance and its HTTP server on the private Redis `server`, and the keys. */
  const start = async (server: RedisServer) => {
    redis = server
    client = servers.client(redis, { ...FAIL_FAST, retryStrategy: () => 50 })
    client.on('error', (err) => errors.push(err.message))
    // Keys and usage in memory, counters on Redis: the Redis counters are not in-process, so
    // every hot-path call is bounded by storageTimeoutMs.
    storage = {
      ...memory,
      counters: redisStorage({ client, keyPrefix: 'fault:' }).counters,
    }
    tb = createTollbooth({
      secret: 'fault-test-secret-fault-test-secret-42',
      storage,
      storageTimeoutMs: TIMEOUT_MS,
      failedAuth: false,
      usage: { flushIntervalMs: 60_000, maxBatch: 100_000, retentionMs: 86_400_000 },
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
    })
    const app = new Hono()
    app.use('/v1/*', requireApiKey(tb, { cost: 1 }))
    app.get('/v1/work', (c) => c.json({ ok: true }))
    // Not metered: no credit reservation, so an admission's record is a line of its account's
    // list of the second (no hold stands for it).
    app.use('/free/*', requireApiKey(tb))
    app.get('/free/work', (c) => c.json({ ok: true }))
    await ready(client)
    http = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => http.once('listening', r))
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
    const created = await tb.keys.create({
      accountId: 'acct_fault',
      limits: {
        quotas: { daily: 1_000_000 },
        rateLimits: [{ limit: 100_000, windowMs: 1000 }],
        concurrency: 100,
      },
    })
    key = created.key
    keyId = created.record.id
    const leased = await tb.keys.create({
      accountId: 'acct_fault',
      limits: { quotas: { daily: 1_000_000 }, rateLimits: [{ limit: 100_000, windowMs: 1000 }] },
    })
    leasedKey = leased.key
    leasedKeyId = leased.record.id
    const plain = await tb.keys.create({
      accountId: 'acct_fault',
      limits: {
        quotas: { daily: 1_000_000 },
        rateLimits: [{ limit: 100_000, windowMs: 1000 }],
        exact: true,
      },
    })
    plainKey = plain.key
    plainKeyId = plain.record.id
    const lone = await tb.keys.create({
      accountId: 'acct_lone',
      limits: { quotas: { daily: 1_000_000 }, exact: true },
    })
    loneKey = lone.key
    loneKeyId = lone.record.id
  }
  servers.withRedis(start)

  afterAll(async () => {
    await tb?.close()
    http?.close()
  })

  const call = (k = key) => send(`${base}/v1/work`, k)
  /**
   * `workers` loops of requests until `stop(outcomes)`; at most 3000 requests, 20 s. With
   * `keys`, worker i sends `keys[i % keys.length]`.
   */
  const traffic = (workers: number, stop: (out: Outcome[]) => boolean, keys = [key]) =>
    trafficOf(workers, stop, (i) => call(keys[i % keys.length]!), { max: 3000, ms: 20_000 })
  const waitFor = async (cond: () => boolean) => {
    while (!cond()) await new Promise((r) => setTimeout(r, 5))
  }

  it('answers 503 within the timeout while Redis is down, and recovers after a restart', async () => {
    // 1. Healthy: every request passes.
    const healthy = await Promise.all(Array.from({ length: 100 }, () => call()))
    expect(healthy.map((o) => o.status)).toEqual(Array(100).fill(200))

    // 2. Killed (SIGKILL) under traffic: requests fail fast with 503, the process serves on.
    let killed = false
    const down = traffic(8, (out) => killed && out.filter((o) => o.status === 503).length >= 100)
    await waitFor(() => down.out.length >= 40)
    await redis.kill()
    killed = true
    const during = await down.done
    const refused = during.filter((o) => o.status !== 200)
    expect(during.filter((o) => o.status === 200).length).toBeGreaterThanOrEqual(40)
    expectUnavailable(refused, TIMEOUT_MS, { least: 100 })

    // 3. Restarted on the same port: the client reconnects and requests pass again.
    const restartedAt = Date.now()
    await redis.restart()
    const firstOk = (out: Outcome[]) => out.findIndex((o) => o.status === 200)
    const after = await traffic(8, (out) => firstOk(out) >= 0 && out.length - firstOk(out) >= 200)
      .done
    expect(firstOk(after)).toBeGreaterThanOrEqual(0)
    // The 8 requests in flight when the first one passed may still have been refused.
    const recovered = after.slice(firstOk(after) + 8)
    expect(recovered.length).toBeGreaterThan(150)
    expect(recovered.every((o) => o.status === 200)).toBe(true)
    expect(after.every((o) => o.status === 200 || o.code === 'storage_unavailable')).toBe(true)
    const recoveryMs = Date.now() - restartedAt
    expect(recoveryMs).toBeLessThan(10_000)

    // 4. No usage event lost for an admitted request, and none for a refused one.
    await tb.flush()
    const admitted = [...healthy, ...during, ...after].filter((o) => o.status === 200)
    const ids = admitted.map((o) => o.requestId)
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true)
    const logged: string[] = []
    let cursor: string | null = null
    do {
      const page = await memory.usage.logs(keyId, { limit: 100, cursor })
      logged.push(...page.data.map((e) => e.requestId))
      cursor = page.nextCursor
    } while (cursor)
    expect(logged.sort()).toEqual((ids as string[]).sort())
    console.log(
      `fault: ${admitted.length} admitted, ${refused.length} refused while down (max ${Math.max(...refused.map((o) => o.ms))} ms), recovered in ${recoveryMs} ms`,
    )
  })

  /** A key's daily quota as the store counts it (leases given back first). */
  const dailyCount = async (id = keyId, account = 'acct_fault') => {
    await tb.flush()
    const daily: Check = {
      type: 'window',
      key: `{${account}}:k:${id}:q:daily`,
      name: 'daily',
      limit: 1_000_000,
      windowMs: 86_400_000,
      bucketMs: 3_600_000,
      cost: 0,
    }
    return (await storage.counters.consume([daily], Date.now())).results[0]!.used
  }

  it('answers 503 after the storage timeout while Redis hangs, and recovers when it answers; cancels what it counted late', async () => {
    // Nothing answers, nothing closes: only the core's timeout can end these requests.
    const before = await dailyCount()
    const leasedBefore = await dailyCount(leasedKeyId)
    const plainBefore = await dailyCount(plainKeyId)
    const loneBefore = await dailyCount(loneKeyId, 'acct_lone')
    redis.freeze(true)
    let frozen: Outcome[]
    try {
      frozen = await Promise.all(Array.from({ length: 20 }, () => call()))
    } finally {
      redis.freeze(false)
    }
    expectUnavailable(frozen, TIMEOUT_MS, { least: 20, waited: true })
    const later = await traffic(4, (out) => out.filter((o) => o.status === 200).length >= 50).done
    expect(later.slice(-40).every((o) => o.status === 200)).toBe(true)

    // Frozen under traffic: the admissions and leases it answers after the timeout.
    let thawed = false
    const busy = traffic(8, (out) => thawed && out.filter((o) => o.status === 200).length >= 200, [
      key,
      leasedKey,
    ])
    const free = (k: string) =>
      trafficOf(
        4,
        (out) => thawed && out.filter((o) => o.status === 200).length >= 100,
        () => send(`${base}/free/work`, k),
        { max: 3000, ms: 20_000 },
      )
    const plainBusy = free(plainKey)
    const loneBusy = free(loneKey)
    await waitFor(
      () => busy.out.length >= 40 && plainBusy.out.length >= 20 && loneBusy.out.length >= 20,
    )
    redis.freeze(true)
    await new Promise((r) => setTimeout(r, TIMEOUT_MS + 300))
    redis.freeze(false)
    thawed = true
    const stalled = await busy.done
    const plainStalled = await plainBusy.done
    const plainRefused = plainStalled.filter((o) => o.status !== 200)
    expectUnavailable(plainRefused, TIMEOUT_MS, { least: 1 })
    const loneStalled = await loneBusy.done
    const loneRefused = loneStalled.filter((o) => o.status !== 200)
    expectUnavailable(loneRefused, TIMEOUT_MS, { least: 1 })
    const stalledRefused = stalled.filter((o) => o.status !== 200)
    expectUnavailable(stalledRefused, TIMEOUT_MS)

    // Once the cancels and settles retried have landed: exact counts, nothing held.
    const drainedBy = Date.now() + 10_000
    while (tb.stats().settleRetries.pending > 0 && Date.now() < drainedBy)
      await new Promise((r) => setTimeout(r, 20))
    expect(tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
    const all = [...frozen, ...later, ...stalled]
    const served = all.filter((o) => o.status === 200 && o.key !== leasedKey).length
    const leasedServed = all.filter((o) => o.status === 200 && o.key === leasedKey).length
    expect(await dailyCount(), 'daily quota vs requests served').toBe(before + served)
    expect(await dailyCount(leasedKeyId), 'leased daily quota vs requests served').toBe(
      leasedBefore + leasedServed,
    )
    // Its records were lines of a list: each cancel found the admission it undid, or kept it
    // from applying.
    const plainServed = plainStalled.filter((o) => o.status === 200).length
    expect(await dailyCount(plainKeyId), 'exact daily quota vs requests served').toBe(
      plainBefore + plainServed,
    )
    const loneServed = loneStalled.filter((o) => o.status === 200).length
    expect(await dailyCount(loneKeyId, 'acct_lone'), 'a daily quota alone vs requests served').toBe(
      loneBefore + loneServed,
    )
    const now = Date.now()
    expect(await storage.counters.held(`{acct_fault}:k:${keyId}:c`, now), 'slots held').toBe(0)
    let units = 0
    let cursor: string | null = null
    for (const id of [keyId, leasedKeyId])
      do {
        const page = await memory.usage.logs(id, { limit: 100, cursor })
        for (const e of page.data) units += e.units
        cursor = page.nextCursor
      } while (cursor)
    const credits = (await tb.accounts.get('acct_fault')).credits
    // (Its figure is the settled total plus the reservations live: none may be left.)
    expect(credits.used, 'credits charged and held vs units recorded').toBe(units)
    console.log(
      `fault (frozen under traffic): ${served} + ${leasedServed} (leased) + ${plainServed} (exact, not metered) + ${loneServed} (a quota alone) served, ${stalledRefused.length} + ${plainRefused.length} + ${loneRefused.length} x 503, daily ${before} -> ${before + served}, ${leasedBefore} -> ${leasedBefore + leasedServed}, ${plainBefore} -> ${plainBefore + plainServed}, ${loneBefore} -> ${loneBefore + loneServed}, credits ${credits.used} for ${units} units; leases ${JSON.stringify(tb.stats().leases)}`,
    )
  })
})
