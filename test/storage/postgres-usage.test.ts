/**
 * @module test/storage/postgres-usage
 *
 * Usage on PostgreSQL beyond the conformance suite: a batch is one statement however large
 * (events and their hourly totals), concurrent flushes of overlapping batches store and total
 * each event once, and a log cursor that is
 * not one answers a 400 naming `cursor` instead of a database error.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PgPool, postgresStorage } from '../../adapters/postgres/index.js'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import { InvalidRequestError } from '../../src/index.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'

describe.skipIf(skipPostgres)('postgres usage', () => {
  let pool: pg.Pool
  let schema = ''
  let drop: () => Promise<void> = async () => {}
  const statements: string[] = []

  /** The real pool, with each statement sent through `query` written down. */
  const counting = (): PgPool => ({
    query: ((text: unknown, values?: unknown) => {
      statements.push(typeof text === 'string' ? text : String((text as { text: string }).text))
      return pool.query(text as string, values as unknown[])
    }) as PgPool['query'],
    connect: pool.connect.bind(pool) as PgPool['connect'],
  })

  beforeAll(async () => {
    pool = newPool(20)
    const s = await freshSchema(pool)
    schema = s.schema
    drop = s.drop
  })

  afterAll(async () => {
    await drop()
    await pool?.end()
  })

  it('records a batch of 2000 events in one statement', async () => {
    const storage = postgresStorage({ pool: counting(), schema })
    const accountId = 'acct_batch'
    const events = Array.from({ length: 2000 }, (_, i) =>
      makeEvent({ accountId, time: 1_767_225_600_000 + i, units: 0.5 }),
    )
    statements.length = 0
    await storage.usage.record(events)
    expect(statements).toHaveLength(1)
    // One statement inserts the events and adds the inserted ones to the hourly totals.
    expect(statements[0]).toMatch(/^WITH ins AS \(\s*INSERT INTO .* ON CONFLICT \(id\) DO NOTHING/s)
    expect(statements[0]).toMatch(/INSERT INTO \S+usage_totals/)
    const s = await storage.usage.summarize(accountId, 0, 2e12)
    expect(s).toMatchObject({ requests: 2000, units: 1000 })
  })

  it('stores each event once when overlapping batches in any order are flushed at once', async () => {
    const storage = postgresStorage({ pool, schema })
    const accountId = 'acct_overlap'
    const events = Array.from({ length: 300 }, () => makeEvent({ accountId }))
    // Overlapping batches, every other one in reverse: inserted as given, two of them would
    // wait on each other's rows (a deadlock) instead of skipping them.
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => {
        const batch = events.slice(i * 20, i * 20 + 120)
        return storage.usage.record(i % 2 ? batch.reverse() : batch)
      }),
    )
    const n = await pool.query(
      `SELECT count(*)::int AS n FROM "${schema}".usage_events WHERE account_id = $1`,
      [accountId],
    )
    expect(n.rows[0].n).toBe(300)
    // The totals count each event once too.
    const sum = await storage.usage.summarize(accountId, 0, 2e12)
    expect(sum.requests).toBe(300)
  })

  it('answers a 400 naming cursor for a log cursor that is not one', async () => {
    const storage = postgresStorage({ pool, schema })
    for (const cursor of ['garbage', 'NaN.req_1', '12.', '1e400.x']) {
      const err = await storage.usage.logs('key_1', { limit: 5, cursor }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect((err as InvalidRequestError).issues).toEqual([
        { path: 'cursor', message: 'not a cursor of this list' },
      ])
    }
  })
})
