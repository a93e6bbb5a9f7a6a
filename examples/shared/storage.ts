/**
 * @module examples/shared/storage
 *
 * Where the examples keep their keys, counters and usage: by default one SQLite file,
 * `tollbooth.db` in the data folder (`DATA_DIR`, default `./data`, created if missing), so a
 * restart keeps every key, balance, count and log; or the servers named by `REDIS_URL` and
 * `DATABASE_URL`. With both, PostgreSQL keeps keys, usage and accounts and Redis the hot
 * admission counters (the split `tollbooth/postgres` recommends). `TOLLBOOTH_STORAGE=memory`
 * runs on the in-memory store (nothing kept).
 * Every example's `server.ts` calls {@link storageFromEnv}; the tests call {@link openStorage}
 * with explicit URLs.
 */

import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { Redis } from 'ioredis'
import pg from 'pg'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import type { Storage } from '../../src/index.js'

/** Where to connect; nothing given: the in-memory storage. */
export interface StorageConfig {
  /** `redis://…`: counters (and, without `databaseUrl`, everything) in Redis. */
  redisUrl?: string | undefined
  /** Prefix of every Redis key and of the change channel. Default `tollbooth:`. */
  redisPrefix?: string | undefined
  /** `postgres://…`: keys, usage and accounts in PostgreSQL, migrated at start. */
  databaseUrl?: string | undefined
  /** The schema of tollbooth's tables. Default `tollbooth`. */
  databaseSchema?: string | undefined
  /** Without either URL: the SQLite file (its folder is created). Nothing: in memory. */
  sqlitePath?: string | undefined
}

/** An opened storage: undefined for the in-memory default, and how to close the connections. */
export interface OpenedStorage {
  /** Pass to `createTollbooth({ storage })`; undefined means the in-memory default. */
  storage: Storage | undefined
  /** `memory`, `sqlite`, `redis`, `postgres` or `postgres+redis`, for the start-up banner. */
  label: string
  /** The SQLite file, when on SQLite (printed at start as `data: …`). */
  file?: string
  /** Closes what this module opened (call after `tb.close()`). */
  close(): Promise<void>
}

/**
 * Opens the storage `config` names. Redis is connected and PostgreSQL migrated before it
 * returns, so a wrong URL fails the start, not the first request.
 *
 * @throws the client's error when a server cannot be reached
 */
export async function openStorage(config: StorageConfig): Promise<OpenedStorage> {
  const closers: Array<() => Promise<unknown>> = []
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {})
  }
  try {
    let redis: Storage | undefined
    let postgres: Storage | undefined
    if (config.redisUrl) {
      const client = new Redis(config.redisUrl, {
        // The options `tollbooth/redis` recommends: an outage turns into fast 503s.
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        autoResendUnfulfilledCommands: false,
        connectTimeout: 2000,
        commandTimeout: 1000,
        lazyConnect: true,
      })
      client.on('error', (err) => console.error('[redis]', err.message))
      closers.push(() => client.quit())
      await client.connect()
      redis = redisStorage({ client, keyPrefix: config.redisPrefix ?? 'tollbooth:' })
      closers.push(() => redis?.close?.() ?? Promise.resolve())
    }
    if (config.databaseUrl) {
      const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 10 })
      // An idle client whose server restarted emits 'error' on the pool; unheard, it would end
      // the process. The pool drops that client and connects anew on the next query.
      pool.on('error', (err) => console.error('[postgres]', err.message))
      closers.push(() => pool.end())
      const schema = config.databaseSchema ?? 'tollbooth'
      await migrate({ pool, schema })
      postgres = postgresStorage({ pool, schema })
      closers.push(() => postgres?.close?.() ?? Promise.resolve())
    }
    if (postgres && redis)
      return {
        storage: { ...postgres, counters: redis.counters },
        label: 'postgres+redis',
        close,
      }
    if (postgres) return { storage: postgres, label: 'postgres', close }
    if (redis) return { storage: redis, label: 'redis', close }
    if (config.sqlitePath) {
      const file = resolve(config.sqlitePath)
      mkdirSync(resolve(file, '..'), { recursive: true })
      const sqlite = sqliteStorage({ path: file })
      closers.push(() => sqlite.close())
      return { storage: sqlite, label: 'sqlite', file, close }
    }
    return { storage: undefined, label: 'memory', close }
  } catch (err) {
    await close()
    throw err
  }
}

/**
 * {@link openStorage} from `REDIS_URL`, `REDIS_PREFIX`, `DATABASE_URL` and `DATABASE_SCHEMA`;
 * without a URL, SQLite in `DATA_DIR` (default `./data`), or memory with
 * `TOLLBOOTH_STORAGE=memory`.
 */
export function storageFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<OpenedStorage> {
  return openStorage({
    sqlitePath:
      env['TOLLBOOTH_STORAGE'] === 'memory'
        ? undefined
        : resolve(env['DATA_DIR'] || 'data', 'tollbooth.db'),
    redisUrl: env['REDIS_URL'] || undefined,
    redisPrefix: env['REDIS_PREFIX'] || undefined,
    databaseUrl: env['DATABASE_URL'] || undefined,
    databaseSchema: env['DATABASE_SCHEMA'] || undefined,
  })
}

/**
 * An account id for the keys printed at start: fixed on the in-memory storage, fresh on a
 * durable one, so each start begins with unused credits.
 */
export function demoAccountId(base: string, opened: OpenedStorage): string {
  return opened.storage ? `${base}_${Date.now().toString(36)}` : base
}
