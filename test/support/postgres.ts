/**
 * @module test/support/postgres
 *
 * What the PostgreSQL suites share: the server at `DATABASE_URL`, whether to skip when it is
 * down (never with `TOLLBOOTH_REQUIRE_SERVICES=1`: then every test fails on connect), a
 * fresh migrated schema `tb_test_<random>` per suite, dropped afterwards, and the schema an
 * earlier version of tollbooth left (`schemaAt`) for the migration and rolling-deploy suites.
 */

import pg from 'pg'
import { afterAll, beforeAll } from 'vitest'
import { MIGRATIONS, migrate } from '../../adapters/postgres/index.js'

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** True in CI: an unreachable server must fail the suites, not skip them. */
export const REQUIRED = process.env.TOLLBOOTH_REQUIRE_SERVICES === '1'

async function reachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/** Skip the suites: the server is down and nobody required it. */
export const skipPostgres = !REQUIRED && !(await reachable())

export function newPool(max = 20): pg.Pool {
  return new pg.Pool({ connectionString: DATABASE_URL, max, connectionTimeoutMillis: 5000 })
}

/** A fresh schema name for one suite. */
export function schemaName(): string {
  return `tb_test_${Math.random().toString(36).slice(2, 12)}`
}

/** Creates and migrates a fresh schema; `drop()` removes it with everything in it. */
export async function freshSchema(
  pool: pg.Pool,
): Promise<{ schema: string; drop: () => Promise<void> }> {
  const schema = schemaName()
  await migrate({ pool, schema })
  return {
    schema,
    drop: async () => {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    },
  }
}

/**
 * A fresh migrated schema for the suite it is called in: created before its first test, then
 * dropped, and `pool` ended, after its last. Read `schema` inside a test or hook, not before.
 */
export function schemaPerSuite(pool: pg.Pool): { readonly schema: string } {
  let fresh: { schema: string; drop: () => Promise<void> } | undefined
  beforeAll(async () => {
    fresh = await freshSchema(pool)
  })
  afterAll(async () => {
    await fresh?.drop()
    await pool.end()
  })
  return {
    get schema() {
      if (!fresh)
        throw new Error('schemaPerSuite: the schema is made in beforeAll; read it in a test')
      return fresh.schema
    },
  }
}

/**
 * Fresh schema names for the tests of the suite it is called in, on `pool`: `fresh()` gives
 * one (not created), and every one given is dropped after the suite's last test, then `pool`
 * is ended.
 */
export function schemasPerSuite(pool: pg.Pool): { fresh(): string } {
  const schemas: string[] = []
  afterAll(async () => {
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`)
    await pool.end()
  })
  return {
    fresh() {
      const s = schemaName()
      schemas.push(s)
      return s
    },
  }
}

/**
 * Creates `schema` and runs `fill` on one connection whose search_path is that schema (as a
 * user runs the shipped SQL by hand); the search_path is reset after.
 */
export async function inNewSchema(
  pool: pg.Pool,
  schema: string,
  fill: (client: pg.PoolClient) => Promise<unknown>,
): Promise<void> {
  const client = await pool.connect()
  try {
    await client.query(`CREATE SCHEMA "${schema}"`)
    await client.query(`SET search_path TO "${schema}"`)
    await fill(client)
    await client.query('RESET search_path')
  } finally {
    client.release()
  }
}

/**
 * Creates `schema` as an earlier version of tollbooth left it: migrated up to migration
 * `upTo` (its `migrations` table says so), then `seed` run in it, the rows that version wrote.
 */
export function schemaAt(
  pool: pg.Pool,
  schema: string,
  upTo: number,
  seed: (client: pg.PoolClient) => Promise<unknown> = async () => {},
): Promise<void> {
  return inNewSchema(pool, schema, async (client) => {
    await client.query(
      `CREATE TABLE migrations (id integer PRIMARY KEY, name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now())`,
    )
    for (const m of MIGRATIONS.filter((m) => m.id <= upTo)) {
      await client.query(m.sql)
      await client.query('INSERT INTO migrations (id, name) VALUES ($1, $2)', [m.id, m.name])
    }
    await seed(client)
  })
}

/**
 * Holds the row lock of counter `key` in `schema` from another session; resolves to the
 * function that releases it (commits and closes that session).
 */
export async function lockCounterRow(schema: string, key: string): Promise<() => Promise<void>> {
  const c = new pg.Client({ connectionString: DATABASE_URL })
  await c.connect()
  await c.query('BEGIN')
  await c.query(`SELECT 1 FROM "${schema}".counters WHERE key = $1 FOR UPDATE`, [key])
  return async () => {
    await c.query('COMMIT')
    await c.end()
  }
}
