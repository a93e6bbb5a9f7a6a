/**
 * @module postgres/migrate
 *
 * `migrate()`: creates the schema and applies every migration not applied yet, each in the
 * same transaction as its row in `<schema>.migrations`. A transaction-level advisory lock per
 * schema serializes concurrent callers (two instances starting at once), so each migration
 * runs exactly once; the second caller waits, then finds nothing left to do.
 */

import { checkOptions, type PgPool, quote } from './db.js'
import { MIGRATIONS } from './migrations/index.js'

export { MIGRATIONS, type Migration } from './migrations/index.js'

export interface MigrateOptions {
  /** The user's `pg` Pool; one client is taken for the duration. */
  pool: PgPool
  /** Schema to create and migrate; the same as given to `postgresStorage`. */
  schema?: string
}

export interface MigrateResult {
  schema: string
  /** Names of the migrations this call applied (empty when the schema was up to date). */
  applied: string[]
}

/**
 * Brings the schema up to date. Safe to call on every start and from several processes at
 * once. Needs the privilege to create tables (and the schema, if it does not exist yet).
 *
 * @param options.pool the user's `pg` Pool
 * @param [options.schema='tollbooth'] the schema holding tollbooth's tables
 * @returns the schema and the migrations applied by this call
 * @throws {ConfigError} naming a bad `options.pool` or `options.schema`
 * @throws the database's error when a migration fails (nothing of it is applied)
 * @example
 * ```ts
 * import { Pool } from 'pg'
 * import { migrate, postgresStorage } from 'tollbooth/postgres'
 *
 * const pool = new Pool({ connectionString: process.env.DATABASE_URL })
 * await migrate({ pool })
 * const tb = createTollbooth({ secret, storage: postgresStorage({ pool }) })
 * ```
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const { pool, schema } = checkOptions('migrate', options)
  const q = quote(schema)
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('BEGIN')
    // Two int4 keys: a fixed class for tollbooth, then the schema's hash.
    await client.query('SELECT pg_advisory_xact_lock(1953459316, hashtext($1))', [schema])
    // Checked first so a role without CREATE on the database can use a schema made for it.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${q}`)
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${q}.migrations (
        id integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`,
    )
    const done = new Set(
      (await client.query<{ id: number }>(`SELECT id FROM ${q}.migrations`)).rows.map((r) => r.id),
    )
    const applied: string[] = []
    await client.query(`SET LOCAL search_path TO ${q}`)
    for (const m of MIGRATIONS) {
      if (done.has(m.id)) continue
      await client.query(m.sql)
      await client.query(`INSERT INTO ${q}.migrations (id, name) VALUES ($1, $2)`, [m.id, m.name])
      applied.push(m.name)
    }
    await client.query('COMMIT')
    return { schema, applied }
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => {
      broken = e
    })
    throw err
  } finally {
    client.release(broken)
  }
}
