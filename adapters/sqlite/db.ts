/**
 * @module sqlite/db
 *
 * What every SQLite store shares: the driver's shape (the synchronous `better-sqlite3` API,
 * which `libsql` also has), opening a file by path, the connection's settings, one
 * `BEGIN IMMEDIATE` transaction, statements prepared once, and the translation of the
 * driver's errors: a file that is not a database, a busy lock past `busyTimeoutMs`, a full
 * disk, a file that can no longer be written.
 *
 * Settings of every connection (`configure`): WAL (readers never wait for the writer, and a
 * commit is one append to the `-wal` file), `synchronous = NORMAL` (a committed transaction
 * survives the process being killed; only a power loss or an OS crash may take back the last
 * commits since the previous checkpoint; `synchronous: 'full'` waits for the disk on every
 * commit instead) and `busy_timeout` (`busyTimeoutMs`: how long the migrations wait for
 * another process's write lock; past them a file tollbooth opened gets 0, and each call waits
 * for the lock itself on timers, up to `busyTimeoutMs`, while the process serves others; then
 * the call fails with `StorageUnavailableError`, a 503).
 */

import { statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { z } from 'zod'
import {
  ConfigError,
  integer,
  objectOption,
  optionError,
  StorageUnavailableError,
} from '../../src/internal.js'
import { MIGRATIONS } from './migrations.js'

/** One prepared statement of the driver (`better-sqlite3`'s `Statement`, or `libsql`'s). */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number | bigint }
  get(...params: unknown[]): unknown
  all(...params: unknown[]): unknown[]
}

/**
 * The database handle tollbooth needs: `new Database(path)` of `better-sqlite3` (12 or later)
 * or of `libsql`. tollbooth never closes a handle it was given.
 */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  exec(sql: string): unknown
  close(): unknown
  /** False once closed (`better-sqlite3` and `libsql` both have it). */
  readonly open?: boolean
  readonly name?: string
  readonly inTransaction?: boolean
}

/** The driver loaded to open `options.path`: `better-sqlite3`'s default export. */
type Driver = new (path: string, options?: { timeout?: number }) => SqliteDatabase

/** A module-relative `require`, in the ESM and the CommonJS builds alike. */
function requireDriver(name: string): Driver {
  // The CommonJS build gets `import.meta.url` from tsup's shim (`shims: true`).
  const mod = createRequire(import.meta.url)(name) as Driver | { default: Driver }
  return typeof mod === 'function' ? mod : mod.default
}

/**
 * The options every entry point shares (`sqliteStorage`, `migrate`), checked with
 * `parseOptions` by each entry's own strict schema.
 */
export const openShape = {
  database: objectOption<SqliteDatabase>(
    (v) =>
      typeof (v as Partial<SqliteDatabase> | null)?.prepare === 'function' &&
      typeof (v as Partial<SqliteDatabase> | null)?.exec === 'function',
    'must be a better-sqlite3 or libsql Database (new Database(path))',
  ).optional(),
  path: z
    .string({ error: 'must be a file path' })
    .min(1, 'must be a file path')
    // The driver hands the path to C, which would end it at the NUL and open another file.
    .refine((p) => !p.includes('\0'), 'must not contain a NUL character')
    .optional(),
  busyTimeoutMs: integer(0).default(1500),
  synchronous: z
    .enum(['normal', 'full'], { error: "must be 'normal' or 'full'" })
    .default('normal'),
}

export type OpenOptions = z.output<z.ZodObject<typeof openShape>>

/** The `synchronous` pragma's values, by option. */
const SYNCHRONOUS = { normal: 'NORMAL', full: 'FULL' } as const

/**
 * Opens the file when given a path (with `better-sqlite3`, else `libsql`, whichever is
 * installed), or takes the handle given, and sets the connection's pragmas.
 *
 * @param o the shared options, already parsed by the entry's schema ({@link openShape})
 * @throws {ConfigError} naming `options.database` or `options.path`: neither or both given, a
 *   path that cannot be opened, a file that is not a database
 */
export function open(fn: string, o: OpenOptions): { db: SqliteDatabase; owned: boolean } {
  if ((o.database === undefined) === (o.path === undefined)) {
    throw optionError(
      fn,
      'options',
      'must give exactly one of options.database (a better-sqlite3 or libsql Database) and options.path (a file)',
    )
  }
  let db: SqliteDatabase
  let owned = false
  let option = 'options.database'
  if (o.database !== undefined) db = o.database
  else {
    option = 'options.path'
    const Database = loadDriver(fn)
    try {
      db = new Database(o.path!, { timeout: o.busyTimeoutMs })
    } catch (err) {
      // better-sqlite3 creates the file, not its folder: say what to do, not only what failed.
      const folder = /directory does not exist|SQLITE_CANTOPEN|unable to open/i.test(message(err))
        ? ' (create its folder first: the file is created, the folder is not)'
        : ''
      throw new ConfigError(
        `${fn}: options.path ${JSON.stringify(o.path)} cannot be opened: ${message(err)}${folder}`,
        { cause: err },
      )
    }
    owned = true
  }
  try {
    configure(db, o.busyTimeoutMs, SYNCHRONOUS[o.synchronous])
  } catch (err) {
    if (owned) db.close()
    throw refused(fn, option, err, o.path)
  }
  return { db, owned }
}

function loadDriver(fn: string): Driver {
  const errors: string[] = []
  for (const name of ['better-sqlite3', 'libsql']) {
    try {
      return requireDriver(name)
    } catch (err) {
      errors.push(`${name}: ${message(err)}`)
    }
  }
  throw new ConfigError(
    `${fn}: options.path needs the better-sqlite3 package (npm install better-sqlite3), or libsql; neither loads (${errors.join('; ')})`,
  )
}

/** The connection's settings; reading the journal mode also reads the file's header. */
function configure(db: SqliteDatabase, busyTimeoutMs: number, sync: string): void {
  db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
  const mode = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode?: string }
  if (mode?.journal_mode !== 'wal' && mode?.journal_mode !== 'memory') {
    throw new Error(`journal_mode WAL was refused (${String(mode?.journal_mode)})`)
  }
  db.exec(`PRAGMA synchronous = ${sync}`)
  db.exec('PRAGMA foreign_keys = OFF')
}

/** The message of a driver's error. */
export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The driver's error code (`SQLITE_BUSY`, `SQLITE_NOTADB`, …), when it has one. */
export function codeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null
  const c = typeof e?.code === 'string' && e.code.startsWith('SQLITE') ? e.code : e?.cause?.code
  return typeof c === 'string' ? c : ''
}

/** A file that is not a database (or whose pages are damaged): refused, never recreated. */
export function refused(fn: string, option: string, err: unknown, path?: string): Error {
  const code = codeOf(err)
  const where = path === undefined ? option : `${option} ${JSON.stringify(path)}`
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new ConfigError(
      `${fn}: ${where} is not a usable SQLite database (${code}: ${message(err)}); tollbooth will not overwrite it: restore it from a backup, or move it away to start empty`,
      { cause: err },
    )
  }
  if (
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_PERM')
  ) {
    return new ConfigError(
      `${fn}: ${where} cannot be opened for writing (${code}: ${message(err)})`,
      {
        cause: err,
      },
    )
  }
  return new ConfigError(`${fn}: ${where}: ${message(err)}`, { cause: err })
}

/** A value now, or once the file's write lock was waited for (see {@link Db.run}). */
export type Waited<T> = T | Promise<T>

/** The shared state of one storage value. */
export interface Db {
  db: SqliteDatabase
  /** A statement prepared once per storage value. */
  stmt(sql: string): SqliteStatement
  /**
   * Runs `fn` in one `BEGIN IMMEDIATE` transaction: it takes the file's write lock first (a
   * writer of another process is waited for, up to `busyTimeoutMs`; see `run`), so what `fn`
   * reads stays true until the commit. `fn` returns whether to commit; a throw rolls back.
   */
  write<T>(fn: () => { value: T; commit: boolean }): Waited<T>
  /** `write` that always commits. */
  tx<T>(fn: () => T): Waited<T>
  /**
   * Runs `fn`, with a busy lock or a damaged file turned into tollbooth's errors. `fn` is one
   * statement, or statements each of which may run again (it is tried again whole when the
   * lock was busy). The value comes at once when the lock was free; when another process held
   * it, the call waits for it on timers, 1 ms doubling to 25 ms between tries, up to
   * `busyTimeoutMs`, and the process goes on serving meanwhile (the driver's own wait, its
   * busy handler, would stop the whole process). A handle given as `options.database` keeps
   * its `busy_timeout` (the driver's wait): its first try waits there, synchronously.
   */
  run<T>(fn: () => T): Waited<T>
  /** `write`, synchronously: for the work done when the storage is made (migrations). */
  writeNow<T>(fn: () => { value: T; commit: boolean }): T
  /** Set by the storage's `close()`: work spread over several turns stops there. */
  closed: boolean
  /**
   * Set once the file's path no longer leads to the file open (deleted, or another moved in
   * over its name): every call then throws it (see {@link watchFile}).
   */
  gone: StorageUnavailableError | null
}

/**
 * Rows one slice of background work takes (a usage prune's events, the counters' sweep): one
 * short transaction, a few milliseconds of the file's write lock and of the event loop, where
 * one statement over a large table held them for seconds and other processes' calls failed at
 * `busyTimeoutMs`.
 */
export const SLICE_ROWS = 2000
/** The pause between two slices, for the calls of every process on the file. */
export const SLICE_PAUSE_MS = 10

/**
 * Waits {@link SLICE_PAUSE_MS} before the next slice; false when the storage closed meanwhile
 * (the work stops there: each slice is whole, the rest waits for the next run).
 */
export async function nextSlice(d: Db): Promise<boolean> {
  await new Promise((resolve) => setTimeout(resolve, SLICE_PAUSE_MS))
  return !d.closed
}

/** The file on disk a handle has open, or null (a database in memory, a `file:` URI). */
export function diskFile(db: SqliteDatabase): string | null {
  const file = db.name
  return !file || file === ':memory:' || file.startsWith('file:') ? null : file
}

/**
 * How often at most a call looks at the file's path (one `stat`, about 1.5 µs) to see that it
 * still leads to the file this process has open. Writes to a file deleted or replaced within
 * this time before the check are lost with it.
 */
export const FILE_CHECK_MS = 100

/**
 * What {@link createDb} checks the file against: its path (made absolute when the storage is
 * made) and a call for the error when the path no longer leads to it, reported once.
 */
export interface FileWatch {
  file: string
  onGone: (err: StorageUnavailableError) => void
}

/**
 * A check that the path still leads to the file opened (same device and inode), run at most
 * every {@link FILE_CHECK_MS}. A file deleted, or replaced by another moved in over its name,
 * stays open and writable to this process, and SQLite does not notice in WAL mode; every write
 * would then go where no process started later looks. Null when the file cannot be looked at.
 */
function watchFile(watch: FileWatch): ((d: Db) => void) | null {
  const file = resolve(watch.file)
  const opened = statSync(file, { throwIfNoEntry: false })
  if (!opened) return null
  let next = performance.now() + FILE_CHECK_MS
  let checked = Date.now()
  return (d) => {
    if (d.gone) throw d.gone
    const now = performance.now()
    if (now < next) return
    next = now + FILE_CHECK_MS
    let seen: ReturnType<typeof statSync>
    try {
      seen = statSync(file, { throwIfNoEntry: false })
    } catch {
      // The folder cannot be read this moment (permissions, a stale mount): not a replacement.
      return
    }
    if (seen && seen.dev === opened.dev && seen.ino === opened.ino) {
      checked = Date.now()
      return
    }
    d.gone = new StorageUnavailableError(
      `tollbooth/sqlite: the database file ${JSON.stringify(file)} was ${seen ? 'replaced by another file' : 'deleted'} while this process had it open; it no longer reads or writes it (what it wrote after ${new Date(checked).toISOString()} is only in the old file): restart every process using the file`,
    )
    watch.onGone(d.gone)
    throw d.gone
  }
}

/** Whether the driver's error is another connection's lock. */
function busy(err: unknown): boolean {
  const code = codeOf(err)
  return code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED'
}

/** The longest pause between two tries for the write lock. */
const LOCK_RETRY_MAX_MS = 25

/**
 * @param waitMs how long a call waits for another connection's lock on timers (the storage's
 *   `busyTimeoutMs` when it opened the file and set the handle's own `busy_timeout` to 0);
 *   0: not at all (the handle's `busy_timeout` waits, synchronously)
 */
export function createDb(db: SqliteDatabase, watch?: FileWatch, waitMs = 0): Db {
  const cache = new Map<string, SqliteStatement>()
  const stmt = (sql: string) => {
    let s = cache.get(sql)
    if (!s) {
      s = db.prepare(sql)
      cache.set(sql, s)
    }
    return s
  }
  const check = watch ? watchFile(watch) : null
  const runNow = <T>(fn: () => T): T => {
    if (check) check(d)
    try {
      return fn()
    } catch (err) {
      throw translate(err, db)
    }
  }
  /** Whether a try that failed with `err` may be made again: the lock was busy, nothing began. */
  const again = (err: unknown, mayRetry: () => boolean) =>
    waitMs > 0 && busy(err) && db.inTransaction !== true && mayRetry()
  /** Tries `fn` again on timers while the lock stays busy, up to `waitMs` from now. */
  const later = async <T>(fn: () => T, first: unknown, mayRetry: () => boolean): Promise<T> => {
    const deadline = performance.now() + waitMs
    let err = first
    for (let pause = 1; ; pause = Math.min(pause * 2, LOCK_RETRY_MAX_MS)) {
      const left = deadline - performance.now()
      if (left <= 0) throw translate(err, db)
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)))
      if (check) check(d)
      try {
        return fn()
      } catch (e) {
        if (!again(e, mayRetry)) throw translate(e, db)
        err = e
      }
    }
  }
  const always = () => true
  const run = <T>(fn: () => T, mayRetry = always): Waited<T> => {
    if (check) check(d)
    try {
      return fn()
    } catch (err) {
      if (again(err, mayRetry)) return later(fn, err, mayRetry)
      throw translate(err, db)
    }
  }
  /** `fn` in one `BEGIN IMMEDIATE` transaction: committed, or rolled back when it says so or throws. */
  const inTx = <T>(fn: () => { value: T; commit: boolean }) => {
    stmt('BEGIN IMMEDIATE').run()
    let out: { value: T; commit: boolean }
    try {
      out = fn()
    } catch (err) {
      if (db.inTransaction !== false) stmt('ROLLBACK').run()
      throw err
    }
    stmt(out.commit ? 'COMMIT' : 'ROLLBACK').run()
    return out.value
  }
  // Tried again only when its BEGIN found the lock busy: `fn` runs once, in the same turn as
  // the BEGIN that took the lock (nothing else of the process runs inside the transaction).
  const write = <T>(fn: () => { value: T; commit: boolean }): Waited<T> => {
    let began = false
    return run(
      () =>
        inTx(() => {
          began = true
          return fn()
        }),
      () => !began,
    )
  }
  const d: Db = {
    db,
    stmt,
    write,
    tx: (fn) => write(() => ({ value: fn(), commit: true })),
    run: (fn) => run(fn),
    writeNow: (fn) => runNow(() => inTx(fn)),
    closed: false,
    gone: null,
  }
  return d
}

/**
 * The migration a later version of tollbooth applied to the file, past the last this version
 * knows; null when there is none (or the table cannot be read).
 */
export function laterSchema(db: SqliteDatabase): number | null {
  try {
    const { id } = db.prepare('SELECT max(id) AS id FROM tollbooth_migrations').get() as {
      id: number | null
    }
    return id !== null && id > MIGRATIONS[MIGRATIONS.length - 1]!.id ? id : null
  } catch {
    return null
  }
}

/**
 * A lock held past `busyTimeoutMs`, a damaged file, a full disk, a file that can no longer be
 * written, an I/O error: the storage being unavailable (503, a message saying which), not a bug.
 * So is a statement the schema no longer takes (no such column, an upsert on a key the table
 * lost) once a later version of tollbooth, running beside this one, has migrated the file past
 * what this one knows (read again only then, with `db`).
 */
export function translate(err: unknown, db?: SqliteDatabase): unknown {
  const code = codeOf(err)
  const later = code === 'SQLITE_ERROR' && db ? laterSchema(db) : null
  if (later !== null) {
    return new StorageUnavailableError(
      `tollbooth/sqlite: the database file was migrated by a later version of tollbooth (migration ${later}; this version knows up to ${MIGRATIONS[MIGRATIONS.length - 1]!.id}), and this call's statement no longer fits it (${message(err)}): run the later version here too`,
      { cause: err },
    )
  }
  if (busy(err)) {
    return new StorageUnavailableError(
      `tollbooth/sqlite: the database file stayed locked by another connection past busyTimeoutMs (${code}); nothing was committed`,
      { cause: err },
    )
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new StorageUnavailableError(
      `tollbooth/sqlite: the database file is damaged (${code}: ${message(err)}); restore it from a backup`,
      { cause: err },
    )
  }
  // The file or its disk failing a write: the storage is unavailable (503), not a bug (500).
  if (code === 'SQLITE_FULL') {
    return new StorageUnavailableError(
      `tollbooth/sqlite: the disk holding the database file is full (${code}); the write failed: free space on that disk`,
      { cause: err },
    )
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return new StorageUnavailableError(
      `tollbooth/sqlite: the database file can no longer be written (${code}: ${message(err)}): check its mount and permissions`,
      { cause: err },
    )
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return new StorageUnavailableError(
      `tollbooth/sqlite: the disk failed a read or write of the database file (${code}: ${message(err)})`,
      { cause: err },
    )
  }
  return err
}

/** A JSON column as text. */
export const json = (v: unknown): string => JSON.stringify(v ?? null)

/** A boolean as SQLite stores it. */
export const bit = (v: boolean): number => (v ? 1 : 0)
