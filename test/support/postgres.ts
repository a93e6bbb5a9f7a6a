/**
 * @module test/support/postgres
 *
 * What the PostgreSQL suites share: the server at `DATABASE_URL`, whether to skip when it is
 * down (never with `TOLLBOOTH_REQUIRE_SERVICES=1`: then every test fails on connect), and a
 * fresh migrated schema `tb_test_<random>` per suite, dropped afterwards.
 */

import pg from 'pg'
import { afterAll, beforeAll } from 'vitest'
import { migrate } from '../../adapters/postgres/index.js'

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
