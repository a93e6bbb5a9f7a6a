/**
 * @module examples/voice-api/server
 *
 * `npm run demo` / `npm run example:voice`: starts the voice API on PORT (default 3000) with
 * the in-memory storage, creates an account with a management key and a consumption key, and
 * prints them.
 */

import { serve } from '@hono/node-server'
import { createVoiceApi } from './app.js'

const secret = process.env.TOLLBOOTH_SECRET ?? 'demo-secret-change-me-demo-secret-change-me'
const port = Number(process.env.PORT ?? 3000)
const { app, tb } = createVoiceApi({ secret })

await tb.accounts.setTier('acct_demo', 'pro')
const management = await tb.keys.create({
  accountId: 'acct_demo',
  name: 'Demo management key',
  kind: 'management',
})
const consumption = await tb.keys.create({
  accountId: 'acct_demo',
  name: 'Demo key',
  limits: { rateLimits: [{ limit: 60, windowMs: 60_000 }] },
})

const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, (info) => {
  console.log(`voice-api listening on http://127.0.0.1:${info.port}`)
  console.log(`management key: ${management.key}`)
  console.log(`consumption key: ${consumption.key}`)
  console.log(
    `try: curl -X POST http://127.0.0.1:${info.port}/v1/synthesize -H "Authorization: Bearer ${consumption.key}" -H "Content-Type: application/json" -d '{"text":"Hello"}' -i`,
  )
})

const stop = async () => {
  server.close()
  await tb.close()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
