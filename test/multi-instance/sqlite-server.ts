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

import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth } from '../../src/index.js'
import { INSTANCE_OPTIONS, requiredEnv, serveInstance } from '../support/instance-server.js'

const storage = sqliteStorage({
  path: requiredEnv('TB_FILE'),
  changePollMs: Number(process.env['TB_POLL_MS'] ?? 250),
})
const tb = createTollbooth({
  ...INSTANCE_OPTIONS,
  secret: requiredEnv('TB_SECRET'),
  storage,
  usage: {
    flushIntervalMs: Number(process.env['TB_FLUSH_MS'] ?? 100),
    maxBatch: 500,
    retentionMs: 86_400_000,
  },
  plans: { big: { monthlyCredits: 1_000_000 } },
  defaultTier: 'big',
})

serveInstance({ tb, cost: 1, close: () => storage.close() })
