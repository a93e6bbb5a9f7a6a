/**
 * @module test/support/instance-server
 *
 * The side of an instance process of the multi-instance suites (`test/multi-instance/server.ts`
 * on Redis, `sqlite-server.ts` on SQLite): its environment, the tollbooth options of every
 * instance (a long cache, so only the change feed can make an instance forget a revoked key)
 * and `serveInstance`, the Hono app on `@hono/node-server` that prints `{"port":…}` first and
 * closes cleanly on SIGTERM. No vitest here: it runs under plain `npx tsx`.
 */

import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { requireApiKey } from '../../adapters/hono/index.js'
import type { Tollbooth, TollboothOptions } from '../../src/index.js'

/** A variable the instance needs. */
export function requiredEnv(name: string): string {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is required`)
  return v
}

/** The options of every instance, beside its storage and usage settings. */
export const INSTANCE_OPTIONS = {
  // A long cache TTL: only the change feed can make an instance forget a revoked key.
  cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 1000 },
  failedAuth: false,
} satisfies Partial<TollboothOptions>

/**
 * Serves `GET /v1/work` (guarded, at `cost` credits) and `POST /admin/revoke/:id` on a free
 * port of 127.0.0.1, prints `{"port":…}`, and on SIGTERM stops accepting, closes `tb` (its
 * usage flushed), runs `close` (the storage, its client) and exits 0.
 */
export function serveInstance(o: {
  tb: Tollbooth
  cost?: number
  close(): Promise<unknown>
}): void {
  const name = requiredEnv('TB_NAME')
  const tb = o.tb
  const app = new Hono()
  app.use('/v1/*', requireApiKey(tb, o.cost === undefined ? {} : { cost: o.cost }))
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
      .then(() => o.close())
      .finally(() => process.exit(0))
  })
}
