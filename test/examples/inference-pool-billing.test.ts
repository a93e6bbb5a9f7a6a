/**
 * Pool subscriptions sold and renewed through the billing provider
 * (`004_8209d5d9c76b9400.txt`: "Key expires at period end → Renew"), with the real `stripe`
 * client against the stand-in Stripe server: subscribing opens Checkout and mints nothing; the
 * signed webhook of the paid period activates the subscription once (a replay changes
 * nothing); a paid renewal extends the subscription and its keys' expiry.
 */

import Stripe from 'stripe'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createInferenceApi } from '../../examples/inference-api/app.js'
import { signSession } from '../../examples/shared/session.js'
import { type ManualClock, manualClock, type Tollbooth } from '../../src/internal.js'
import { type FakeStripe, startFakeStripe } from '../billing/stripe-server.js'
import { type Client, clientOf, type Served, serveFastify } from './http.js'

const WHSEC = 'whsec_inference_pool_test_secret'
const T0 = Date.UTC(2026, 0, 20, 14, 30) // inside the 08:00-16:00 block
const DAY = 86_400_000
const SESSION_SECRET = 'inference-pool-session-secret-0123456789'
const URLS = { successUrl: 'https://app.test/ok', cancelUrl: 'https://app.test/no' }
const signer = new Stripe('sk_test_unused')

let fake: FakeStripe
beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(() => fake.close())
let served: Served | undefined
afterEach(async () => {
  await served?.close()
  served = undefined
})

async function start(): Promise<{
  tb: Tollbooth
  api: Client
  clock: ManualClock
  session: string
}> {
  const clock = manualClock(T0)
  const { app, tb } = await createInferenceApi({
    secret: 'inference-pool-secret-inference-pool-0000',
    sessionSecret: SESSION_SECRET,
    clock,
    stripe: {
      client: fake.client(),
      webhookSecret: WHSEC,
      creditsPriceId: 'price_usd_credit',
      poolPriceId: 'price_pool_month',
    },
  })
  served = await serveFastify(app)
  const session = await signSession(SESSION_SECRET, 'user_1', { now: T0, ttlSeconds: 90 * 86_400 })
  return { tb, api: clientOf(served), clock, session }
}

let seq = 0
function deliver(
  api: Client,
  type: string,
  object: Record<string, unknown>,
  at: number,
  id?: string,
) {
  const body = JSON.stringify({
    id: id ?? `evt_pool_${++seq}`,
    object: 'event',
    type,
    created: Math.floor(at / 1000),
    api_version: '2026-10-28.endive',
    data: { object },
  })
  const signature = signer.webhooks.generateTestHeaderString({
    payload: body,
    secret: WHSEC,
    timestamp: Math.floor(at / 1000),
  })
  return api('POST', '/api/billing/webhook', {
    headers: { 'stripe-signature': signature, 'content-type': 'application/json' },
    json: JSON.parse(body),
  })
}

/** Stripe's subscription object of a paid period ending at `end` (ms). */
const subscription = (accountId: string, end: number) => ({
  id: 'sub_stripe_pool_1',
  object: 'subscription',
  status: 'active',
  customer: 'cus_pool_1',
  metadata: { tollbooth_account_id: accountId, tollbooth_tier: 'unlimited' },
  items: {
    object: 'list',
    data: [{ price: { id: 'price_pool_month' }, current_period_end: Math.floor(end / 1000) }],
  },
})

/** Stripe's paid renewal invoice of the period ending at `end` (ms). */
const renewal = (accountId: string, end: number) => ({
  id: 'in_pool_renewal_1',
  object: 'invoice',
  customer: 'cus_pool_1',
  billing_reason: 'subscription_cycle',
  parent: {
    subscription_details: {
      subscription: 'sub_stripe_pool_1',
      metadata: { tollbooth_account_id: accountId },
    },
  },
  lines: {
    object: 'list',
    data: [
      {
        pricing: { price_details: { price: 'price_pool_month' } },
        period: { start: Math.floor((end - 30 * DAY) / 1000), end: Math.floor(end / 1000) },
      },
    ],
  },
})

const chat = (api: Client, key: string) =>
  api('POST', '/v1/chat/completions', {
    token: key,
    json: { model: 'echo-1', messages: [{ role: 'user', content: 'Hi' }] },
  })

describe('inference-api example: pool subscriptions paid and renewed (004)', () => {
  it('sells a pool through Checkout, activates it once on the paid period, renews its keys', async () => {
    const { tb, api, clock, session } = await start()
    fake.requests.length = 0
    const sub = await api('POST', '/api/pools/pool-day/subscribe', {
      token: session,
      json: URLS,
    })
    expect(sub.status).toBe(201)
    expect(sub.body.data).toMatchObject({ poolId: 'pool-day', status: 'pending' })
    expect(sub.body.data.url).toBe(`https://checkout.stripe.com/c/pay/${sub.body.data.sessionId}`)
    const sent = fake.requests.find(
      (r) => r.method === 'POST' && r.path === '/v1/checkout/sessions',
    )
    const accountId = `user_1:${sub.body.data.id}`
    expect(sent!.form).toMatchObject({
      mode: 'subscription',
      'line_items[0][price]': 'price_pool_month',
      'metadata[tollbooth_account_id]': accountId,
    })
    // Not paid yet: no key, and subscribing is no longer free.
    const early = await api('POST', '/api/keys/subscription', { token: session })
    expect(early.status).toBe(404)
    const status = await api('GET', '/api/billing/status', { token: session })
    expect(status.body.data.subscriptions).toEqual([
      expect.objectContaining({ id: sub.body.data.id, status: 'pending' }),
    ])

    // The provider says the first month is paid.
    const periodEnd = T0 + 30 * DAY
    const paid = subscription(accountId, periodEnd)
    expect(
      (await deliver(api, 'customer.subscription.created', paid, T0, 'evt_pool_paid')).status,
    ).toBe(200)
    const minted = await api('POST', '/api/keys/subscription', { token: session })
    expect(minted.status).toBe(201)
    const key = minted.body.data.apiKey as string
    expect((await chat(api, key)).status).toBe(200)
    const first = (await tb.keys.get(minted.body.data.id)).expiresAt!
    expect(first).toBeGreaterThanOrEqual(periodEnd)
    // Applied once: the same event again changes nothing.
    expect(
      (await deliver(api, 'customer.subscription.created', paid, T0, 'evt_pool_paid')).status,
    ).toBe(200)
    expect((await tb.keys.get(minted.body.data.id)).expiresAt).toBe(first)

    // The renewal is paid: the subscription and its key run another month.
    const nextEnd = periodEnd + 30 * DAY
    clock.set(periodEnd - DAY)
    expect(
      (await deliver(api, 'invoice.paid', renewal(accountId, nextEnd), periodEnd - DAY)).status,
    ).toBe(200)
    const renewed = (await tb.keys.get(minted.body.data.id)).expiresAt!
    expect(renewed).toBeGreaterThanOrEqual(nextEnd)
    const listed = (await api('GET', '/api/keys', { token: session })).body.data[0]
    expect(listed.subscriptionExpiresAt).toBe(new Date(renewed).toISOString())
    // Past the first period's end and its grace, inside the day block (14:30): still works.
    expect(first).toBeLessThan(periodEnd + 5 * DAY)
    clock.set(periodEnd + 5 * DAY)
    expect((await chat(api, key)).status).toBe(200)
  })
})
