/**
 * @module postgres/db
 *
 * The plumbing every PostgreSQL store shares: the schema's quoted name and its tables, one
 * transaction on a client of the user's pool, and the conversions of `bigint` columns (which
 * `pg` returns as strings) back to numbers. A query on a schema that was never migrated fails
 * with a ConfigError that says to run `migrate()`, not with a bare "relation does not exist".
 */

import type { Pool, PoolClient, QueryResultRow } from 'pg'
import { ConfigError } from '../../src/index.js'

/** What the stores need of the user's pool (a `pg.Pool`, or anything shaped like it). */
export type PgPool = Pick<Pool, 'query' | 'connect'>

/** A schema name: letters, digits and `_`, not starting with a digit, at most 48 characters. */
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/

/** The default schema of every table tollbooth creates. */
export const DEFAULT_SCHEMA = 'tollbooth'

/**
 * Checks the options every entry point shares, once.
 *
 * @throws {ConfigError} naming `options.pool` or `options.schema`
 */
export function checkOptions(
  fn: string,
  options: { pool?: unknown; schema?: unknown } | undefined,
): { pool: PgPool; schema: string } {
  const pool = options?.pool as Partial<PgPool> | undefined
  if (!pool || typeof pool.query !== 'function' || typeof pool.connect !== 'function') {
    throw new ConfigError(
      `${fn}: options.pool must be a pg Pool (new Pool({ connectionString })), got ${describe(pool)}`,
    )
  }
  const schema = options?.schema ?? DEFAULT_SCHEMA
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
    throw new ConfigError(
      `${fn}: options.schema must be 1 to 48 letters, digits or underscores, not starting with a digit, got ${JSON.stringify(schema)}`,
    )
  }
  return { pool: pool as PgPool, schema }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v !== 'object') return typeof v
  return v.constructor?.name ?? 'object'
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
}

export function createDb(pool: PgPool, schema: string, prepare = true): Db {
  const q = quote(schema)
  return {
    pool,
    schema,
    table: (name) => `${q}.${name}`,
    async query<R extends QueryResultRow>(text: string, values?: unknown[], name?: string) {
      try {
        const config =
          prepare && name ? { name: `tollbooth_${schema}_${name}`, text, values } : { text, values }
        return (await pool.query<R>(config)).rows
      } catch (err) {
        throw explain(err, schema)
      }
    },
    async execute(text, values) {
      try {
        return (await pool.query(text, values)).rowCount ?? 0
      } catch (err) {
        throw explain(err, schema)
      }
    },
  }
}

/** Turns "relation does not exist" (SQLSTATE 42P01, 3F000) into a hint to migrate. */
export function explain(err: unknown, schema: string): unknown {
  const code = (err as { code?: unknown } | null)?.code
  if (code === '42P01' || code === '3F000') {
    return new ConfigError(
      `tollbooth/postgres: the tables of schema "${schema}" do not exist; run \`await migrate({ pool, schema: '${schema}' })\` first`,
      { cause: err },
    )
  }
  return err
}

/**
 * Runs `fn` in one transaction on a dedicated client. `fn` returns the value and whether to
 * commit (false rolls back, e.g. a refused admission that must change nothing). A client whose
 * rollback failed is destroyed rather than returned to the pool.
 */
export async function transaction<T>(
  db: Db,
  fn: (client: PoolClient) => Promise<{ value: T; commit: boolean }>,
): Promise<T> {
  const client = await db.pool.connect()
  let broken: Error | undefined
  try {
    await client.query('BEGIN')
    const out = await fn(client)
    await client.query(out.commit ? 'COMMIT' : 'ROLLBACK')
    return out.value
  } catch (err) {
    // After a failed COMMIT the transaction is already over and ROLLBACK only warns; a
    // ROLLBACK that fails means the connection itself is gone.
    await client.query('ROLLBACK').catch((e: Error) => {
      broken = e
    })
    throw explain(err, db.schema)
  } finally {
    client.release(broken)
  }
}

/** A `bigint` column (a string from `pg`) as a number; null stays null. */
export function num(v: string | number | null): number | null {
  return v === null ? null : Number(v)
}

/** A JSON column value for a parameter: always stringified, so arrays stay JSON arrays. */
export function json(v: unknown): string {
  return JSON.stringify(v ?? null)
}
