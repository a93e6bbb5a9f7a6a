/**
 * @module test/multi-instance/server
 *
 * One API instance for the multi-instance test, run as its own Node process (`npx tsx`):
 * Hono on `@hono/node-server`, guarded by `requireApiKey`, on `redisStorage()`. Reads
 * `REDIS_URL`, `TB_PREFIX`, `TB_SECRET` and `TB_NAME`; listens on a free port of 127.0.0.1 and
 * prints `{"port":…}` on its first stdout line. `POST /admin/revoke/:id` revokes a key here,
 * so the test can check that another process hears of it. Exits cleanly on SIGTERM.
 */

import { Redis } from 'ioredis'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'
import { INSTANCE_OPTIONS, requiredEnv, serveInstance } from '../support/instance-server.js'

const client = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  connectTimeout: 2000,
  commandTimeout: 2000,
  lazyConnect: true,
})
client.on('error', (err) => console.error(`[${requiredEnv('TB_NAME')}] redis:`, err.message))
await client.connect()

const storage = redisStorage({ client, keyPrefix: requiredEnv('TB_PREFIX') })
const tb = createTollbooth({
  ...INSTANCE_OPTIONS,
  secret: requiredEnv('TB_SECRET'),
  storage,
  usage: { flushIntervalMs: 100, maxBatch: 500, retentionMs: 86_400_000 },
})

serveInstance({
  tb,
  close: async () => {
    await storage.close?.()
    await client.quit()
  },
})
