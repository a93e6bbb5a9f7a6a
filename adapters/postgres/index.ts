/**
 * @module tollbooth/postgres
 *
 * Storage on PostgreSQL (through the user's `pg` Pool) for several instances sharing keys,
 * counters, usage and accounts, with a LISTEN/NOTIFY change feed so a revoked key is dropped
 * from every instance's cache at once. The schema ships as versioned SQL migrations, applied
 * by {@link migrate}.
 *
 * Durable data and counters can live apart: `{ ...postgresStorage({ pool }), counters:
 * redisStorage({ client }).counters }` keeps keys, usage and accounts in PostgreSQL and the
 * hot admission counters in Redis.
 */

import { z } from 'zod'
import {
  type ChangeFeed,
  fnOption,
  integer,
  parseOptions,
  type Storage,
} from '../../src/internal.js'
import { postgresAccounts, postgresSecrets } from './accounts.js'
import { postgresChanges } from './changes.js'
import { postgresCounters } from './counters.js'
import {
  createDb,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  deadlineFor,
  type PgPool,
  poolSchema,
  schemaNameSchema,
} from './db.js'
import { postgresIpBlocks } from './ip-blocks.js'
import { postgresKeys } from './keys.js'
import { postgresUsage } from './usage.js'

export type { PgPool } from './db.js'
export { DEFAULT_SCHEMA } from './db.js'
export {
  MIGRATIONS,
  type MigrateOptions,
  type MigrateResult,
  type Migration,
  migrate,
} from './migrate.js'
export { INIT_SQL } from './migrations/0001-init.js'
export { IP_BLOCKS_SQL } from './migrations/0002-ip-blocks.js'
export { USAGE_AGGREGATES_SQL } from './migrations/0003-usage-aggregates.js'

export interface PostgresStorageOptions {
  /**
   * The user's `pg` Pool. tollbooth never ends it; `close()` only returns what it borrowed.
   * Give it an `'error'` listener: an idle client whose server went away emits on the pool, and
   * unheard that ends the process (tollbooth listens on the clients it has checked out).
   */
  pool: PgPool
  /** The schema holding tollbooth's tables (as given to `migrate`). Default `tollbooth`. */
  schema?: string
  /**
   * Counter calls (admissions, settles, claims) on this instance between two background
   * deletions of expired counters (0 turns them off; then call `pruneCounters()` yourself).
   * Default 10 000.
   */
  pruneEvery?: number
  /**
   * Wait for the WAL flush of every admission's commit. Off by default: counter commits use
   * `synchronous_commit = off`, still atomic and isolated, so a crash of the server (not of
   * the app) can forget the last fraction of a second of counts, like Redis's default
   * `appendfsync everysec`; on, each admission waits for a disk flush (measured on the test
   * machine: p50 0.68 ms instead of 0.43 ms for two counters, 4 ms while other writers were busy).
   */
  durableCounters?: boolean
  /**
   * Use named prepared statements for the hot lookups (a key by hash: parsed and planned once
   * per connection, a third faster than unnamed statements as measured). Turn off behind a pooler that cannot
   * keep them (PgBouncer before 1.21 in transaction mode). Default true.
   */
  preparedStatements?: boolean
  /**
   * How long one counter transaction (an admission or a settle) may take, from its call: a
   * pooled connection obtained later is handed back unused, and on the server no statement of
   * it (a lock wait included) runs longer (`SET LOCAL statement_timeout`, `lock_timeout`), so an
   * admission the caller was answered 503 for does not commit later. Keep it below the core's
   * `storageTimeoutMs` by at least a round trip: `createTollbooth` throws a `ConfigError`
   * naming both when it is not below. Default 1,750, or less under a short `storageTimeoutMs`
   * (the shortest of the instances made on this storage): below it by a quarter of it, at most
   * 250 ms (750 for 1,000).
   */
  statementTimeoutMs?: number
  /**
   * The pool the change feed takes its one LISTEN connection from, when `pool` goes through a
   * pooler in transaction mode (PgBouncer, Supavisor, RDS Proxy): one that reaches PostgreSQL
   * directly or through session pooling (Supabase's port 5432, Neon's unpooled host). A LISTEN
   * through transaction pooling hears nothing; the feed finds that out (a probe that does not
   * come back), says so through `onError` and counts as down, so caches are trusted for
   * `cache.feedDownTtlMs` only. Default: `pool`.
   */
  listenPool?: PgPool
  /** Errors off the request path (a lost LISTEN connection). Default: `console.error`. */
  onError?: (err: unknown) => void
}

/** {@link Storage} with a change feed and the PostgreSQL-specific maintenance calls. */
export interface PostgresStorage extends Storage {
  changes: ChangeFeed
  /**
   * Deletes counters whose state has expired at `now` (idle rate limits, windows whose last
   * bucket has left, holds past their TTL) and returns how many. Rows an admission holds are
   * skipped. Runs by itself every `pruneEvery` admissions.
   */
  pruneCounters(now?: number): Promise<number>
  /** Stops the change feed and waits for a background prune; the pool stays open. */
  close(): Promise<void>
}

const optionsSchema = z
  .object({
    pool: poolSchema,
    listenPool: poolSchema.optional(),
    schema: schemaNameSchema,
    /** Admissions between background prunes of expired counters (0: never). */
    pruneEvery: integer(0).default(10_000),
    durableCounters: z.boolean().default(false),
    preparedStatements: z.boolean().default(true),
    statementTimeoutMs: integer(1).optional(),
    onError: fnOption<(err: unknown) => void>().optional(),
  })
  .strict()

/**
 * PostgreSQL storage. Run {@link migrate} once before first use (at deploy or at start).
 *
 * @param options.pool the user's `pg` Pool (one connection is held while the change feed has
 *   subscribers, so size the pool one above the concurrency you need)
 * @param [options.schema='tollbooth'] schema of the tables
 * @param [options.pruneEvery=10000] counter calls between background prunes of expired counters
 * @param [options.durableCounters=false] wait for the WAL flush of each admission's commit
 * @param [options.preparedStatements=true] prepare the hot lookups once per connection
 * @param [options.statementTimeoutMs] deadline of one counter transaction, below the core's
 *   `storageTimeoutMs` (default 1,750, or below a shorter `storageTimeoutMs` by a quarter of it)
 * @param [options.listenPool=options.pool] the pool of the change feed's LISTEN connection:
 *   direct or session-pooled, when `pool` goes through a pooler in transaction mode
 * @param [options.onError=console.error] errors off the request path
 * @returns a {@link PostgresStorage}; it opens no connection until used
 * @throws {ConfigError} naming `options.pool`, `options.schema`, `options.pruneEvery`,
 *   `options.durableCounters`, `options.preparedStatements`, `options.statementTimeoutMs`,
 *   `options.listenPool` or `options.onError`
 * @example
 * ```ts
 * import { Pool } from 'pg'
 * import { createTollbooth } from 'tollbooth'
 * import { migrate, postgresStorage } from 'tollbooth/postgres'
 *
 * const pool = new Pool({ connectionString: process.env.DATABASE_URL })
 * await migrate({ pool })
 * const tb = createTollbooth({ secret: process.env.TOLLBOOTH_SECRET, storage: postgresStorage({ pool }) })
 * ```
 */
export function postgresStorage(options: PostgresStorageOptions): PostgresStorage {
  const {
    pool,
    listenPool,
    schema,
    pruneEvery,
    statementTimeoutMs: given,
    durableCounters: durable,
    preparedStatements: prepare,
  } = parseOptions('postgresStorage', optionsSchema, options)
  const onError =
    options.onError ??
    ((err: unknown) =>
      console.error('[tollbooth/postgres]', err instanceof Error ? err.message : err))
  const db = createDb(pool, schema, prepare, given ?? DEFAULT_STATEMENT_TIMEOUT_MS, onError)
  // The shortest storageTimeoutMs of the instances made on it, when the deadline follows it.
  let followed = Infinity
  const counters = postgresCounters(db, pruneEvery, durable)
  const changes = postgresChanges(db, onError, listenPool)
  return {
    keys: postgresKeys(db),
    counters,
    usage: postgresUsage(db),
    accounts: postgresAccounts(db),
    secrets: postgresSecrets(db),
    ipBlocks: postgresIpBlocks(db),
    changes,
    pruneCounters: (now = Date.now()) => counters.prune(now),
    ...(given === undefined
      ? {
          storageTimeout(ms: number) {
            if (ms >= followed) return
            followed = ms
            db.deadlineMs = deadlineFor(ms)
          },
        }
      : { sendWait: { ms: given, option: 'postgresStorage({ statementTimeoutMs })' } }),
    closed: () =>
      (pool as { ending?: boolean }).ending === true
        ? 'tollbooth/postgres: options.pool was ended (pool.end())'
        : undefined,
    async close() {
      await changes.close()
      await counters.idle()
    },
  }
}
