/**
 * @module test/fault/postgres-app
 *
 * The API under test in the PostgreSQL fault test, run as its own Node process (`npx tsx`) so
 * the test sees it exit if an unhandled error event kills it: Hono on `@hono/node-server`,
 * `requireApiKey` with a credit cost of 1 per request, everything on `postgresStorage()`.
 * The pool is set up as the README says (an `'error'` listener for idle clients). Reads
 * `DATABASE_URL`, `TB_SCHEMA`, `TB_SECRET` and `TB_POOL_MAX` (the pool's size, 8 unless set);
 * prints `{"port":…}` on its first stdout line; `GET /stats` answers `tb.stats()` (the settle
 * retry queue), so the test can wait for it to empty, and the counters' `stats()`. On SIGTERM it stops accepting, closes tollbooth (waiting for retried settles, flushing
 * usage), prints `{"settleRetries":…}` and exits 0, or 3 if a retried operation is still
 * pending or was dropped.
 */

import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import pg from 'pg'
import { requireApiKey } from '../../adapters/hono/index.js'
import type { PostgresCounters } from '../../adapters/postgres/counters.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth } from '../../src/index.js'

const env = (name: string): string => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is required`)
  return v
}

const pool = new pg.Pool({
  connectionString: env('DATABASE_URL'),
  max: Number(process.env.TB_POOL_MAX ?? 8),
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
app.get('/stats', (c) =>
  c.json({ ...tb.stats(), counters: (storage.counters as PostgresCounters).stats() }),
)

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
        () => {
          const { settleRetries } = tb.stats()
          process.stdout.write(`${JSON.stringify({ settleRetries })}\n`)
          process.exit(settleRetries.pending === 0 && settleRetries.dropped === 0 ? 0 : 3)
        },
        (err) => {
          console.error('[close]', err)
          process.exit(2)
        },
      )
  })
})
