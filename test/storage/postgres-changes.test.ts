/**
 * @module test/storage/postgres-changes
 *
 * The LISTEN/NOTIFY change feed between instances (two pools on one schema): a key revoked on
 * one instance is refused by the other at once, although the other's cache would have kept it
 * for ten minutes (shown by a third instance without a feed, which still accepts it). The
 * listening client goes back to the pool when the last subscriber leaves, and a dropped
 * listening connection is replaced.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PostgresStorage, postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth, type Decision, manualClock, type Tollbooth } from '../../src/internal.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'

const SECRET = 'postgres-change-feed-secret-0123456789ab'
const T0 = Date.UTC(2026, 0, 15, 12)

/** Polls `probe` every 10 ms until it holds; fails after `ms` (a network round trip, not time logic). */
async function until(probe: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const request = (key: string) => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'GET',
  path: '/v1/thing',
})

/** Connections a pool has handed out and not got back. */
const checkedOut = (p: pg.Pool) => p.totalCount - p.idleCount

describe.skipIf(skipPostgres)('postgres change feed', () => {
  const pools: pg.Pool[] = []
  const storages: PostgresStorage[] = []
  let schema = ''
  let drop: () => Promise<void> = async () => {}
  const errors: unknown[] = []

  const instance = (options: Partial<Parameters<typeof postgresStorage>[0]> = {}) => {
    const pool = newPool(5)
    pools.push(pool)
    const storage = postgresStorage({ pool, schema, onError: (e) => errors.push(e), ...options })
    storages.push(storage)
    return { pool, storage }
  }

  beforeAll(async () => {
    const p = newPool(2)
    pools.push(p)
    const s = await freshSchema(p)
    schema = s.schema
    drop = s.drop
  })

  afterAll(async () => {
    for (const s of storages) await s.close()
    await drop()
    for (const p of pools) await p.end()
  })

  it('drops a revoked key from every instance at once', async () => {
    const clock = manualClock(T0)
    const cache = { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100 }
    const make = (storage: PostgresStorage | Omit<PostgresStorage, 'changes'>): Tollbooth =>
      createTollbooth({ secret: SECRET, clock, cache, storage })
    const one = make(instance().storage)
    const two = make(instance().storage)
    const { changes: _, ...noFeed } = instance().storage
    const three = make(noFeed)
    try {
      const { key, record } = await one.keys.create({ accountId: 'acct_feed', name: 'k' })
      const allowed = (d: Decision) => d.allowed
      expect(allowed(await two.authenticate(request(key)))).toBe(true)
      expect(allowed(await three.authenticate(request(key)))).toBe(true)
      await one.keys.revoke(record.id)
      await until(async () => !allowed(await two.authenticate(request(key))))
      expect(await two.authenticate(request(key))).toMatchObject({ status: 401 })
      // Without the feed, the cached entry still admits the revoked key.
      expect(allowed(await three.authenticate(request(key)))).toBe(true)
    } finally {
      await Promise.all([one.close(), two.close(), three.close()])
    }
  })

  it('holds one pooled connection while subscribed and returns it after', async () => {
    const { pool, storage } = instance()
    const seen: string[] = []
    const offA = await storage.changes.subscribe((h) => seen.push(`a:${h}`))
    const offB = await storage.changes.subscribe((h) => seen.push(`b:${h}`))
    expect(checkedOut(pool)).toBe(1)
    await instance().storage.changes.publish('h1')
    await until(() => seen.length === 2)
    expect(seen.sort()).toEqual(['a:h1', 'b:h1'])
    offA()
    expect(checkedOut(pool)).toBe(1)
    offB()
    await until(() => checkedOut(pool) === 0)
    // Resubscribing after the last one left listens again.
    const offC = await storage.changes.subscribe((h) => seen.push(`c:${h}`))
    await storage.changes.publish('h2')
    await until(() => seen.includes('c:h2'))
    offC()
    await until(() => checkedOut(pool) === 0)
  })

  it('listens again after the listening connection is killed', async () => {
    const { storage } = instance()
    const seen: string[] = []
    const off = await storage.changes.subscribe((h) => seen.push(h))
    const killed = await pools[0]!.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE query = $1 AND pid <> pg_backend_pid()`,
      [`LISTEN "tollbooth_${schema}"`],
    )
    expect(killed.rowCount).toBeGreaterThanOrEqual(1)
    await until(() => errors.length > 0)
    let n = 0
    await until(async () => {
      await storage.changes.publish(`after-${++n}`)
      return seen.some((h) => h.startsWith('after-'))
    })
    off()
  })
})
