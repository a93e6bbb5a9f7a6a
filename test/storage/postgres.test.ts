/**
 * @module test/storage/postgres
 *
 * The storage conformance suite on `postgresStorage()`, against the real server at
 * `DATABASE_URL`, in a schema of its own that is dropped afterwards. The same suite then runs
 * on the combination the README recommends with Redis, here with memory counters standing in
 * (PostgreSQL for durable data, another store's counters, spread into one storage value), and
 * without prepared statements.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { describeStorageConformance } from '../../adapters/testing/index.js'
import { memoryStorage, type Storage } from '../../src/index.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'

describe.skipIf(skipPostgres)('postgres', () => {
  let pool: pg.Pool
  let drop: () => Promise<void> = async () => {}
  let storage: Storage
  let schema = ''

  beforeAll(async () => {
    pool = newPool()
    const s = await freshSchema(pool)
    drop = s.drop
    schema = s.schema
    storage = postgresStorage({ pool, schema })
  })

  afterAll(async () => {
    await storage?.close?.()
    await drop()
    await pool?.end()
  })

  describeStorageConformance('postgres', async () => ({ storage }))
  // Also without prepared statements, as behind PgBouncer in transaction mode.
  describeStorageConformance('postgres with separate counters', async () => ({
    storage: {
      ...postgresStorage({ pool, schema, preparedStatements: false }),
      counters: memoryStorage().counters,
    },
  }))
})
