/**
 * @module examples/voice-api/server
 *
 * `npm run example:voice` (also `npm run demo`): starts the voice API on PORT (default 3000)
 * on SQLite (`data/tollbooth.db`, or under `DATA_DIR`), or on Redis / PostgreSQL when `REDIS_URL` / `DATABASE_URL` are
 * set, creates an account on the pro plan with a management key, an API key and a portal
 * session token (it signs in to the developer portal at `/portal`), and prints them one a
 * line. With `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET` and `STRIPE_PRICE_STARTER` / `_PRO` /
 * `_SCALE` set, the tiers are sold through Stripe Checkout; otherwise through the stand-in.
 */

import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { signSession } from '../shared/session.js'
import { drainHttp, stopOnSignals } from '../shared/shutdown.js'
import { exampleSecrets, listenFailed } from '../shared/start.js'
import { demoAccountId, storageFromEnv } from '../shared/storage.js'
import { stripeFromEnv } from '../shared/stripe.js'
import { createVoiceApi, KEY_LIMITS } from './app.js'

const { secret, sessionSecret } = exampleSecrets()
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
let publicUrl = `http://${host}:${port}`

const stripe = stripeFromEnv(['starter', 'pro', 'scale'])
const opened = await storageFromEnv()
const {
  app,
  tb,
  stripe: billing,
} = createVoiceApi({
  secret,
  storage: opened.storage,
  sessionSecret,
  publicUrl: () => publicUrl,
  stripe: stripe ?? undefined,
})

const accountId = demoAccountId('acct_demo', opened)
await tb.accounts.setTier(accountId, 'pro')
const management = await tb.keys.create({
  accountId,
  name: 'Demo management key',
  kind: 'management',
})
const consumption = await tb.keys.create({ accountId, name: 'Demo key', limits: KEY_LIMITS })
const session = await signSession(sessionSecret, accountId)

const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => {
  publicUrl = `http://${host}:${info.port}`
  console.log(`voice-api listening on ${publicUrl} (storage: ${opened.label})`)
  if (opened.file) console.log(`data: ${opened.file}`)
  console.log(`account: ${accountId}`)
  console.log(`management key: ${management.key}`)
  console.log(`consumption key: ${consumption.key}`)
  console.log(`session token: ${session}`)
  console.log(`portal: ${publicUrl}/portal/ (sign in with the session token)`)
  console.log(
    `billing: ${stripe ? `Stripe, webhook at ${publicUrl}/v1/billing/webhook` : 'the demo stand-in (set STRIPE_* for Stripe)'}`,
  )
  console.log(
    `try: curl -X POST ${publicUrl}/v1/synthesize -H "Authorization: Bearer ${consumption.key}" -H "Content-Type: application/json" -d '{"text":"Hello"}' -i`,
  )
})
server.on('error', (err) => listenFailed(err, port, host))

// SIGTERM / SIGINT: stop accepting, finish the requests in flight, write their usage, exit.
stopOnSignals({
  drain: () => drainHttp(server as Server),
  close: async () => {
    await tb.close()
    // Then the Stripe meter: the overage the settles just queued goes out before the exit.
    await billing?.close()
    await opened.close()
  },
})
