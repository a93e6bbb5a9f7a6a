/**
 * @module test/fault/redis-empty
 *
 * The PostgreSQL + Redis split (keys, usage and accounts in PostgreSQL, counters on a
 * redis-server started here, with no persistence) when Redis is killed and comes back empty.
 * Before, every count lived only in Redis: an account with 30 credits got them all back (60
 * served for 30 credits), a spent `total` quota and a spent key budget started again from 0.
 * Now those counts are rebuilt from the usage in PostgreSQL when the counter is missing: after
 * the restart no account is served beyond what it had left, sequentially or 20 at once, and
 * charged credits equal the recorded events.
 */

import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import type { TollboothRequest } from '../../src/request.js'
import { privateStores } from '../support/fault.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { FAIL_FAST, ready } from '../support/redis.js'
import type { RedisServer } from './redis-server.js'

const servers = privateStores()

const req = (key: string): TollboothRequest => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'POST',
  path: '/v1/work',
})

describe.skipIf(skipPostgres)('PostgreSQL + Redis: Redis comes back empty', () => {
  let redis: RedisServer
  let client: Redis
  let pool: pg.Pool
  let drop: () => Promise<void>
  let tb: Tollbooth
  const keys = { credits: '', total: '', budget: '' }
  const ids = { credits: '', total: '', budget: '' }

  servers.withRedis(async (server) => {
    redis = server
    client = servers.client(redis, { ...FAIL_FAST, retryStrategy: () => 50 })
    await ready(client)
    pool = newPool()
    const fresh = await freshSchema(pool)
    drop = fresh.drop
    const postgres = postgresStorage({ pool, schema: fresh.schema })
    const storage: Storage = {
      ...postgres,
      counters: redisStorage({ client, keyPrefix: 'empty:' }).counters,
    }
    tb = createTollbooth({
      secret: 'redis-empty-secret-redis-empty-secret-0',
      storage,
      storageTimeoutMs: 2000,
      failedAuth: false,
      plans: { small: { monthlyCredits: 30 }, big: { monthlyCredits: 1_000_000 } },
      defaultTier: 'small',
      // Events are not flushed by a timer during the test: a rebuild must flush them itself.
      usage: { flushIntervalMs: 600_000, maxBatch: 100_000, retentionMs: 30 * 86_400_000 },
    })
    await tb.accounts.setTier('acct_budget', 'big')
    await tb.accounts.setTier('acct_total', 'big')
    const c = await tb.keys.create({ accountId: 'acct_credits' })
    const t = await tb.keys.create({ accountId: 'acct_total', limits: { quotas: { total: 5 } } })
    const b = await tb.keys.create({ accountId: 'acct_budget', limits: { budget: 10 } })
    keys.credits = c.key
    keys.total = t.key
    keys.budget = b.key
    ids.credits = c.record.id
    ids.total = t.record.id
    ids.budget = b.record.id
  })

  afterAll(async () => {
    await tb?.close()
    await drop?.()
    await pool?.end()
  })

  /** Sends `n` requests (all at once with `parallel`); returns how many were served. */
  async function send(key: string, n: number, parallel = false): Promise<number[]> {
    const route = tb.route({ cost: 1 })
    const one = async () => {
      const d = await tb.authenticate(req(key), route)
      if (!d.allowed) return d.status
      await tb.settle(d, { status: 200 })
      return 200
    }
    if (parallel) return Promise.all(Array.from({ length: n }, one))
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push(await one())
    return out
  }
  const served = (statuses: number[]) => statuses.filter((s) => s === 200).length

  it('serves no more than what was left before the restart', async () => {
    expect(served(await send(keys.credits, 40))).toBe(30)
    expect(served(await send(keys.total, 8))).toBe(5)
    expect(served(await send(keys.budget, 15))).toBe(10)

    await redis.kill()
    await redis.restart()
    await ready(client)
    expect(await client.dbsize()).toBe(0)

    const credits = await send(keys.credits, 20, true)
    expect(credits.filter((s) => s === 402)).toHaveLength(20)
    expect(served(await send(keys.credits, 10))).toBe(0)
    const total = await send(keys.total, 10, true)
    expect(total.filter((s) => s === 429)).toHaveLength(10)
    expect(served(await send(keys.budget, 10, true))).toBe(0)

    // Charged credits equal the recorded events; nothing is held.
    await tb.flush()
    const summary = await tb.storage.usage.summarize('acct_credits', 0, Date.now() + 1)
    expect(summary).toMatchObject({ requests: 30, units: 30 })
    expect((await tb.accounts.get('acct_credits')).credits).toMatchObject({ used: 30, limit: 30 })
    const budget = await tb.storage.usage.logs(ids.budget, { limit: 100 })
    expect(budget.data.reduce((s, e) => s + e.units, 0)).toBe(10)
    // The key's log also holds its refused requests (status, code, 0 credits): 5 were served.
    const totalLog = (await tb.storage.usage.logs(ids.total, { limit: 100 })).data
    expect(totalLog.filter((e) => e.code === null)).toHaveLength(5)
    expect(totalLog.filter((e) => e.code !== null).every((e) => e.units === 0)).toBe(true)
  })

  it('counts on from the rebuilt figures for an account with credits left', async () => {
    // acct_budget has 1,000,000 credits on its plan: 10 used by its budget key, and a new key
    // of the same account counts on from there after another restart.
    const other = await tb.keys.create({ accountId: 'acct_budget' })
    expect(served(await send(other.key, 5))).toBe(5)
    await redis.kill()
    await redis.restart()
    await ready(client)
    expect(served(await send(other.key, 5))).toBe(5)
    // acct_budget's 1,000,000 credits are leased (docs/leases.md): the 5 requests after the
    // restart were charged against the instance's lease, which goes back to the store when it
    // ends (leases.ttlMs, 1 s). The next central admission rebuilds the counter from the usage
    // (the larger of the returned charges and the recorded units): 10 + 5 + 5, then 1 more.
    await tb.flush()
    await new Promise((r) => setTimeout(r, 1_500))
    expect(served(await send(other.key, 1))).toBe(1)
    expect((await tb.accounts.get('acct_budget')).credits.used).toBe(21)
    await tb.flush()
    const recorded = await tb.storage.usage.summarize('acct_budget', 0, Date.now() + 1)
    expect(recorded.units).toBe(21)
  })
})
