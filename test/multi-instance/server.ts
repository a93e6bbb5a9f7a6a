/**
 * @module test/multi-instance/server
 *
 * One API instance for the multi-instance test, run as its own Node process (`npx tsx`):
 * Hono on `@hono/node-server`, guarded by `requireApiKey`, on `redisStorage()`. Reads
 * `REDIS_URL`, `TB_PREFIX`, `TB_SECRET` and `TB_NAME`; listens on a free port of 127.0.0.1 and
 * prints `{"port":…}` on its first stdout line. `POST /admin/revoke/:id` revokes a key here,
 * so the test can check that another process hears of it. Exits cleanly on SIGTERM.
 */

import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { requireApiKey } from '../../adapters/hono/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'

const env = (name: string): string => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is required`)
  return v
}

const name = env('TB_NAME')
const client = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  connectTimeout: 2000,
  commandTimeout: 2000,
  lazyConnect: true,
})
client.on('error', (err) => console.error(`[${name}] redis:`, err.message))
await client.connect()

const storage = redisStorage({ client, keyPrefix: env('TB_PREFIX') })
const tb = createTollbooth({
  secret: env('TB_SECRET'),
  storage,
  // A long cache TTL: only the change feed can make this instance forget a revoked key.
  cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 1000 },
  usage: { flushIntervalMs: 100, maxBatch: 500, retentionMs: 86_400_000 },
  failedAuth: false,
})

const app = new Hono()
app.use('/v1/*', requireApiKey(tb))
app.get('/v1/work', (c) => c.json({ instance: name, account: c.get('apiKey').key.accountId }))
app.post('/admin/revoke/:id', async (c) => {
  await tb.keys.revoke(c.req.param('id'))
  return c.json({ revoked: true, by: name })
})

const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`${JSON.stringify({ port: info.port })}\n`)
})

process.on('SIGTERM', () => {
  server.close()
  void tb
    .close()
    .then(() => storage.close?.())
    .then(() => client.quit())
    .finally(() => process.exit(0))
})
