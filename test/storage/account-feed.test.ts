/**
 * @module test/storage/account-feed
 *
 * Account changes travel on the change feed, on Redis pub/sub and on PostgreSQL
 * LISTEN/NOTIFY alike: two instances share one store, each with a ten-minute cache. Instance B
 * serves a request on the 1,000-credit plan (so it caches the account); instance A downgrades
 * the account to the 10-credit plan. B drops its cached view as soon as the message arrives
 * (not after its cache TTL) and serves 10 requests in all, not 100. A top-up on A is seen by
 * B the same way.
 */

import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { request, until } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const SECRET = 'account-feed-secret-account-feed-secret-42'
const redis = await connectRedis()

/** Two instances on `storages` (one each), ten-minute caches, a big and a small plan. */
function instances(storages: [Storage, Storage]): [Tollbooth, Tollbooth] {
  const make = (storage: Storage) =>
    createTollbooth({
      secret: SECRET,
      storage,
      cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100 },
      plans: { big: { monthlyCredits: 1000 }, small: { monthlyCredits: 10 } },
      failedAuth: false,
    })
  return [make(storages[0]), make(storages[1])]
}

async function downgradeAndTopUp(a: Tollbooth, b: Tollbooth, account: string) {
  const { key } = await a.keys.create({ accountId: account, name: 'k' })
  await a.accounts.setTier(account, 'big')
  const route = b.route({ cost: 1 })
  const first = await b.authenticate(request(key), route)
  expect(first.allowed).toBe(true)
  if (first.allowed) await b.settle(first, { status: 200 })
  expect((await b.accounts.get(account)).credits.limit).toBe(1000)

  await a.accounts.setTier(account, 'small')
  const tierMs = await until(async () => (await b.accounts.get(account)).tier === 'small')
  let served = 1
  for (let i = 0; i < 99; i++) {
    const d = await b.authenticate(request(key), route)
    if (!d.allowed) {
      expect(d.status).toBe(402)
      continue
    }
    served++
    await b.settle(d, { status: 200 })
  }
  expect(served).toBe(10)

  await a.accounts.addCredits(account, 5)
  const topUpMs = await until(async () => (await b.accounts.get(account)).balance === 5)
  expect((await b.accounts.get(account)).credits).toMatchObject({ used: 10, limit: 15 })
  return { tierMs, topUpMs }
}

describe.skipIf(!redis)('account changes on the Redis change feed', () => {
  const prefix = testPrefix('acctfeed')
  const storages: Storage[] = []
  afterAll(async () => {
    for (const s of storages) await s.close?.()
    await deletePrefix(redis as Redis, prefix)
    await (redis as Redis).quit()
  })

  it('drops the account on every instance at once: a downgrade to 10 credits serves 10', async () => {
    const s = [
      redisStorage({ client: redis!, keyPrefix: prefix }),
      redisStorage({ client: redis!, keyPrefix: prefix }),
    ] as [Storage, Storage]
    storages.push(...s)
    const [a, b] = instances(s)
    try {
      const ms = await downgradeAndTopUp(a, b, 'acct_feed_redis')
      console.log(`redis feed: tier seen in ${ms.tierMs} ms, top-up in ${ms.topUpMs} ms`)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })
})

describe.skipIf(skipPostgres)('account changes on the PostgreSQL change feed', () => {
  const pools: pg.Pool[] = []
  let schema = ''
  let drop: () => Promise<void> = async () => {}
  beforeAll(async () => {
    pools.push(newPool(5), newPool(5))
    const f = await freshSchema(pools[0]!)
    schema = f.schema
    drop = f.drop
  })
  afterAll(async () => {
    await drop()
    for (const p of pools) await p.end()
  })

  it('drops the account on every instance at once: a downgrade to 10 credits serves 10', async () => {
    const s: [Storage, Storage] = [
      postgresStorage({ pool: pools[0]!, schema }),
      postgresStorage({ pool: pools[1]!, schema }),
    ]
    const [a, b] = instances(s)
    try {
      const ms = await downgradeAndTopUp(a, b, 'acct_feed_pg')
      console.log(`postgres feed: tier seen in ${ms.tierMs} ms, top-up in ${ms.topUpMs} ms`)
    } finally {
      await Promise.all([a.close(), b.close()])
      for (const x of s) await x.close?.()
    }
  })
})
