/**
 * @module test/storage/postgres-rolling
 *
 * A rolling deploy on PostgreSQL: instances keep serving while another process migrates the
 * schema under them. A migration that changes a column's type (7: `jsonb` to `json`) changes
 * the result type of the statements each pooled connection has prepared; the next run of one
 * fails with `cached plan must not change result type` (0A000) on every such connection.
 */

import { describe, expect, it } from 'vitest'
import { MIGRATIONS, migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { makeKey } from '../../adapters/testing/fixtures.js'
import type { Check } from '../../src/index.js'
import { newPool, schemaAt, schemasPerSuite, skipPostgres } from '../support/postgres.js'
import { expectFailsAsNewer, expectKeepsServing, rollingEvent } from '../support/rolling.js'

describe.skipIf(skipPostgres)('postgres: a migration run by another process', () => {
  const pool = newPool(4)
  const { fresh } = schemasPerSuite(pool)

  /** A schema migrated up to `upTo`, as an earlier version of tollbooth left it, with key_1. */
  async function keyedSchemaAt(upTo: number): Promise<string> {
    const schema = fresh()
    await schemaAt(pool, schema, upTo, (client) =>
      client.query(
        `INSERT INTO keys (id, hash, start, name, account_id, kind, metadata, created_at, limits)
         VALUES ('key_1', 'h1', 'sk_', 'one', 'acct_1', 'consumption', '{"a": 1}', 1, '{}')`,
      ),
    )
    return schema
  }

  it('a key lookup prepared before migration 7 still answers after it, on every connection', async () => {
    const schema = await keyedSchemaAt(6)
    const storage = postgresStorage({ pool, schema })
    // Every connection of the pool prepares the lookup (4 at once take 4 connections).
    const before = await Promise.all(Array.from({ length: 4 }, () => storage.keys.getByHash('h1')))
    expect(before.map((k) => k?.metadata)).toEqual(Array(4).fill({ a: 1 }))
    expect(pool.totalCount).toBe(4)
    // Another process (its own pool) migrates: metadata and limits become json.
    const other = newPool(1)
    try {
      expect((await migrate({ pool: other, schema })).applied).toEqual([
        '0007-json-as-given',
        '0008-topups',
      ])
    } finally {
      await other.end()
    }
    const failures: string[] = []
    for (let i = 0; i < 12; i++) {
      await Promise.all(
        Array.from({ length: 4 }, () =>
          storage.keys.getByHash('h1').then(
            (k) => expect(k?.metadata).toEqual({ a: 1 }),
            (err: Error) => {
              failures.push(err.message)
            },
          ),
        ),
      )
    }
    expect(failures).toEqual([])
  })

  it('an admission on a statement prepared before its function was replaced runs, as do the next', async () => {
    const schema = await keyedSchemaAt(MIGRATIONS.length)
    const storage = postgresStorage({ pool, schema, pruneEvery: 0 })
    const T0 = Date.UTC(2026, 0, 15, 12)
    const check: Check = {
      type: 'window',
      key: 'acct_1:daily',
      name: 'daily',
      limit: 100,
      windowMs: 86_400_000,
      bucketMs: 3_600_000,
      cost: 1,
    }
    // The values known after the first: the next admissions prepare counters_apply.
    for (let i = 1; i <= 8; i++)
      expect((await storage.counters.consume([check], T0)).results[0]?.used).toBe(i)
    // A later migration replaces the function with one of another result type.
    await pool.query(`
      ALTER FUNCTION "${schema}".counters_apply(jsonb, integer, boolean) RENAME TO counters_apply_v;
      CREATE FUNCTION "${schema}".counters_apply(batch jsonb, lock_ms integer, durable boolean)
      RETURNS text LANGUAGE plpgsql AS $$
      BEGIN PERFORM "${schema}".counters_apply_v(batch, lock_ms, durable); RETURN 'ok'; END $$`)
    const failures: string[] = []
    const used: number[] = []
    for (let i = 0; i < 8; i++) {
      await storage.counters.consume([check], T0).then(
        (r) => used.push(r.results[0]!.used),
        (err: Error) => {
          failures.push(err.message)
        },
      )
    }
    expect(failures).toEqual([])
    expect(used).toEqual([9, 10, 11, 12, 13, 14, 15, 16])
  })

  /** Another process of a later version migrates the schema past what this version knows. */
  async function laterMigration(schema: string, sql: string): Promise<number> {
    const later = MIGRATIONS.length + 1
    const client = await pool.connect()
    try {
      await client.query(`BEGIN; SET LOCAL search_path TO "${schema}"; ${sql};
        INSERT INTO migrations (id, name) VALUES (${later}, 'later'); COMMIT`)
    } finally {
      client.release()
    }
    return later
  }

  it('a later migration this version can work with: it keeps serving', async () => {
    const schema = await keyedSchemaAt(MIGRATIONS.length)
    const storage = postgresStorage({ pool, schema })
    await expectKeepsServing(storage, (sql) => laterMigration(schema, sql))
    expect((await storage.keys.getByHash('h1'))?.id).toBe('key_1')
  })

  it('one it cannot work with: its calls fail as unavailable, naming both versions', async () => {
    const schema = await keyedSchemaAt(MIGRATIONS.length)
    const storage = postgresStorage({ pool, schema })
    await storage.usage.record([rollingEvent(1)])
    // As migration 4 did to the version before it: the totals keyed by one more column.
    const later = await laterMigration(
      schema,
      `ALTER TABLE usage_totals ADD COLUMN region text NOT NULL DEFAULT '';
       ALTER TABLE usage_totals ALTER COLUMN region DROP DEFAULT;
       ALTER TABLE usage_totals DROP CONSTRAINT usage_totals_pkey;
       ALTER TABLE usage_totals ADD PRIMARY KEY (account_id, hour, category, key_category, region);
       ALTER TABLE keys RENAME COLUMN name TO label`,
    )
    const fails = (call: Promise<unknown>) =>
      expectFailsAsNewer(call, { later, known: MIGRATIONS.length })
    await fails(storage.usage.record([rollingEvent(2)]))
    // Not "run migrate()": the schema is not of an earlier version.
    await fails(storage.keys.get('key_1'))
    await fails(storage.keys.getByHash('h1'))
    // In a transaction on a pool of one connection: the version is read once it is back.
    const one = newPool(1)
    try {
      const single = postgresStorage({ pool: one, schema })
      await fails(single.keys.rotate('key_1', {}, makeKey({ accountId: 'acct_1' })))
    } finally {
      await one.end()
    }
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".usage_events`)
    expect(rows[0].n).toBe(1)
  })
})
