/**
 * Stripe in the examples, through the real `stripe` client pointed at the stand-in Stripe
 * server of `test/billing/stripe-server.ts`: the voice API sells its tiers (Checkout in
 * subscription mode with the tier's price; the signed webhook at `/v1/billing/webhook` sets the
 * tier) and the inference API sells credit top-ups (Checkout in payment mode; the signed
 * completed payment adds the credits once, a replay adds nothing). Events are signed with
 * `stripe.webhooks.generateTestHeaderString`; a bad signature changes nothing.
 */

import Stripe from 'stripe'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { CREDITS_PER_USD, createInferenceApi } from '../../examples/inference-api/app.js'
import { signSession } from '../../examples/shared/session.js'
import { stripeFromEnv } from '../../examples/shared/stripe.js'
import { manualClock, type Tollbooth } from '../../src/internal.js'
import { type FakeStripe, startFakeStripe } from '../billing/stripe-server.js'
import { type Client, clientOf, type Res, type Served, serveFastify } from './http.js'
import { startVoice, T0 as VOICE_T0, type VoiceFixture } from './voice-fixture.js'

const WHSEC = 'whsec_examples_stripe_test_secret'
const PRICES = { starter: 'price_starter_m', pro: 'price_pro_m', scale: 'price_scale_m' }
const URLS = { successUrl: 'https://app.test/billing/ok', cancelUrl: 'https://app.test/billing/no' }
const DAY = 86_400_000
const signer = new Stripe('sk_test_unused')

let fake: FakeStripe
beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(() => fake.close())
beforeEach(() => {
  fake.requests.length = 0
})

const checkoutSessions = () =>
  fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/checkout/sessions')

let seq = 0
/** A Stripe event around `object`, as JSON. */
const event = (type: string, object: Record<string, unknown>, created: number, id?: string) =>
  JSON.stringify({
    id: id ?? `evt_examples_${++seq}`,
    object: 'event',
    type,
    created,
    api_version: '2026-10-28.endive',
    data: { object },
  })

/** POSTs `body` to `path` signed at `nowMs` (with `secret`, default the endpoint's). */
function deliver(api: Client, path: string, body: string, nowMs: number, secret = WHSEC) {
  const signature = signer.webhooks.generateTestHeaderString({
    payload: body,
    secret,
    timestamp: Math.floor(nowMs / 1000),
  })
  return api('POST', path, {
    headers: { 'stripe-signature': signature, 'content-type': 'application/json' },
    json: JSON.parse(body),
  })
}

describe('voice-api example: the tiers sold through Stripe', () => {
  let fx: VoiceFixture | undefined
  afterEach(async () => {
    await fx?.close()
    fx = undefined
  })

  it('opens Checkout in subscription mode with the tier price', async () => {
    fx = await startVoice(undefined, {
      client: fake.client(),
      webhookSecret: WHSEC,
      prices: PRICES,
    })
    const mk = (await fx.tb.keys.create({ accountId: 'acct_buyer', kind: 'management' })).key
    const checkout = await fx.api('POST', '/v1/billing/checkout', {
      token: mk,
      json: { tier: 'pro', ...URLS },
    })
    expect(checkout.status).toBe(200)
    expect(checkout.body).toEqual({
      url: `https://checkout.stripe.com/c/pay/${checkout.body.sessionId}`,
      sessionId: expect.stringMatching(/^cs_test_/),
    })
    const [sent] = checkoutSessions()
    expect(sent!.form).toMatchObject({
      mode: 'subscription',
      client_reference_id: 'acct_buyer',
      'line_items[0][price]': PRICES.pro,
      'line_items[0][quantity]': '1',
      success_url: URLS.successUrl,
      'metadata[tollbooth_tier]': 'pro',
    })
    expect(checkoutSessions()).toHaveLength(1)
    // Not paid yet; and the demo's hosted pages are not served beside real Stripe.
    expect((await fx.tb.accounts.get('acct_buyer')).tier).toBe('free')
    expect((await fx.api('GET', '/billing/demo/checkout/cs_demo_x')).status).toBe(404)
  })

  it('sets the tier from the signed webhook at /v1/billing/webhook, not from a forged one', async () => {
    fx = await startVoice(undefined, {
      client: fake.client(),
      webhookSecret: WHSEC,
      prices: PRICES,
    })
    const s0 = VOICE_T0 / 1000
    const completed = event(
      'checkout.session.completed',
      {
        id: 'cs_test_paid',
        object: 'checkout.session',
        mode: 'subscription',
        status: 'complete',
        payment_status: 'paid',
        customer: 'cus_buyer',
        subscription: 'sub_buyer',
        client_reference_id: 'acct_buyer',
        metadata: { tollbooth_account_id: 'acct_buyer', tollbooth_tier: 'pro' },
      },
      s0,
    )
    const path = '/v1/billing/webhook'
    const forged = await deliver(fx.api, path, completed, VOICE_T0, 'whsec_someone_else')
    expect(forged.status).toBe(400)
    expect((await fx.tb.accounts.get('acct_buyer')).tier).toBe('free')

    expect((await deliver(fx.api, path, completed, VOICE_T0)).status).toBe(200)
    let a = await fx.tb.accounts.get('acct_buyer')
    expect([a.tier, a.billingCustomerId]).toEqual(['pro', 'cus_buyer'])

    // The paid invoice sets how long the tier lasts: its period end plus 3 days of grace.
    const end = s0 + 30 * 86_400
    const paid = event(
      'invoice.paid',
      {
        id: 'in_buyer_1',
        object: 'invoice',
        customer: 'cus_buyer',
        billing_reason: 'subscription_create',
        parent: {
          type: 'subscription_details',
          subscription_details: {
            subscription: 'sub_buyer',
            metadata: { tollbooth_account_id: 'acct_buyer' },
          },
        },
        lines: {
          object: 'list',
          data: [
            {
              id: 'il_buyer_1',
              period: { start: s0, end },
              pricing: { type: 'price_details', price_details: { price: PRICES.pro } },
            },
          ],
        },
      },
      s0 + 1,
    )
    expect((await deliver(fx.api, path, paid, VOICE_T0)).status).toBe(200)
    a = await fx.tb.accounts.get('acct_buyer')
    expect([a.tier, a.tierExpiresAt]).toEqual(['pro', end * 1000 + 3 * DAY])
    const sub = await fx.api('GET', '/v1/billing/subscription', {
      token: (await fx.tb.keys.create({ accountId: 'acct_buyer', kind: 'management' })).key,
    })
    expect(sub.body).toMatchObject({ tier: 'pro', credits: { limit: 200_000 } })
  })
})

describe('inference-api example: credit top-ups sold through Stripe', () => {
  const T0 = Date.UTC(2026, 0, 20, 14, 30)
  const SESSION_SECRET = 'inference-stripe-session-secret-01234567'
  let served: Served | undefined
  afterEach(async () => {
    await served?.close()
    served = undefined
  })

  async function start(): Promise<{ tb: Tollbooth; api: Client; session: string }> {
    const { app, tb } = await createInferenceApi({
      secret: 'inference-stripe-secret-inference-stripe-0',
      sessionSecret: SESSION_SECRET,
      clock: manualClock(T0),
      stripe: { client: fake.client(), webhookSecret: WHSEC, creditsPriceId: 'price_usd_credit' },
    })
    served = await serveFastify(app)
    const session = await signSession(SESSION_SECRET, 'user_1', { now: T0 })
    return { tb, api: clientOf(served), session }
  }

  const paidTopUp = (session: string, credits: number, id?: string) =>
    event(
      'checkout.session.completed',
      {
        id: session,
        object: 'checkout.session',
        mode: 'payment',
        status: 'complete',
        payment_status: 'paid',
        customer: 'cus_user_1',
        metadata: { tollbooth_account_id: 'user_1', tollbooth_credits: String(credits) },
      },
      T0 / 1000,
      id,
    )

  it('opens Checkout in payment mode for the credits; the stand-in top-up is not served', async () => {
    const { api, session } = await start()
    const credits = 5 * CREDITS_PER_USD
    const checkout = await api('POST', '/api/billing/checkout', {
      token: session,
      json: { credits, ...URLS },
    })
    expect(checkout.status).toBe(200)
    expect(checkout.body.data.url).toBe(
      `https://checkout.stripe.com/c/pay/${checkout.body.data.sessionId}`,
    )
    const [sent] = checkoutSessions()
    expect(sent!.form).toMatchObject({
      mode: 'payment',
      client_reference_id: 'user_1',
      'line_items[0][price]': 'price_usd_credit',
      'line_items[0][quantity]': '5',
      'metadata[tollbooth_credits]': String(credits),
    })
    // Not a whole number of units: 400 naming the field, nothing sent to Stripe.
    const bad = await api('POST', '/api/billing/checkout', {
      token: session,
      json: { credits: CREDITS_PER_USD + 1, ...URLS },
    })
    expect([bad.status, bad.body.success]).toEqual([400, false])
    expect(bad.body.error).toMatch(/credits/)
    expect(checkoutSessions()).toHaveLength(1)
    const free = await api('POST', '/api/billing/topup', { token: session, json: { amount: 5 } })
    expect(free.status).toBe(404)
  })

  it('adds the credits of a signed completed payment once; a replay adds nothing', async () => {
    const { tb, api, session } = await start()
    const usd = async () =>
      (await api('GET', '/api/billing/status', { token: session })).body.data.balance
    const before = (await tb.accounts.get('user_1')).balance
    expect([before, await usd()]).toEqual([0, 0])
    const body = paidTopUp('cs_test_topup_1', 5 * CREDITS_PER_USD)
    const path = '/api/billing/webhook'

    const forged: Res = await deliver(api, path, body, T0, 'whsec_someone_else')
    expect(forged.status).toBe(400)
    expect((await tb.accounts.get('user_1')).balance).toBe(before)

    expect((await deliver(api, path, body, T0)).status).toBe(200)
    const after = (await tb.accounts.get('user_1')).balance
    expect(after - before).toBe(5 * CREDITS_PER_USD)
    // The same event again, and the same payment in another event: no more credits.
    expect((await deliver(api, path, body, T0)).status).toBe(200)
    const again = paidTopUp('cs_test_topup_1', 5 * CREDITS_PER_USD, 'evt_other_delivery')
    expect((await deliver(api, path, again, T0)).status).toBe(200)
    expect((await tb.accounts.get('user_1')).balance).toBe(after)
    expect(await usd()).toBe(5)
  })
})

describe('stripeFromEnv: the STRIPE_* variables of the servers', () => {
  it('is null without them, a setup with all of them, and names the missing ones', () => {
    expect(stripeFromEnv(['credits'], {})).toBeNull()
    const full = {
      STRIPE_SECRET_KEY: 'sk_test_x',
      STRIPE_WEBHOOK_SECRET: 'whsec_x',
      STRIPE_PRICE_CREDITS: 'price_c',
    }
    const setup = stripeFromEnv(['credits'], full)
    expect(setup?.prices).toEqual({ credits: 'price_c' })
    expect(setup?.webhookSecret).toBe('whsec_x')
    expect(typeof setup?.client.checkout.sessions.create).toBe('function')
    expect(() =>
      stripeFromEnv(['starter', 'pro'], { STRIPE_SECRET_KEY: 'sk_test_x', STRIPE_PRICE_PRO: 'p' }),
    ).toThrow(/set STRIPE_WEBHOOK_SECRET, STRIPE_PRICE_STARTER too/)
  })
})
