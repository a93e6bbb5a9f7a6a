/**
 * @module sqlite/migrate
 *
 * `migrate()`: applies every migration not applied yet, all in one `BEGIN IMMEDIATE`
 * transaction with their rows in `tollbooth_migrations`, so two processes starting at once on
 * one file apply each step once (the second waits for the write lock, then finds nothing to
 * do). A file whose schema is newer than this version of tollbooth (a migration it does not
 * know) is refused.
 */

import { z } from 'zod'
import { ConfigError, parseOptions } from '../../src/internal.js'
import { createDb, type Db, open, openShape, refused, type SqliteDatabase } from './db.js'
import { MIGRATIONS } from './migrations.js'

export interface MigrateOptions {
  /** The user's database handle (better-sqlite3 or libsql); left open. */
  database?: SqliteDatabase
  /** Or a file to open (and close again). */
  path?: string
  /** How long to wait for another process's write lock. Default 1,500 ms. */
  busyTimeoutMs?: number
}

const migrateSchema = z.object(openShape).strict()

export interface MigrateResult {
  /** Names of the migrations this call applied (empty when the file was up to date). */
  applied: string[]
}

const TABLE = `CREATE TABLE IF NOT EXISTS tollbooth_migrations (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`

/** Applies what is missing on an open handle, or throws for a schema of another version. */
export function applyMigrations(fn: string, option: string, d: Db, path?: string): string[] {
  try {
    return d.writeNow(() => {
      d.db.exec(TABLE)
      const done = new Set(
        (d.db.prepare('SELECT id FROM tollbooth_migrations').all() as Array<{ id: number }>).map(
          (r) => r.id,
        ),
      )
      const known = new Set(MIGRATIONS.map((m) => m.id))
      const unknown = [...done].filter((id) => !known.has(id))
      if (unknown.length > 0) {
        throw new ConfigError(
          `${fn}: ${option} holds a tollbooth schema of a later version (migration ${Math.max(...unknown)}; this version knows up to ${MIGRATIONS[MIGRATIONS.length - 1]!.id}): upgrade tollbooth, or use another file`,
        )
      }
      const applied: string[] = []
      for (const m of MIGRATIONS) {
        if (done.has(m.id)) continue
        d.db.exec(m.sql)
        d.db
          .prepare('INSERT INTO tollbooth_migrations (id, name, applied_at) VALUES (?, ?, ?)')
          .run(m.id, m.name, Date.now())
        applied.push(m.name)
      }
      // Nothing to apply wrote nothing: a file SQLite opened read-only would be taken.
      if (applied.length === 0) probeWrite(d)
      return { value: applied, commit: applied.length > 0 }
    })
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw refused(fn, option, err, path)
  }
}

/**
 * Writes the file's header to itself, in a transaction the caller rolls back: SQLite opens a
 * file it may not write (a read-only mount, no write permission, a `readonly` handle)
 * read-only without a word, and reads succeed; this throws `SQLITE_READONLY` for such a file,
 * so it is refused when the storage is made, not at its first key create or usage flush.
 */
export function probeWrite(d: Db): void {
  const { user_version } = d.db.prepare('PRAGMA user_version').get() as { user_version: number }
  d.db.exec(`PRAGMA user_version = ${Number(user_version)}`)
}

/**
 * Brings the file's schema up to date. Safe on every start and from several processes at once.
 * `sqliteStorage()` runs it itself unless given `migrate: false`.
 *
 * @param options.database the user's handle, or `options.path` a file to open
 * @returns the migrations applied by this call
 * @throws {ConfigError} naming `options.database` or `options.path`: a path that cannot be
 *   opened, a file that is not a SQLite database, a schema of a later version
 * @example
 * ```ts
 * import { migrate } from 'tollbooth/sqlite'
 * await migrate({ path: 'data/tollbooth.db' })
 * ```
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const { db, owned } = open('migrate', parseOptions('migrate', migrateSchema, options))
  try {
    const option = options.database ? 'options.database' : 'options.path'
    return { applied: applyMigrations('migrate', option, createDb(db), options.path) }
  } finally {
    if (owned) db.close()
  }
}
