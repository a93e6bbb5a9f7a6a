/**
 * @module test/support/stores
 *
 * The four stores a suite runs the same cases on: memory, a SQLite file, Redis (a fresh key
 * prefix) and PostgreSQL (a fresh schema), each dropped after the suite.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { memoryStorage, type Storage } from '../../src/index.js'
import { freshSchema, newPool, skipPostgres } from './postgres.js'
import { connectRedis, deletePrefix, testPrefix } from './redis.js'

/**
 * Each store's factory, by name; null when its server is down and not required. A store made
 * is dropped after the suite (`afterAll`), with the Redis client and PostgreSQL pool.
 *
 * @param tag names the SQLite folder and the Redis key prefix
 * @param poolSize the PostgreSQL pool's connections
 */
export async function fourStores(
  tag: string,
  poolSize = 4,
): Promise<Record<string, (() => Promise<Storage>) | null>> {
  const redis = await connectRedis()
  const pool = skipPostgres ? null : newPool(poolSize)
  const dir = mkdtempSync(join(tmpdir(), `tollbooth-${tag}-`))
  const cleanups: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of cleanups.splice(0)) await c()
    redis?.disconnect()
    await pool?.end()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    memory: async () => memoryStorage(),
    'SQLite file': async () =>
      sqliteStorage({ path: join(dir, `${Math.random().toString(36).slice(2)}.db`) }),
    Redis: redis
      ? async () => {
          const keyPrefix = testPrefix(tag)
          cleanups.push(() => deletePrefix(redis, keyPrefix).then(() => {}))
          return redisStorage({ client: redis, keyPrefix })
        }
      : null,
    PostgreSQL: pool
      ? async () => {
          const fresh = await freshSchema(pool)
          cleanups.push(fresh.drop)
          return postgresStorage({ pool, schema: fresh.schema })
        }
      : null,
  }
}

/** `storage` as a store written before `AccountStore.topUp` existed sees it: without it. */
export function withoutTopUp(storage: Storage): Storage {
  const { topUp: _, ...accounts } = storage.accounts
  return { ...storage, accounts: accounts as Storage['accounts'] }
}
