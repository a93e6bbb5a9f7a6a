/**
 * @module test/storage/postgres-migrate
 *
 * `migrate()`: applies each migration once, also when several processes start at once; the
 * indexes the hot queries need exist and are the ones the planner picks; a storage on a schema
 * that was never migrated says to run `migrate()`; bad options are refused by name.
 */

import { describe, expect, it } from 'vitest'
import { INIT_SQL, MIGRATIONS, migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { ConfigError, createTollbooth, isTollboothError } from '../../src/index.js'
import { expectUpgradedAccount, OLD_ACCOUNT } from '../support/account-upgrade.js'
import {
  inNewSchema,
  newPool,
  schemaAt,
  schemasPerSuite,
  skipPostgres,
} from '../support/postgres.js'
import { expectUpgradedUsage } from '../support/usage-upgrade.js'

const SECRET = 'postgres-migrate-secret-0123456789abcdef'

describe.skipIf(skipPostgres)('postgres migrate', () => {
  const pool = newPool(20)
  const { fresh } = schemasPerSuite(pool)

  it('applies every migration once, then nothing', async () => {
    const schema = fresh()
    expect(await migrate({ pool, schema })).toEqual({
      schema,
      applied: MIGRATIONS.map((m) => m.name),
    })
    expect(MIGRATIONS.map((m) => m.name).slice(-1)).toEqual(['0008-topups'])
    expect(await migrate({ pool, schema })).toEqual({ schema, applied: [] })
    const rows = (await pool.query(`SELECT id, name FROM "${schema}".migrations`)).rows
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ id: m.id, name: m.name })))
  })

  it('applies a migration exactly once when 8 processes migrate at once', async () => {
    const schema = fresh()
    // Separate pools, as separate processes would have.
    const pools = Array.from({ length: 8 }, () => newPool(1))
    try {
      const results = await Promise.all(pools.map((p) => migrate({ pool: p, schema })))
      const applied = results.flatMap((r) => r.applied)
      expect(applied).toEqual(MIGRATIONS.map((m) => m.name))
    } finally {
      await Promise.all(pools.map((p) => p.end()))
    }
    const count = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".migrations`)
    expect(count.rows[0].n).toBe(MIGRATIONS.length)
  })

  it('upgrades a schema of 0001 with events: totals built from them, logs keep them', async () => {
    const schema = fresh()
    // 300 events over three hours of one account, two categories, one uncategorized.
    await schemaAt(pool, schema, 1, (client) =>
      client.query(
        `INSERT INTO usage_events (id, request_id, key_id, account_id, occurred_at, units,
           category, status, duration_ms, method, path)
         SELECT 'req_' || i, 'req_' || i, 'key_1', 'acct_1', 36000000 + i * 36000, 2,
           (ARRAY['tts', 'stt', NULL])[i % 3 + 1], 200, 1, 'GET', '/'
         FROM generate_series(0, 299) AS i`,
      ),
    )
    expect(await migrate({ pool, schema })).toEqual({
      schema,
      applied: [
        '0002-ip-blocks',
        '0003-usage-aggregates',
        '0004-usage-key-category',
        '0005-counters-apply',
        '0006-account-closed-periods',
        '0007-json-as-given',
        '0008-topups',
      ],
    })
    const storage = postgresStorage({ pool, schema })
    expect(await storage.usage.summarize('acct_1', 36_000_000, 36_000_000 + 3 * 3_600_000)).toEqual(
      {
        requests: 300,
        units: 600,
        byCategory: {
          tts: { requests: 100, units: 200 },
          stt: { requests: 100, units: 200 },
          uncategorized: { requests: 100, units: 200 },
        },
        byKeyCategory: { uncategorized: { requests: 300, units: 600 } },
      },
    )
    const page = await storage.usage.logs('key_1', { limit: 1 })
    expect(page.data[0]).toMatchObject({ id: 'req_299', ttfbMs: null, code: null })
  })

  it('upgrades a schema of 0003 with totals: they count under uncategorized keys', async () => {
    const schema = fresh()
    const HOUR = 3_600_000
    const t0 = 40 * HOUR
    // 200 events of two hours recorded by the previous version: events and their totals.
    await schemaAt(pool, schema, 3, async (client) => {
      await client.query(
        `INSERT INTO usage_events (id, request_id, key_id, account_id, occurred_at, units,
           category, status, duration_ms, method, path)
         SELECT 'req_' || i, 'req_' || i, 'key_1', 'acct_1', ${t0} + i * 36000, 1,
           (ARRAY['tts', NULL])[i % 2 + 1], 200, 1, 'GET', '/'
         FROM generate_series(0, 199) AS i`,
      )
      await client.query(
        `INSERT INTO usage_totals (account_id, hour, category, requests, units)
         SELECT account_id, occurred_at - occurred_at % ${HOUR}, coalesce(category, 'uncategorized'),
                count(*), sum(units)
         FROM usage_events GROUP BY 1, 2, 3`,
      )
    })
    expect(await migrate({ pool, schema })).toEqual({
      schema,
      applied: [
        '0004-usage-key-category',
        '0005-counters-apply',
        '0006-account-closed-periods',
        '0007-json-as-given',
        '0008-topups',
      ],
    })
    const storage = postgresStorage({ pool, schema })
    await expectUpgradedUsage(storage, t0)
  })

  it('upgrades a schema of 0005 with an account rolled over: closed months keep their figures', async () => {
    const schema = fresh()
    const a = OLD_ACCOUNT
    await schemaAt(pool, schema, 5, async (client) => {
      await client.query(
        'INSERT INTO accounts (id, balance, carryover, period_start) VALUES ($1, $2, $3, $4)',
        [a.id, a.balance, a.carryover, a.periodStart],
      )
      await client.query(
        `INSERT INTO usage_totals (account_id, hour, category, key_category, requests, units)
         VALUES ($1, $2, 'tts', 'uncategorized', 7, $3)`,
        [a.id, a.janHour, a.janUnits],
      )
    })
    // The previous schema read by this version: told to migrate, not a bare SQL error.
    const before = postgresStorage({ pool, schema })
    await expect(before.accounts.get(a.id)).rejects.toThrow(/run `await migrate\(/)
    expect(await migrate({ pool, schema })).toEqual({
      schema,
      applied: ['0006-account-closed-periods', '0007-json-as-given', '0008-topups'],
    })
    await expectUpgradedAccount(postgresStorage({ pool, schema }))
  })

  it('upgrades a schema of 0006: keys and accounts keep their data, new writes their field order', async () => {
    const schema = fresh()
    // Rows the previous version wrote: one with every JSON cell, one with the defaults.
    await schemaAt(pool, schema, 6, async (client) => {
      await client.query(
        `INSERT INTO keys (id, hash, start, name, account_id, kind, metadata, created_at, limits)
         VALUES ('key_1', 'h1', 'sk_', 'one', 'acct_1', 'consumption',
                 '{"zeta": 1, "a": {"n": 1.50}}', 1, '{"quotas": {"monthly": 9, "daily": 3}}'),
                ('key_2', 'h2', 'sk_', 'two', 'acct_1', 'consumption', DEFAULT, 2, DEFAULT)`,
      )
      await client.query(
        `INSERT INTO accounts (id, period_start, metadata)
         VALUES ('acct_1', 0, '{"zeta": 1, "a": [true]}'), ('acct_2', 0, DEFAULT)`,
      )
    })
    expect(await migrate({ pool, schema })).toEqual({
      schema,
      applied: ['0007-json-as-given', '0008-topups'],
    })
    const types = await pool.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT table_name, column_name, data_type FROM information_schema.columns
       WHERE table_schema = $1 AND column_name IN ('metadata', 'limits') ORDER BY 1, 2`,
      [schema],
    )
    expect(types.rows.map((r) => `${r.table_name}.${r.column_name} ${r.data_type}`)).toEqual([
      'accounts.metadata json',
      'keys.limits json',
      'keys.metadata json',
    ])
    const storage = postgresStorage({ pool, schema })
    // The data stays, in the order jsonb kept it (the order written is gone).
    const k1 = await storage.keys.getByHash('h1')
    expect(JSON.stringify([k1?.metadata, k1?.limits])).toBe(
      '[{"a":{"n":1.5},"zeta":1},{"quotas":{"daily":3,"monthly":9}}]',
    )
    const k2 = await storage.keys.get('key_2')
    expect([k2?.metadata, k2?.limits]).toEqual([{}, {}])
    expect(JSON.stringify((await storage.accounts.get('acct_1'))?.metadata)).toBe(
      '{"a":[true],"zeta":1}',
    )
    expect((await storage.accounts.get('acct_2'))?.metadata).toEqual({})
    // Written from now on: as given.
    const metadata = { zeta: 2, a: { y: 1, b: 1.5 } }
    const limits = { quotas: { monthly: 9, daily: 3 }, concurrency: 1 }
    await storage.keys.update('key_1', { metadata, limits })
    const k = await storage.keys.getByHash('h1')
    expect(JSON.stringify([k?.metadata, k?.limits])).toBe(JSON.stringify([metadata, limits]))
    await storage.accounts.update('acct_2', { metadata })
    expect(JSON.stringify((await storage.accounts.get('acct_2'))?.metadata)).toBe(
      JSON.stringify(metadata),
    )
    // A row inserted without them still gets the defaults.
    await pool.query(
      `INSERT INTO "${schema}".keys (id, hash, start, name, account_id, kind, created_at)
       VALUES ('key_3', 'h3', 'sk_', 'three', 'acct_1', 'consumption', 3)`,
    )
    expect(await storage.keys.get('key_3')).toMatchObject({ metadata: {}, limits: {} })
    // An account of the old schema takes a top-up under an idempotency key, once.
    const t = { key: 'order-1', amount: 10, now: 1000, expiresAt: 2000 }
    expect((await storage.accounts.topUp('acct_1', t))?.applied).toBe(true)
    expect((await storage.accounts.topUp('acct_1', t))?.applied).toBe(false)
    expect((await storage.accounts.get('acct_1'))?.balance).toBe(10)
    await storage.close?.()
  })

  it('a schema of 0007 serves top-ups without a key; one with a key says to migrate', async () => {
    const schema = fresh()
    await schemaAt(pool, schema, 7)
    const tb = createTollbooth({ secret: SECRET, storage: postgresStorage({ pool, schema }) })
    try {
      expect((await tb.accounts.addCredits('acct_1', 5)).balance).toBe(5)
      const err = await tb.accounts
        .addCredits('acct_1', 10, { idempotencyKey: 'o' })
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ConfigError)
      expect((err as Error).message).toContain('migrate(')
      expect(await migrate({ pool, schema })).toEqual({ schema, applied: ['0008-topups'] })
      // Migrated: credited once, the second call a replay.
      const balances: number[] = []
      for (const _ of [1, 2])
        balances.push((await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'o' })).balance)
      expect(balances).toEqual([15, 15])
    } finally {
      await tb.close()
    }
  })

  it('creates the indexes for lookup by hash, lists by account and logs by key', async () => {
    const schema = fresh()
    await migrate({ pool, schema })
    const defs = (
      await pool.query<{ indexdef: string }>(
        'SELECT indexdef FROM pg_indexes WHERE schemaname = $1',
        [schema],
      )
    ).rows.map((r) => r.indexdef.replace(`${schema}.`, ''))
    expect(defs).toEqual(
      expect.arrayContaining([
        'CREATE UNIQUE INDEX keys_hash_key ON keys USING btree (hash)',
        'CREATE INDEX keys_account_id_idx ON keys USING btree (account_id, id DESC)',
        'CREATE INDEX usage_events_key_idx ON usage_events USING btree (key_id, occurred_at DESC, id DESC)',
      ]),
    )
    // With enough rows, the planner uses them for the stores' own queries.
    await pool.query(
      `INSERT INTO "${schema}".keys (id, hash, start, name, account_id, kind, created_at)
       SELECT 'key_' || lpad(i::text, 8, '0'), md5(i::text) || md5((-i)::text), 'sk_', 'k',
              'acct_' || (i % 500), 'consumption', i
       FROM generate_series(1, 20000) AS i`,
    )
    await pool.query(
      `INSERT INTO "${schema}".usage_events (id, request_id, key_id, account_id, occurred_at, units,
         status, duration_ms, method, path)
       SELECT 'req_' || i, 'req_' || i, 'key_' || (i % 500), 'acct_1', i, 1, 200, 1, 'GET', '/'
       FROM generate_series(1, 20000) AS i`,
    )
    await pool.query(`ANALYZE "${schema}".keys, "${schema}".usage_events`)
    const plan = async (sql: string, values: unknown[]) =>
      (await pool.query(`EXPLAIN ${sql}`, values)).rows.map((r) => r['QUERY PLAN']).join('\n')
    expect(await plan(`SELECT * FROM "${schema}".keys WHERE hash = $1`, ['x'])).toContain(
      'keys_hash_key',
    )
    expect(
      await plan(
        `SELECT * FROM "${schema}".keys WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT 21`,
        ['acct_7', 'key_9'],
      ),
    ).toContain('keys_account_id_idx')
    expect(
      await plan(
        `SELECT * FROM "${schema}".usage_events WHERE key_id = $1 AND (occurred_at, id) < ($2, $3::text)
         ORDER BY occurred_at DESC, id DESC LIMIT 21`,
        ['key_7', 15000, 'req_15000'],
      ),
    ).toContain('usage_events_key_idx')
  })

  it('ships SQL that applies by hand after SET search_path', async () => {
    const schema = fresh()
    await inNewSchema(pool, schema, (client) => client.query(INIT_SQL))
    const tables = await pool.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1',
      [schema],
    )
    expect(tables.rows.map((r) => r.table_name)).toEqual([
      'accounts',
      'counters',
      'keys',
      'provider_keys',
      'usage_events',
    ])
  })

  it('tells to run migrate() when the tables are missing', async () => {
    const storage = postgresStorage({ pool, schema: fresh() })
    const err = await storage.keys.getByHash('0'.repeat(64)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(isTollboothError(err) && err.message).toMatch(/run `await migrate\(\{ pool, schema/)
    const consume = storage.counters.consume(
      [{ type: 'gcra', key: 'x', name: 'n', limit: 1, windowMs: 1000, cost: 1 }],
      0,
    )
    await expect(consume).rejects.toThrow(/migrate/)
  })

  it('tells to close tollbooth first when its pool was ended under it', async () => {
    // `await pool.end()` before `await tb.close()`: pg said "Cannot use a pool after calling
    // end on the pool" on every flush and reconnect, for ever, and `pool.end()` never resolved.
    const schema = fresh()
    await migrate({ pool, schema })
    const own = newPool(4)
    const tb = createTollbooth({ secret: SECRET, storage: postgresStorage({ pool: own, schema }) })
    await tb.keys.create({ accountId: 'acct_1' })
    const ended = own.end()
    const err = await tb.keys.create({ accountId: 'acct_1' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toMatch(
      /^tollbooth\/postgres: options\.pool was ended \(pool\.end\(\)\) while tollbooth still uses it: call `await tb\.close\(\)` first/,
    )
    await tb.close().catch(() => undefined)
    await ended
  })

  it('refuses bad options by name, before any I/O', async () => {
    expect(() => postgresStorage({ pool: undefined as never })).toThrow(
      /options\.pool must be a pg Pool/,
    )
    expect(() => postgresStorage({ pool: {} as never })).toThrow(/options\.pool/)
    for (const schema of ['', 'a"b', 'x; DROP TABLE keys', '1abc', 'a'.repeat(49)]) {
      expect(() => postgresStorage({ pool, schema })).toThrow(/options\.schema must be/)
    }
    expect(() => postgresStorage({ pool, pruneEvery: -1 })).toThrow(/options\.pruneEvery/)
    expect(() => postgresStorage({ pool, pruneEvery: 1.5 })).toThrow(/options\.pruneEvery/)
    await expect(migrate({ pool, schema: 'bad-name' })).rejects.toThrow(/options\.schema/)
    await expect(migrate({ pool: null as never })).rejects.toBeInstanceOf(ConfigError)
  })
})
