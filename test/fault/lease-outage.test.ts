/**
 * @module test/fault/lease-outage
 *
 * A credit lease that ends while the store is out for longer than the lease's store hold lives
 * (TTLs shortened here: `reservationTtlMs`, `leases.ttlMs`, `leases.clockSkewMs`). The instance
 * keeps the charges its requests were charged against the lease; the store's hold lapses while
 * nothing reaches it. Before, the release was retried only until about that hold's TTL from the
 * lease's end, then given up (`lostGiveBacks`), and a retry never made a lapsed hold again once
 * a release had been sent (it might have landed): the lease's charges were lost. Now every
 * release of a lease leaves a tombstone (a `cancel` of a record of its own, in the same store
 * call) and the hold made again carries that record, so a retry after the lapse makes the hold
 * again only when no release has landed, and the charges land once, however the attempts land.
 *
 * - PostgreSQL killed and restarted (its data kept) past the hold's TTL, through
 *   `createTollbooth`: every admitted request has its usage event, the credits charged equal
 *   the units recorded, no hold is left. (Frozen instead, the release waits in its connection
 *   and commits when it thaws, with the time it was sent at: that case held before.)
 * - Redis killed and restarted with its data (AOF) past the hold's TTL: nothing sent while it
 *   was down landed; the charges land once it is back.
 * - Redis frozen past the hold's TTL: the release sent before the freeze runs when it thaws
 *   (with the time it was sent at, the hold still there); the retries after the lapse find its
 *   tombstone and do not make the hold again (that charged the lease's charges twice).
 *
 * Private servers started here, ended by pid.
 */

import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, describe, expect, it, type TestContext } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'
import { leasedCounters } from '../../src/storage/leased-counters.js'
import type { CounterStore } from '../../src/storage/types.js'
import { privateStores, usageOf } from '../support/fault.js'
import { creditHold, creditRequests, holdsLeft } from '../support/leases.js'
import { ready } from '../support/redis.js'
import type { RedisServer } from './redis-server.js'

// Started at the first test that asks (none when the file is only listed), ended after the
// last; the Redis keeps its data across a kill (append-only file, fsync always).
const stores = privateStores({ persistentRedis: true })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('a credit lease ended while PostgreSQL is down past its hold TTL', () => {
  it('its charges land once the store is back: usage for every request, credits charged = units recorded, no hold left', async (ctx) => {
    const server = await stores.postgres(ctx)
    const schema = 'tb_lease_outage'
    const account = 'acct_lease_outage'
    const pool = new pg.Pool({
      connectionString: server.url,
      max: 4,
      connectionTimeoutMillis: 1000,
    })
    pool.on('error', () => {})
    await migrate({ pool, schema })
    const secret = 'lease-outage-secret-lease-outage-secret-42'
    const tb = createTollbooth({
      secret,
      storage: postgresStorage({ pool, schema, durableCounters: true, statementTimeoutMs: 250 }),
      storageTimeoutMs: 300,
      failedAuth: false,
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
      // A request's hold 1 s, a lease 300 ms: the lease's store hold lives 1.7 s (clocks agree).
      reservationTtlMs: 1000,
      leases: { maxShare: 0.05, ttlMs: 300, clockSkewMs: 0 },
      usage: { flushIntervalMs: 600_000, maxBatch: 100_000, retentionMs: 86_400_000 },
      onError: () => {},
    })
    const check = new pg.Pool({ connectionString: server.url, max: 2 })
    try {
      const { key, record } = await tb.keys.create({ accountId: account })
      expect(await creditRequests(tb, key, 400, 32)).toBe(400)
      expect(tb.stats().leases!.localAdmissions, 'answered from leases').toBeGreaterThan(0)
      expect(tb.stats().leases!.held, 'a lease alive at the kill').toBeGreaterThan(0)
      // Killed at once: the timer ends the lease holding the last requests' charges (within
      // 100 ms), its release fails, and its store hold lapses (1.7 s) while the server is down.
      await server.kill()
      await sleep(5_000)
      await server.restart()
      await tb.close()

      const storage = postgresStorage({ pool: check, schema })
      const { requestIds, units } = await usageOf(storage.usage, record.id)
      const reader = createTollbooth({ secret, storage, plans: { pro: {} } })
      const used = (await reader.accounts.get(account)).credits.used
      await reader.close()
      const held = await holdsLeft(check, schema)
      const leases = tb.stats().leases!
      console.log(
        `lease outage, PostgreSQL down 5 s: ${requestIds.length} events, ${units} units, ${used} credits charged; leases ${JSON.stringify(leases)}`,
      )
      expect(requestIds.length, 'usage events vs admitted').toBe(400)
      expect(units).toBe(800)
      // Before: the last leases' charges lost (494-778 charged for 800, lostGiveBacks 0).
      expect(used, 'credits charged vs units recorded').toBe(units)
      expect(held, 'holds left').toEqual([])
      expect(leases.lostGiveBacks).toBe(0)
    } finally {
      await check.end()
      await pool.end().catch(() => {})
    }
  }, 60_000)
})

const KEY = '{acct_lease_outage}:credits'
/**
 * A decorator over `inner` with a lease of 300 ms whose store hold lives 1.3 s, holding the
 * charges of 100 requests (2 each): the charges in all.
 */
async function leaseWithCharges(inner: CounterStore, tag: string) {
  const counters = leasedCounters(inner, {
    minUnits: 4,
    rateMs: 100,
    flushEveryMs: 0,
    holdLeaseMs: 300,
    holdGraceMs: 1000,
    clockSkewMs: 0,
  })
  let charged = 0
  for (let i = 0; i < 100; i++) {
    expect((await counters.consume([creditHold(KEY, `${tag}${i}`, 500)], Date.now())).allowed).toBe(
      true,
    )
    await counters.settle(
      [{ type: 'release', key: KEY, holdId: `${tag}${i}`, charge: 2 }],
      Date.now(),
    )
    charged += 2
  }
  expect(counters.stats().localSettles, 'settled against a lease').toBeGreaterThan(0)
  expect(counters.stats().leases, 'a lease alive').toBe(1)
  return { counters, charged }
}

describe('a credit lease ended while Redis is out past its hold TTL', () => {
  let client: Redis | null = null
  let redisServer: RedisServer | undefined
  afterAll(() => client?.disconnect())
  const connect = async (ctx: TestContext) => {
    redisServer = await stores.redis(ctx)
    client ??= new Redis(redisServer.port, {
      host: '127.0.0.1',
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      commandTimeout: 300,
      retryStrategy: () => 100,
    })
    client.on('error', () => {})
    await ready(client)
    return client
  }

  it('killed and restarted with its data: the charges land once it is back', async (ctx) => {
    const redis = await connect(ctx)
    await redis.flushall()
    const storage = redisStorage({ client: redis })
    const { counters, charged } = await leaseWithCharges(storage.counters, 'k')
    await redisServer!.kill()
    const ended = counters.flush(Date.now(), true)
    // Down past the lease's store hold (1.3 s): nothing sent meanwhile landed.
    await sleep(3_000)
    await redisServer!.restart()
    await ended
    await counters.close(Date.now())
    // Before: the release given up after about 1.3 s, the charges lost (0 held for 200).
    expect(await storage.counters.held(KEY, Date.now())).toBe(charged)
    expect(counters.stats().lostGiveBacks).toBe(0)
  }, 30_000)

  it('frozen: the release sent before lands when it thaws, and is not charged again', async (ctx) => {
    const redis = await connect(ctx)
    await redis.flushall()
    const storage = redisStorage({ client: redis })
    const { counters, charged } = await leaseWithCharges(storage.counters, 'f')
    redisServer!.freeze(true)
    const ended = counters.flush(Date.now(), true)
    // Frozen past the lease's store hold (1.3 s): the release and its retries (those after the
    // lapse make the hold again first) wait in the connection, and run when it thaws.
    await sleep(3_000)
    redisServer!.freeze(false)
    await ended
    await counters.close(Date.now())
    expect(await storage.counters.held(KEY, Date.now())).toBe(charged)
  }, 30_000)

  it('frozen, shared with another instance whose call runs first at the thaw: the charges land once', async (ctx) => {
    const redis = await connect(ctx)
    await redis.flushall()
    const storage = redisStorage({ client: redis })
    const { counters, charged } = await leaseWithCharges(storage.counters, 's')
    // Another instance on its own connection (ioredis's defaults), taking a request's credit
    // hold on the same account.
    const other = new Redis(redisServer!.port, { host: '127.0.0.1' })
    other.on('error', () => {})
    try {
      await ready(other)
      const peer = redisStorage({ client: other }).counters
      redisServer!.freeze(true)
      // Its connection has a call waiting first: at the thaw Redis reads that connection's
      // calls before this instance's.
      const first = peer.consume([creditHold(KEY, 'peer-1', 30_000)], Date.now())
      await sleep(50)
      const ended = counters.flush(Date.now(), true)
      // Past the lease's store hold (1.3 s): the other instance's next call, at its time, finds
      // the hold lapsed.
      await sleep(3_000)
      const second = peer.consume([creditHold(KEY, 'peer-2', 30_000)], Date.now())
      await sleep(50)
      redisServer!.freeze(false)
      expect((await first).allowed).toBe(true)
      expect((await second).allowed).toBe(true)
      await ended
      await counters.close(Date.now())
      await peer.settle(
        [
          { type: 'release', key: KEY, holdId: 'peer-1', charge: 0 },
          { type: 'release', key: KEY, holdId: 'peer-2', charge: 0 },
        ],
        Date.now(),
      )
      // Before: nothing charged (0 for 200), the release at its time found the hold gone.
      expect(await storage.counters.held(KEY, Date.now()), 'credits charged').toBe(charged)
    } finally {
      other.disconnect()
    }
  }, 30_000)
})
