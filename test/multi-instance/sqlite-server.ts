/**
 * @module test/multi-instance/sqlite-server
 *
 * One API process on a SQLite file, for the multi-process and crash tests: Hono on
 * `@hono/node-server`, `GET /v1/work` guarded by `requireApiKey` at a cost of 1 credit, on
 * `sqliteStorage({ path: TB_FILE })`. Reads `TB_FILE`, `TB_SECRET`, `TB_NAME`, `TB_POLL_MS`
 * (the change feed's poll) and `TB_FLUSH_MS` (the usage out-box's interval); listens on a free
 * port of 127.0.0.1 and prints `{"port":…}` first. `POST /admin/revoke/:id` revokes a key
 * here. On SIGTERM it stops accepting, flushes its usage (`tb.close()`) and exits 0.
 */

import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { requireApiKey } from '../../adapters/hono/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth } from '../../src/index.js'

const env = (name: string): string => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is required`)
  return v
}

const name = env('TB_NAME')
const storage = sqliteStorage({
  path: env('TB_FILE'),
  changePollMs: Number(process.env['TB_POLL_MS'] ?? 250),
})
const tb = createTollbooth({
  secret: env('TB_SECRET'),
  storage,
  // A long cache TTL: only the change feed can make this process forget a revoked key.
  cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 1000 },
  usage: {
    flushIntervalMs: Number(process.env['TB_FLUSH_MS'] ?? 100),
    maxBatch: 500,
    retentionMs: 86_400_000,
  },
  plans: { big: { monthlyCredits: 1_000_000 } },
  defaultTier: 'big',
  failedAuth: false,
})

const app = new Hono()
app.use('/v1/*', requireApiKey(tb, { cost: 1 }))
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
    .then(() => storage.close())
    .finally(() => process.exit(0))
})
