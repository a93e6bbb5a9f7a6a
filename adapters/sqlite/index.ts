/**
 * @module tollbooth/sqlite
 *
 * Storage in one SQLite file, for an API on one machine (one process, or several under a
 * process manager on the same file): keys, counters, usage and logs, accounts and sealed
 * provider keys, with no server to run, and nothing lost on a restart.
 *
 * - Driver: `better-sqlite3` (12 or later), an optional peer dependency; a `libsql` handle
 *   works too (the same API). Give your own handle (`database`) or a file (`path`).
 * - Schema: versioned migrations (`MIGRATIONS`), applied by {@link migrate}, which
 *   `sqliteStorage` runs itself unless told not to. A file of a later schema, or one that is
 *   not a SQLite database, is refused with a `ConfigError`; it is never recreated.
 * - Several processes on one file: WAL, and every write in a `BEGIN IMMEDIATE` transaction,
 *   so admissions see one serial order across processes and every limit stays exact; a
 *   revocation published by one process reaches the others within `changePollMs` (the change
 *   feed polls a table of changes by its growing id).
 * - Durability: each admission, settle, top-up and key change is committed before the call
 *   returns, and a commit survives the process being killed (`kill -9`); usage events and
 *   `lastUsedAt` wait in tollbooth's out-box until the next flush (`usage.flushIntervalMs`,
 *   and `tb.close()`), so a `kill -9` loses at most that interval's events, never a balance
 *   or a count. `synchronous: 'full'` also keeps the last commits through a power loss.
 */

import { z } from 'zod'
import {
  type ChangeFeed,
  ConfigError,
  fnOption,
  integer,
  markInProcess,
  parseOptions,
  type Storage,
} from '../../src/internal.js'
import { sqliteAccounts, sqliteSecrets } from './accounts.js'
import { sqliteChanges } from './changes.js'
import { startCheckpoints } from './checkpoint.js'
import { sqliteCounters } from './counters.js'
import {
  codeOf,
  createDb,
  type Db,
  diskFile,
  open,
  openShape,
  refused,
  type SqliteDatabase,
} from './db.js'
import { sqliteIpBlocks } from './ip-blocks.js'
import { sqliteKeys } from './keys.js'
import { applyMigrations, probeWrite } from './migrate.js'
import { MIGRATIONS } from './migrations.js'
import { sqliteUsage } from './usage.js'

export { type SqliteCounterBackend, sqliteCounterBackend } from './counters.js'
export type { SqliteDatabase, SqliteStatement } from './db.js'
export { type MigrateOptions, type MigrateResult, migrate } from './migrate.js'
export { INIT_SQL, MIGRATIONS, type Migration } from './migrations.js'

export interface SqliteStorageOptions {
  /**
   * Your own handle: `new Database(path)` of `better-sqlite3` or `libsql`. tollbooth sets its
   * pragmas (WAL, `synchronous`, `busy_timeout`) and never closes it.
   */
  database?: SqliteDatabase
  /** Or the file to open (with `better-sqlite3`, else `libsql`); its folder must exist. */
  path?: string
  /**
   * Apply the migrations the file lacks when the storage is made. Default true; with false, a
   * file that is not up to date is refused (run {@link migrate} at deploy).
   */
  migrate?: boolean
  /**
   * How long a write waits for another process's write lock before it fails (503). Keep it
   * below the core's `storageTimeoutMs`. Default 1,500 ms.
   */
  busyTimeoutMs?: number
  /**
   * `'normal'` (default): a commit survives the process being killed, and a power loss may
   * take back the last commits. `'full'`: each commit waits for the disk.
   */
  synchronous?: 'normal' | 'full'
  /**
   * How often a process with subscribers reads the change feed: the bound on how long another
   * process may still accept a key revoked on this one. Default 250 ms.
   */
  changePollMs?: number
  /**
   * Counter calls between two sweeps of expired counters (0: never). A sweep runs off the
   * request path, over the table in slices of 2,000 rows 10 ms apart. Default 10,000.
   */
  pruneEvery?: number
  /**
   * How often a worker thread checkpoints the WAL into the file (its `fsync`s then never hold
   * up a request); 0 leaves it to SQLite, in the commit that fills the WAL past 1,000 pages.
   * Default 250 ms.
   */
  checkpointMs?: number
  /** Errors off the request path (a failed poll of the change feed). Default: `console.error`. */
  onError?: (err: unknown) => void
}

const optionsSchema = z
  .object({
    ...openShape,
    migrate: z.boolean().default(true),
    changePollMs: integer(1).default(250),
    pruneEvery: integer(0).default(10_000),
    checkpointMs: integer(0).default(250),
    onError: fnOption<(err: unknown) => void>().optional(),
  })
  .strict()

/** {@link Storage} with a change feed and the SQLite-specific calls. */
export interface SqliteStorage extends Storage {
  changes: ChangeFeed
  /** The handle in use (the one given, or the one opened for `path`). */
  database: SqliteDatabase
  /** Deletes counters whose state has expired at `now`; returns how many. */
  pruneCounters(now?: number): Promise<number>
  /** Stops the change feed, and closes the file when the storage opened it. */
  close(): Promise<void>
}

/**
 * SQLite storage in one file.
 *
 * @param options.database your `better-sqlite3` (or `libsql`) handle, or `options.path` a file
 * @param [options.migrate=true] apply missing migrations now
 * @param [options.busyTimeoutMs=1500] wait for another process's write lock at most this long
 *   (on timers, serving meanwhile; a handle given keeps its own `busy_timeout`)
 * @param [options.synchronous='normal'] `'full'` to wait for the disk on each commit
 * @param [options.changePollMs=250] how often other processes' changes are read
 * @param [options.pruneEvery=10000] counter calls between sweeps of expired counters
 * @param [options.checkpointMs=250] WAL checkpoints by a worker thread this often (0: SQLite's)
 * @param [options.onError=console.error] errors off the request path
 * @throws {ConfigError} naming the option: a path that cannot be opened, a file that is not a
 *   SQLite database (never overwritten), a schema of a later version, a bad value
 * @example
 * ```ts
 * import { createTollbooth } from 'tollbooth'
 * import { sqliteStorage } from 'tollbooth/sqlite'
 *
 * const tb = createTollbooth({ secret: process.env.TOLLBOOTH_SECRET, storage: sqliteStorage({ path: 'data/tollbooth.db' }) })
 * ```
 */
export function sqliteStorage(options: SqliteStorageOptions): SqliteStorage {
  const fn = 'sqliteStorage'
  const o = parseOptions(fn, optionsSchema, options)
  const runMigrations = o.migrate
  const onError =
    o.onError ??
    ((err: unknown) =>
      console.error('[tollbooth/sqlite]', err instanceof Error ? err.message : err))
  const { db, owned } = open(fn, o)
  const option = o.database ? 'options.database' : 'options.path'
  const file = diskFile(db)
  // A file it opened, tollbooth waits for another process's lock on timers (the process goes
  // on serving), past the migrations; a handle given keeps its own busy_timeout.
  const d = createDb(
    db,
    file === null ? undefined : { file, onGone: onError },
    owned ? o.busyTimeoutMs : 0,
  )
  try {
    if (runMigrations) applyMigrations(fn, option, d, o.path)
    else checkSchema(d, option, o.path)
    if (owned) db.exec('PRAGMA busy_timeout = 0')
  } catch (err) {
    if (owned) db.close()
    throw err
  }
  const counters = sqliteCounters(d, o.pruneEvery)
  const stopCheckpoints = startCheckpoints(db, o.checkpointMs, onError)
  // Its publisher reads its own message back in the same call: it cannot go silent without
  // an error, so the core sends it no feed probes (a row each `cache.feedProbeMs`).
  const changes = markInProcess(sqliteChanges(d, o.changePollMs, onError))
  // Calls on a local file: the core skips its timeout timer; a lock held too long fails after
  // busyTimeoutMs.
  const keys = markInProcess(sqliteKeys(d))
  const accounts = markInProcess(sqliteAccounts(d))
  let closed = false
  return {
    keys,
    counters,
    usage: sqliteUsage(d),
    accounts,
    secrets: sqliteSecrets(d),
    ipBlocks: sqliteIpBlocks(d),
    changes,
    database: db,
    pruneCounters: async (now = Date.now()) => counters.prune(now),
    closed: () =>
      db.open === false ? `tollbooth/sqlite: ${option} was closed (db.close())` : undefined,
    async close() {
      if (closed) return
      closed = true
      d.closed = true
      changes.close()
      // Calls waiting for the end of this turn are committed before the file closes.
      await counters.flush()
      await stopCheckpoints?.()
      if (owned) db.close()
    },
  }
}

/** With `migrate: false`: the file must hold every migration this version knows, no later one. */
function checkSchema(d: Db, option: string, path: string | undefined): void {
  let id: number | null = null
  try {
    id = (
      d.db.prepare('SELECT max(id) AS id FROM tollbooth_migrations').get() as { id: number | null }
    ).id
  } catch (err) {
    // No table: a file never migrated. A damaged file is refused as such.
    if (codeOf(err) !== 'SQLITE_ERROR') throw refused('sqliteStorage', option, err)
  }
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.id
  if (id === latest) {
    try {
      d.writeNow(() => {
        probeWrite(d)
        return { value: undefined, commit: false }
      })
    } catch (err) {
      throw refused('sqliteStorage', option, err, path)
    }
    return
  }
  throw new ConfigError(
    id !== null && id > latest
      ? `sqliteStorage: ${option} holds a tollbooth schema of a later version (migration ${id}; this version knows up to ${latest}): upgrade tollbooth, or use another file`
      : `sqliteStorage: ${option} is not migrated (schema at ${id ?? 'none'}, needs ${latest}): run \`await migrate({ ... })\` from tollbooth/sqlite, or leave options.migrate on`,
  )
}
