/**
 * @module test/multi-instance/leased-server
 *
 * One API instance for the leased-limits test (`leases.test.ts`), run as its own Node process
 * (`npx tsx`): Hono on `@hono/node-server`, leases on (the default) with a share of 5 % so a
 * limit of 500 is leased, on `redisStorage()` (`TB_STORE=redis`, `REDIS_URL`, `TB_PREFIX`) or
 * `postgresStorage()` (`TB_STORE=postgres`, `DATABASE_URL`, `TB_SCHEMA`). Plan `pro` grants
 * `TB_CREDITS` credits a month. Routes: `GET /v1/work` (uncharged), `GET /v1/paid` (cost 1),
 * `GET /v1/slow` (cost 1, answers after 30 s),
 * `GET /stats` (`tb.stats()`, and `slow`: the
 * admitted requests of `/v1/slow`). `TB_LEASE_TTL_MS`, `TB_RESERVATION_TTL_MS` and `TB_CLOCK_SKEW_MS` shorten the lease
 * and hold lifetimes. Prints `{"port":…}` first; on SIGTERM closes tollbooth (returning its
 * leases) and exits 0.
 */

import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import pg from 'pg'
import { requireApiKey } from '../../adapters/hono/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage } from '../../src/index.js'

const env = (name: string): string => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is required`)
  return v
}

const name = env('TB_NAME')
let storage: Storage
let end: () => Promise<unknown>
if (env('TB_STORE') === 'redis') {
  const client = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 5000,
    lazyConnect: true,
  })
  client.on('error', (err) => console.error(`[${name}] redis:`, err.message))
  await client.connect()
  storage = redisStorage({ client, keyPrefix: env('TB_PREFIX') })
  end = () => client.quit()
} else {
  const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 8 })
  pool.on('error', (err) => console.error(`[${name}] pg:`, err.message))
  storage = postgresStorage({ pool, schema: env('TB_SCHEMA') })
  end = () => pool.end()
}

const tb = createTollbooth({
  secret: env('TB_SECRET'),
  storage,
  storageTimeoutMs: 10_000,
  cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 1000 },
  usage: { flushIntervalMs: 100, maxBatch: 500, retentionMs: 86_400_000 },
  failedAuth: false,
  plans: { pro: { monthlyCredits: Number(env('TB_CREDITS')) } },
  defaultTier: 'pro',
  reservationTtlMs: Number(process.env['TB_RESERVATION_TTL_MS'] ?? 60_000),
  leases: {
    maxShare: 0.05,
    ttlMs: Number(process.env['TB_LEASE_TTL_MS'] ?? 1000),
    clockSkewMs: Number(process.env['TB_CLOCK_SKEW_MS'] ?? 2000),
  },
  onError: (err: unknown) => console.error(`[${name}]`, (err as Error).message),
})

const app = new Hono()
let slow = 0
app.get('/stats', (c) => c.json({ ...tb.stats(), slow }))
app.use('/v1/work', requireApiKey(tb))
app.use('/v1/paid', requireApiKey(tb, { cost: 1 }))
app.use('/v1/slow', requireApiKey(tb, { cost: 1 }))
app.get('/v1/work', (c) => c.json({ instance: name }))
app.get('/v1/paid', (c) => c.json({ instance: name }))
// Holds its credit for 30 s: a process killed meanwhile dies holding leases.
app.get('/v1/slow', async (c) => {
  slow++
  await new Promise((r) => setTimeout(r, 30_000))
  return c.json({ instance: name })
})

const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`${JSON.stringify({ port: info.port })}\n`)
})

process.on('SIGTERM', () => {
  server.close()
  void tb
    .close()
    .then(() => storage.close?.())
    .then(end)
    .finally(() => process.exit(0))
})
