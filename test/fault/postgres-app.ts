/**
 * @module test/fault/postgres-app
 *
 * The API under test in the PostgreSQL fault test, run as its own Node process (`npx tsx`) so
 * the test sees it exit if an unhandled error event kills it: Hono on `@hono/node-server`,
 * `requireApiKey` with a credit cost of 1 per request, everything on `postgresStorage()`.
 * The pool is set up as the README says (an `'error'` listener for idle clients). Reads
 * `DATABASE_URL`, `TB_SCHEMA`, `TB_SECRET`; prints `{"port":…}` on its first stdout line; on
 * SIGTERM stops accepting, drains, closes tollbooth (flushing usage) and exits 0.
 */

import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import pg from 'pg'
import { requireApiKey } from '../../adapters/hono/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth } from '../../src/index.js'

const env = (name: string): string => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is required`)
  return v
}

const pool = new pg.Pool({
  connectionString: env('DATABASE_URL'),
  max: 8,
  connectionTimeoutMillis: 1000,
})
// Idle clients whose server went away: without a listener their error would end the process.
pool.on('error', (err) => console.error('[pg pool]', err.message))

const storage = postgresStorage({
  pool,
  schema: env('TB_SCHEMA'),
  // Below storageTimeoutMs by a round trip: a late admission is rolled back, not committed.
  statementTimeoutMs: 750,
  // Each commit waits for its WAL write, so a killed server forgets no admitted count.
  durableCounters: true,
  onError: (err) => console.error('[tollbooth/postgres]', (err as Error).message),
})
const tb = createTollbooth({
  secret: env('TB_SECRET'),
  storage,
  storageTimeoutMs: 1000,
  failedAuth: false,
  plans: { pro: { monthlyCredits: 1_000_000 } },
  defaultTier: 'pro',
  usage: { flushIntervalMs: 100, maxBatch: 500, retentionMs: 86_400_000 },
  onError: (err: unknown) => console.error('[tollbooth]', (err as Error).message),
})

const app = new Hono()
app.use('/v1/*', requireApiKey(tb, { cost: 1 }))
app.get('/v1/work', (c) => c.json({ ok: true }))

const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`${JSON.stringify({ port: info.port })}\n`)
})

process.on('SIGTERM', () => {
  server.close(() => {
    void tb
      .close()
      .then(() => storage.close())
      .then(() => pool.end())
      .then(
        () => process.exit(0),
        (err) => {
          console.error('[close]', err)
          process.exit(2)
        },
      )
  })
})
