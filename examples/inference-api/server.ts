/**
 * @module examples/inference-api/server
 *
 * `npm run example:inference`: starts the inference API on PORT (default 3000) with the
 * SQLite storage (`data/tollbooth.db`, or under `DATA_DIR`), or on Redis / PostgreSQL when `REDIS_URL` / `DATABASE_URL` are set. It
 * creates an account with $5 of credit, a management key, a credit key, a pool subscription
 * for the current 8-hour block with a pool key, and a session token (for `/api/*` and the
 * developer portal at `/portal`), and prints them. With `STRIPE_SECRET_KEY`,
 * `STRIPE_WEBHOOK_SECRET` and `STRIPE_PRICE_CREDITS` set, credits are sold through Stripe
 * Checkout (`POST /api/billing/checkout`); otherwise `POST /api/billing/topup` is a stand-in.
 */

import type { AddressInfo } from 'node:net'
import { signSession } from '../shared/session.js'
import { DRAIN_MS, stopOnSignals } from '../shared/shutdown.js'
import { exampleSecrets, listenFailed } from '../shared/start.js'
import { demoAccountId, storageFromEnv } from '../shared/storage.js'
import { stripeFromEnv } from '../shared/stripe.js'
import { CREDITS_PER_USD, createInferenceApi, POOLS } from './app.js'
import { creditLimits, poolLimits, subscribe } from './plans.js'

const { secret, sessionSecret } = exampleSecrets()
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'

const stripe = stripeFromEnv(['credits'])
const opened = await storageFromEnv()
const { app, tb } = await createInferenceApi({
  secret,
  sessionSecret,
  storage: opened.storage,
  ...(stripe
    ? {
        stripe: {
          client: stripe.client,
          webhookSecret: stripe.webhookSecret,
          creditsPriceId: stripe.prices.credits,
          // Optional: a monthly price sells pool subscriptions through Checkout too.
          poolPriceId: process.env['STRIPE_PRICE_POOL'] || undefined,
        },
      }
    : {}),
})

const accountId = demoAccountId('user_demo', opened)
await tb.accounts.addCredits(accountId, 5 * CREDITS_PER_USD)
const management = await tb.keys.create({ accountId, name: 'mgmt_key_01', kind: 'management' })
const credit = await tb.keys.create({
  accountId,
  name: 'client_42',
  category: 'production',
  metadata: { keyPlan: 'credits' },
  limits: creditLimits({ rpm: 60 }),
})
// The pool whose daily block is under way now, so the pool key works at once.
const hour = new Date().getUTCHours()
const poolId = Object.keys(POOLS).find(
  (id) => hour >= POOLS[id]!.fromHour && hour < POOLS[id]!.toHour,
)!
const sub = await subscribe(tb, accountId, poolId, 30, Date.now())
const pool = await tb.keys.create({
  accountId: sub.accountId,
  name: `${poolId} key`,
  category: 'subscription',
  metadata: { keyPlan: 'pool', subscriptionId: sub.id },
  expiresAt: sub.expiresAt,
  limits: poolLimits(sub),
})
const session = await signSession(sessionSecret, accountId)

await app.listen({ port, host }).catch((err: unknown) => listenFailed(err, port, host))
const url = `http://${host}:${(app.server.address() as AddressInfo).port}`
console.log(`inference-api listening on ${url} (storage: ${opened.label})`)
if (opened.file) console.log(`data: ${opened.file}`)
console.log(`account: ${accountId}`)
console.log(`management key: ${management.key}`)
console.log(`consumption key: ${credit.key}`)
console.log(`pool key: ${pool.key}`)
console.log(`session token: ${session}`)
console.log(`portal: ${url}/portal/ (sign in with the session token)`)
console.log(
  `billing: ${stripe ? `Stripe, webhook at ${url}/api/billing/webhook` : 'the stand-in top-up (set STRIPE_* for Stripe)'}`,
)
console.log(
  `try: curl ${url}/v1/chat/completions -H "Authorization: Bearer ${credit.key}" -H "Content-Type: application/json" -d '{"model":"echo-1","messages":[{"role":"user","content":"Hello"}]}'`,
)

// SIGTERM / SIGINT: Fastify's close() stops accepting, waits for the requests in flight (cut
// after DRAIN_MS), then runs the app's onClose hook, which closes tb (writing their usage).
stopOnSignals({
  drain: async () => {
    const cut = setTimeout(() => app.server.closeAllConnections(), DRAIN_MS)
    await app.close()
    clearTimeout(cut)
  },
  close: () => opened.close(),
})
