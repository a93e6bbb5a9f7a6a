/**
 * @module test/billing/meter-process
 *
 * The process `meter-kill.test.ts` kills: tollbooth with `stripeBilling` on Redis (`REDIS_URL`,
 * `TB_PREFIX`) and the stand-in Stripe (`STRIPE_PORT`). It serves five requests of cost 4 for
 * `TB_ACCOUNT` (10 credits a month, then overage 2, 4, 4), writes their usage, and prints
 * `{"port":0}` with its meter still holding the overage (its flush is an hour away); then
 * it waits to be killed.
 */

import Stripe from 'stripe'
import { redisStorage } from '../../adapters/redis/index.js'
import { stripeBilling } from '../../adapters/stripe/index.js'
import { createTollbooth } from '../../src/index.js'
import { requiredEnv } from '../support/instance-server.js'
import { connectRedis } from '../support/redis.js'

const client = (await connectRedis())!
const tb = createTollbooth({
  secret: requiredEnv('TB_SECRET'),
  storage: redisStorage({ client, keyPrefix: requiredEnv('TB_PREFIX') }),
  plans: { pro: { monthlyCredits: 10, allowOverage: true } },
  usage: { flushIntervalMs: 3_600_000, maxBatch: 10_000 },
})
const billing = stripeBilling(tb, {
  stripe: new Stripe('sk_test_fake_key_for_the_stand_in', {
    host: '127.0.0.1',
    port: Number(requiredEnv('STRIPE_PORT')),
    protocol: 'http',
    maxNetworkRetries: 0,
    telemetry: false,
  }),
  webhookSecret: 'whsec_test_secret_kill_0005',
  tiers: { pro: { priceId: 'price_pro' } },
  meterEventName: 'api_overage',
  meter: { intervalMs: 3_600_000, retryMs: 3_600_000 },
})
const account = requiredEnv('TB_ACCOUNT')
await tb.accounts.setTier(account, 'pro')
await billing.customerFor(account)
const { key } = await tb.keys.create({ accountId: account, name: 'k' })
const route = tb.route({ cost: 4 })
for (let i = 0; i < 5; i++) {
  const d = await tb.authenticate(
    { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'POST', path: '/x' },
    route,
  )
  await tb.settle(d, { status: 200 })
}
await tb.flush()
if (billing.meter!.pending !== 3) throw new Error(`meter holds ${billing.meter!.pending}, not 3`)
console.log(JSON.stringify({ port: 0 }))
setInterval(() => {}, 60_000) // killed here
