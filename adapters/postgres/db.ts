/**
 * @module postgres/db
 *
 * The plumbing every PostgreSQL store shares: the schema's quoted name and its tables, one
 * transaction on a client of the user's pool, and the conversions of `bigint` columns (which
 * `pg` returns as strings) back to numbers. A query on a schema that was never migrated fails
 * with a ConfigError that says to run `migrate()`, not with a bare "relation does not exist".
 *
 * A client checked out of a `pg` Pool has no `'error'` listener of the pool's while it is out,
 * and an `'error'` event with no listener ends the process: a server restart, a failover or
 * `pg_terminate_backend` during a transaction would. {@link checkout} listens for as long as
 * the client is out, and a client whose connection failed is destroyed, never reused.
 */

import type { Pool, PoolClient, QueryResultRow } from 'pg'
import { z } from 'zod'
import {
  ConfigError,
  objectOption,
  parseOptions,
  StorageUnavailableError,
} from '../../src/internal.js'
import { MIGRATIONS } from './migrations/index.js'

/** What the stores need of the user's pool (a `pg.Pool`, or anything shaped like it). */
export type PgPool = Pick<Pool, 'query' | 'connect'>

/** A schema name: letters, digits and `_`, not starting with a digit, at most 48 characters. */
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/
const SCHEMA_RULE = 'must be 1 to 48 letters, digits or underscores, not starting with a digit'

/** The default schema of every table tollbooth creates. */
export const DEFAULT_SCHEMA = 'tollbooth'

/** `options.pool`: the user's `pg` Pool, or anything with its `query` and `connect`. */
export const poolSchema = objectOption<PgPool>(
  (v) =>
    typeof (v as Partial<PgPool> | null)?.query === 'function' &&
    typeof (v as Partial<PgPool> | null)?.connect === 'function',
  'must be a pg Pool (new Pool({ connectionString }))',
)

/** `options.schema`: the schema of tollbooth's tables. */
export const schemaNameSchema = z
  .string({ error: SCHEMA_RULE })
  .regex(SCHEMA_NAME, SCHEMA_RULE)
  .default(DEFAULT_SCHEMA)

/**
 * Checks the options every entry point shares (`pool`, `schema`), once; the entry checks
 * its own with the same schemas.
 *
 * @throws {ConfigError} naming `options.pool` or `options.schema`
 */
export function checkOptions(
  fn: string,
  options: { pool?: unknown; schema?: unknown } | undefined,
): { pool: PgPool; schema: string } {
  return parseOptions(fn, z.looseObject({ pool: poolSchema, schema: schemaNameSchema }), options)
}

/** A double-quoted identifier (the name is already checked against {@link SCHEMA_NAME}). */
export function quote(name: string): string {
  return `"${name}"`
}

/** The shared state of one storage value: the pool, the schema and its qualified tables. */
export interface Db {
  pool: PgPool
  schema: string
  /** `"schema".table` */
  table(name: string): string
  /**
   * Runs one statement on the pool. A `name` makes it a prepared statement, parsed and planned
   * once per connection (unless the storage was made with `preparedStatements: false`).
   */
  query<R extends QueryResultRow>(text: string, values?: unknown[], name?: string): Promise<R[]>
  /** Runs one statement, returning the affected row count. */
  execute(text: string, values?: unknown[]): Promise<number>
  /**
   * How long an admission may take, from its call to its commit (`statementTimeoutMs`): a
   * connection obtained later is not used, and no statement runs past it. Without the option,
   * set below the core's `storageTimeoutMs` when an instance is made (`deadlineFor`).
   */
  deadlineMs: number
  /**
   * Named statements are prepared (`preparedStatements`, default true); false from the first
   * sign of a pooler that cannot keep them (see {@link Db.pooled}).
   */
  prepare: boolean
  /**
   * The name to prepare statement `name` under now: `tollbooth_<schema>_<name>`, with a
   * suffix once a migration made the plans prepared under the previous name stale.
   */
  statement(name: string): string
  /**
   * True when `err` says statement `name`, prepared as `prepared`, no longer fits the schema
   * (`cached plan must not change result type`, 0A000: another process migrated the type of a
   * column it returns); from then on {@link statement} gives new names, which every connection
   * prepares afresh. Run the statement again once, under its new name.
   */
  stale(err: unknown, name: string, prepared: string): boolean
  /**
   * True when `err` says the server connection behind the pool's client lacks a statement
   * this client prepared, or already holds one of that name (26000, 42P05): a pooler hands
   * server connections out per transaction (PgBouncer before 1.21 in transaction mode). From
   * then on {@link Db.prepare} is false (said once through `onError`, naming the option); the
   * statement never ran, so run it again once, unnamed.
   */
  pooled(err: unknown): boolean
}

/** A named statement the server connection lacks (26000) or holds already (42P05). */
const POOLED_STATEMENT = new Set(['26000', '42P05'])

/**
 * `cached plan must not change result type`: a statement prepared on a connection before a
 * migration changed the type of a column it returns. PostgreSQL answers it on every run of
 * that statement on that connection; it only goes away with the statement's name.
 */
export const STALE_PLAN = '0A000'
const STALE_ROUTINE = 'RevalidateCachedQuery'

export function createDb(
  pool: PgPool,
  schema: string,
  prepare = true,
  deadlineMs = DEFAULT_STATEMENT_TIMEOUT_MS,
  onError: (err: unknown) => void = () => {},
): Db {
  const q = quote(schema)
  // Bumped each time a migration makes the prepared plans stale (see `stale`).
  let generation = 0
  const statement = (name: string) =>
    `tollbooth_${schema}_${name}${generation === 0 ? '' : `_${generation}`}`
  const stale = (err: unknown, name: string, prepared: string) => {
    const e = err as { code?: unknown; routine?: unknown } | null
    // 0A000 is any feature not supported; the routine (not translated) says which.
    if (e?.code !== STALE_PLAN || (e.routine !== undefined && e.routine !== STALE_ROUTINE))
      return false
    // Calls that failed together move on once, all to the same new name.
    if (prepared === statement(name)) generation++
    return true
  }
  const pooled = (err: unknown) => {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code !== 'string' || !POOLED_STATEMENT.has(code)) return false
    if (db.prepare) {
      db.prepare = false
      onError(
        new ConfigError(
          `tollbooth/postgres: the pool's connections do not keep prepared statements (${(err as Error).message}): a pooler shares server connections per transaction (PgBouncer before 1.21 in transaction mode); this storage uses unnamed statements from now on, pass \`preparedStatements: false\` to postgresStorage() to start so`,
          { cause: err },
        ),
      )
    }
    return true
  }
  const db: Db = {
    pool,
    schema,
    deadlineMs,
    prepare,
    statement,
    stale,
    pooled,
    table: (name) => `${q}.${name}`,
    async query<R extends QueryResultRow>(text: string, values?: unknown[], name?: string) {
      const run = (prepared?: string) =>
        pool.query<R>(prepared ? { name: prepared, text, values } : { text, values })
      const prepared = db.prepare && name ? statement(name) : undefined
      try {
        return (await run(prepared)).rows
      } catch (err) {
        if (!prepared || !name || !(pooled(err) || stale(err, name, prepared)))
          throw await explainLater(err, db)
      }
      try {
        return (await run(db.prepare ? statement(name) : undefined)).rows
      } catch (err) {
        throw await explainLater(err, db)
      }
    },
    async execute(text, values) {
      try {
        return (await pool.query(text, values)).rowCount ?? 0
      } catch (err) {
        throw await explainLater(err, db)
      }
    },
  }
  return db
}

/**
 * What a statement answers when the schema no longer fits it: a table or column gone (42P01,
 * 42703), an upsert's key gone (42P10), a column it does not fill made NOT NULL (23502), a type
 * changed (42804).
 */
const SCHEMA_ERRORS = new Set(['42P01', '42703', '42P10', '23502', '42804'])

/**
 * The migration a later version of tollbooth applied to the schema, past the last this
 * version knows; null when there is none (or the table cannot be read).
 */
async function laterSchema(db: Db): Promise<number | null> {
  try {
    const { rows } = await db.pool.query<{ id: number | null }>(
      `SELECT max(id) AS id FROM ${db.table('migrations')}`,
    )
    const id = rows[0]?.id ?? null
    return id !== null && id > MIGRATIONS[MIGRATIONS.length - 1]!.id ? id : null
  } catch {
    return null
  }
}

/**
 * {@link explain}, and first, for an error a schema change would cause, whether a later version
 * of tollbooth, running beside this one, has migrated the schema past what this one knows: then
 * the storage is unavailable to this version (503), saying so, rather than told to migrate.
 * The version is read again only on such an error.
 */
export async function explainLater(err: unknown, db: Db): Promise<unknown> {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && SCHEMA_ERRORS.has(code)) {
    const later = await laterSchema(db)
    if (later !== null) {
      return new StorageUnavailableError(
        `tollbooth/postgres: schema "${db.schema}" was migrated by a later version of tollbooth (migration ${later}; this version knows up to ${MIGRATIONS[MIGRATIONS.length - 1]!.id}), and this call's statement no longer fits it (${(err as Error).message}): run the later version here too`,
        { cause: err },
      )
    }
  }
  return explain(err, db.schema)
}

/** pg's refusal of a pool after `pool.end()`. */
const poolEnded = (err: unknown): boolean =>
  err instanceof Error && err.message === 'Cannot use a pool after calling end on the pool'

/**
 * The pool was ended under tollbooth (`pool.end()` before `tb.close()`): say what to do, not
 * pg's words alone (the core reports it once, through the storage's `closed()`).
 */
const endedError = (err: unknown) =>
  new ConfigError(
    'tollbooth/postgres: options.pool was ended (pool.end()) while tollbooth still uses it: call `await tb.close()` first, then `pool.end()`',
    { cause: err },
  )

/**
 * Turns "relation does not exist" (SQLSTATE 42P01, 3F000), and "column does not exist"
 * (42703: a schema of an earlier version), into a hint to migrate; and a pool ended under
 * tollbooth into a hint to close tollbooth first.
 */
export function explain(err: unknown, schema: string): unknown {
  if (poolEnded(err)) return endedError(err)
  const code = (err as { code?: unknown } | null)?.code
  if (code === '42P01' || code === '3F000') {
    return new ConfigError(
      `tollbooth/postgres: the tables of schema "${schema}" do not exist; run \`await migrate({ pool, schema: '${schema}' })\` first`,
      { cause: err },
    )
  }
  if (code === '42703') {
    return new ConfigError(
      `tollbooth/postgres: the tables of schema "${schema}" are of an earlier version; run \`await migrate({ pool, schema: '${schema}' })\` first`,
      { cause: err },
    )
  }
  return err
}

/**
 * The default of `postgresStorage({ statementTimeoutMs })`, at most (see {@link deadlineFor}):
 * below the core's default `storageTimeoutMs` (2,000 ms) by a commit's round trip and more.
 */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 1750

/**
 * The default of `statementTimeoutMs` under a core's `storageTimeoutMs`: 1,750 ms, or less
 * when that is not below it by a quarter of it, at most 250 ms (a commit's round trip and
 * more): 750 for 1,000. A fixed 1,750 let an admission commit after its 503 for a
 * `storageTimeoutMs` of 1,000 (the rows locked 1,300 ms: it waited and committed then,
 * test/fault/postgres-deadline). Never longer: a longer `storageTimeoutMs` does not let lock
 * waits hold connections longer than before (give `statementTimeoutMs` for that).
 */
export function deadlineFor(storageTimeoutMs: number): number {
  const below = storageTimeoutMs - Math.min(250, Math.ceil(storageTimeoutMs / 4))
  return Math.max(1, Math.min(DEFAULT_STATEMENT_TIMEOUT_MS, below))
}

/** A client checked out of the pool by {@link checkout}. */
export interface Checkout {
  client: PoolClient
  /**
   * Milliseconds left before the deadline.
   *
   * @throws {StorageUnavailableError} once it has passed (the caller has been answered)
   */
  left(): number
  /**
   * Returns the client to the pool, or destroys it when given an error or when its
   * connection failed while it was out. Call exactly once.
   */
  release(err?: Error): void
}

/**
 * What a call answers once its deadline has passed before it ran (its connection came late,
 * or its turn in a transaction did): nothing of it was sent, so it is `notSent`, as a failure to connect
 * ({@link connect}), so the core queues no cancel for it. Before, the pool busy past
 * `statementTimeoutMs` but not past `storageTimeoutMs`: 20 requests refused, 5 cancels
 * queued and replayed, 15 dropped as "queue full" (test/fault/postgres-refused.test.ts).
 */
export function lateError(deadlineMs: number): StorageUnavailableError {
  return Object.assign(
    new StorageUnavailableError(
      `tollbooth/postgres: not done within statementTimeoutMs (${deadlineMs} ms); nothing was committed`,
    ),
    { notSent: true },
  )
}

/**
 * Checks a client out of the pool with an `'error'` listener attached until its release.
 * With `deadlineMs`, a client obtained after the deadline is released at once and the call
 * rejects: the caller was answered 503 while it waited, so nothing may run on its behalf.
 *
 * @throws {StorageUnavailableError} when the connection came after the deadline
 */
export async function checkout(db: Db, deadlineMs = Infinity): Promise<Checkout> {
  const start = performance.now()
  let failed: Error | undefined
  const onError = (err: Error) => {
    failed = err
  }
  const client = await connect(db.pool, onError)
  const release = (err?: Error) => {
    client.removeListener('error', onError)
    client.release(err ?? failed)
  }
  const left = () => {
    const ms = Math.floor(deadlineMs - (performance.now() - start))
    if (ms > 0) return ms
    throw lateError(deadlineMs)
  }
  try {
    left()
  } catch (err) {
    release()
    throw err
  }
  return { client, left, release }
}

/**
 * `pool.connect()` with `onError` listening from the moment the pool hands the client over.
 * Not `await pool.connect()` and then `on('error')`: the server's "terminating connection"
 * can arrive in the same socket read as the end of the connection's start-up, and is then
 * emitted before a promise's continuation runs, with no listener.
 *
 * A failure to connect (the server down: `ECONNREFUSED`; the pool exhausted past its
 * `connectionTimeoutMillis`; the pool ended) is marked `notSent` (docs/storage.md): no query
 * of the call was sent, so the core queues no cancel for it. Before, one per refused request:
 * 20 refused with `maxPendingSettles` 5, 15 dropped as "queue full" and 5 replayed once the
 * server was back (test/fault/postgres-refused.test.ts).
 */
export function connect(pool: PgPool, onError: (err: Error) => void): Promise<PoolClient> {
  return new Promise((resolve, reject) => {
    pool.connect((err, client) => {
      if (err || !client) {
        // No connection, so nothing of the call was sent (docs/storage.md, `notSent`): no cancel
        // is queued for it, and the core retries a settle once per a record of its own, not
        // `ifHeld` (a hold that lapsed while the server was down charged nothing,
        // test/fault/settle-lapsed).
        const e = poolEnded(err)
          ? endedError(err)
          : err instanceof Error
            ? err
            : new Error('tollbooth/postgres: no client')
        return reject(Object.assign(e, { notSent: true }))
      }
      client.on('error', onError)
      resolve(client)
    })
  })
}

/**
 * Runs `fn` on a dedicated client checked out within `deadlineMs` (see `checkout`). When `fn`
 * fails, its transaction is rolled back and the error rethrown, explained; a client whose
 * rollback failed is destroyed rather than returned to the pool.
 */
export async function withClient<T>(
  db: Db,
  deadlineMs: number,
  fn: (client: PoolClient, left: () => number) => Promise<T>,
): Promise<T> {
  const { client, left, release } = await checkout(db, deadlineMs)
  let broken: Error | undefined
  let failure: unknown
  try {
    return await fn(client, left)
  } catch (err) {
    // After a failed COMMIT the transaction is already over and ROLLBACK only warns; a
    // ROLLBACK that fails means the connection itself is gone. A statement that failed
    // skipped the rest of its round trip, COMMIT included.
    await client.query('ROLLBACK').catch((e: Error) => {
      broken = e
    })
    failure = err
  } finally {
    release(broken)
  }
  // Explained once the client is back: reading the schema's version takes one of the pool's.
  throw await explainLater(failure, db)
}

/**
 * Runs `fn` in one transaction on a dedicated client. `fn` returns the value and whether to
 * commit (false rolls back, e.g. a refused admission that must change nothing).
 */
export function transaction<T>(
  db: Db,
  fn: (client: PoolClient) => Promise<{ value: T; commit: boolean }>,
): Promise<T> {
  return withClient(db, Infinity, async (client) => {
    await client.query('BEGIN')
    const out = await fn(client)
    await client.query(out.commit ? 'COMMIT' : 'ROLLBACK')
    return out.value
  })
}

/** A `bigint` column (a string from `pg`) as a number; null stays null. */
export function num(v: string | number | null): number | null {
  return v === null ? null : Number(v)
}

/** A JSON column value for a parameter: always stringified, so arrays stay JSON arrays. */
export function json(v: unknown): string {
  return JSON.stringify(v ?? null)
}
