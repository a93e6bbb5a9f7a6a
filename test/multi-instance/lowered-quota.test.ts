/**
 * @module test/multi-instance/lowered-quota
 *
 * A key's quota lowered on one instance, while another instance holds a lease of it: two
 * instances share one store (Redis, then PostgreSQL), each its own storage object, change feed
 * and leases. B serves a burst on a daily quota of 100,000, so it holds a window lease with
 * units not used yet; A lowers the quota to what has been served. Once B has the change-feed
 * message, no request may pass on either instance: the count is at the new limit. Before, B
 * kept admitting from the lease taken under the old limit (every unused unit of it), so the
 * key was served beyond its new quota.
 */

import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { request } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, feedDelivered, testPrefix } from '../support/redis.js'

const SECRET = 'lowered-quota-secret-lowered-quota-secret'
const redis = await connectRedis()

function instance(storage: Storage): Tollbooth {
  return createTollbooth({
    secret: SECRET,
    storage,
    cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100 },
    failedAuth: false,
  })
}

/** Serves `n` concurrent requests of `key` on `tb`; the number admitted. */
async function burst(tb: Tollbooth, key: string, n: number): Promise<number> {
  const ds = await Promise.all(Array.from({ length: n }, () => tb.authenticate(request(key))))
  let served = 0
  for (const d of ds) {
    if (!d.allowed) continue
    served++
    await tb.settle(d, { status: 200 })
  }
  return served
}

async function lowerWhileLeased(storages: [Storage, Storage], account: string) {
  const [a, b] = storages.map(instance) as [Tollbooth, Tollbooth]
  try {
    const { key, record } = await a.keys.create({
      accountId: account,
      limits: { quotas: { daily: 100_000 } },
    })
    // B's burst makes the key hot there: it leases units of the quota and keeps some unused.
    let served = 0
    for (let i = 0; i < 20 && (b.stats().leases?.parkedUnits ?? 0) < 10; i++)
      served += await burst(b, key, 200)
    const parked = b.stats().leases!.parkedUnits
    expect(parked, 'B holds a quota lease with unused units').toBeGreaterThanOrEqual(10)

    // A lowers the quota to what has been served: nothing more may pass, anywhere.
    await a.keys.update(record.id, { limits: { quotas: { daily: served } } })
    await feedDelivered(storages[1])
    const after = (await burst(b, key, 50)) + (await burst(a, key, 50))
    expect(
      after,
      `admitted beyond the new daily quota of ${served} (B had ${parked} lease units parked under the old one)`,
    ).toBe(0)
    const d = await b.authenticate(request(key))
    expect(d.allowed).toBe(false)
    if (!d.allowed) expect(d.code).toBe('quota_exceeded')
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}

describe.skipIf(!redis)('a quota lowered while another instance leases it, on Redis', () => {
  const prefix = testPrefix('lowerq')
  const storages: Storage[] = []
  afterAll(async () => {
    for (const s of storages) await s.close?.()
    await deletePrefix(redis as Redis, prefix)
    await (redis as Redis).quit()
  })

  it('no request passes beyond the new limit on the instance holding the lease', async () => {
    const s = [
      redisStorage({ client: redis!, keyPrefix: prefix }),
      redisStorage({ client: redis!, keyPrefix: prefix }),
    ] as [Storage, Storage]
    storages.push(...s)
    await lowerWhileLeased(s, 'acct_lower_redis')
  })
})

describe.skipIf(skipPostgres)(
  'a quota lowered while another instance leases it, on PostgreSQL',
  () => {
    const pools: pg.Pool[] = []
    let drop: () => Promise<void> = async () => {}
    let schema = ''
    beforeAll(async () => {
      pools.push(newPool(6), newPool(6))
      const f = await freshSchema(pools[0]!)
      schema = f.schema
      drop = f.drop
    })
    afterAll(async () => {
      await drop()
      for (const p of pools) await p.end()
    })

    it('no request passes beyond the new limit on the instance holding the lease', async () => {
      const s: [Storage, Storage] = [
        postgresStorage({ pool: pools[0]!, schema }),
        postgresStorage({ pool: pools[1]!, schema }),
      ]
      try {
        await lowerWhileLeased(s, 'acct_lower_pg')
      } finally {
        for (const x of s) await x.close?.()
      }
    })
  },
)
