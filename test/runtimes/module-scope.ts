/**
 * @module test/runtimes/module-scope
 *
 * The README's Hono quick start as a runtime runs it: `createTollbooth()` and the app built at
 * module scope (Workers allow no random numbers and no timers there; Deno without
 * `--allow-env` throws on every environment read), the client's address found by the Hono
 * adapter off `@hono/node-server` (so the failed-auth guard, 3 failures here, blocks it).
 * Bundled and served by the runtime suite.
 *
 * - `POST /setup`: a consumption key (test only).
 * - `GET /v1/hello`: through `requireApiKey`.
 */

import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { requireApiKey } from '../../adapters/hono/index.js'
import { createTollbooth } from '../../src/index.js'

const tb = createTollbooth({
  secret: 'runtime-suite-secret-runtime-suite-secret',
  plans: { pro: { monthlyCredits: 1000 } },
  defaultTier: 'pro',
  failedAuth: { limit: 3, windowMs: 60_000, blockMs: 60_000 },
})
const app = new Hono()
app.onError((err, c) =>
  err instanceof HTTPException ? err.getResponse() : c.json({ error: String(err) }, 500),
)
app.post('/setup', async (c) => {
  const created = await tb.keys.create({ accountId: 'acct_module' })
  return c.json({ key: created.key })
})
app.use('/v1/*', requireApiKey(tb, { cost: 1 }))
app.get('/v1/hello', (c) => c.json({ account: c.get('apiKey').accountId }))

export default app
