/**
 * Checkout and portal through the real `stripe` client against a stand-in Stripe server on
 * 127.0.0.1: the exact parameters sent (mode, prices, customer, URLs, metadata with the
 * account id), one customer per account, bad input refused before any request, Stripe
 * failures as 502, and the provider mounted in the management API.
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  type BillingProvider as ManagementBillingProvider,
  managementApi,
} from '../../adapters/management/index.js'
import { type StripeBilling, stripeBilling } from '../../adapters/stripe/index.js'
import {
  applyBillingChanges,
  type BillingProvider,
  createTollbooth,
  isTollboothError,
  manualClock,
  type Tollbooth,
} from '../../src/internal.js'
import { type FakeStripe, startFakeStripe } from './stripe-server.js'

const SECRET = 'billing-suite-secret-billing-suite-secret-0001'
const T0 = Date.UTC(2026, 10, 24, 12, 0, 0)
const PLANS = {
  starter: { display: 'Starter', monthlyCredits: 10_000 },
  pro: {
    display: 'Pro ($99/mo)',
    monthlyCredits: 200_000,
    overageRate: 0.0008,
    allowOverage: true,
    carryoverMonths: 1,
  },
  scale: { display: 'Scale', monthlyCredits: 2_000_000 },
}
const TIERS = {
  starter: { priceId: 'price_starter' },
  pro: { priceId: 'price_pro', meteredPriceId: 'price_pro_overage' },
  scale: { priceId: 'price_scale' },
}
const URLS = {
  successUrl: 'https://app.test/billing/success',
  cancelUrl: 'https://app.test/billing/cancel',
}

let fake: FakeStripe
let tb: Tollbooth
let billing: StripeBilling

beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(() => fake.close())
beforeEach(() => {
  fake.requests.length = 0
  fake.sessions.length = 0
  fake.subscriptions.length = 0
  tb = createTollbooth({
    secret: SECRET,
    clock: manualClock(T0),
    plans: PLANS,
    defaultTier: 'starter',
  })
  billing = stripeBilling(tb, {
    stripe: fake.client(),
    webhookSecret: 'whsec_test_secret_0001',
    tiers: TIERS,
    credits: { priceId: 'price_credits_1k', creditsPerUnit: 1000, min: 1000, max: 1_000_000 },
  })
})

const posts = (path: string) => fake.requests.filter((r) => r.method === 'POST' && r.path === path)

describe('checkout', () => {
  it('opens a subscription checkout with the tier price, the customer, the URLs and the account id', async () => {
    const s = await billing.checkout({ accountId: 'acct_1', tier: 'pro', ...URLS })
    expect(s.sessionId).toMatch(/^cs_test_/)
    expect(s.url).toBe(`https://checkout.stripe.com/c/pay/${s.sessionId}`)

    const [customer] = posts('/v1/customers')
    expect(customer!.form).toEqual({ 'metadata[tollbooth_account_id]': 'acct_1' })
    expect(customer!.headers['idempotency-key']).toBe('tollbooth-customer-acct_1')
    expect(customer!.headers['authorization']).toBe('Bearer sk_test_fake_key_for_the_stand_in')
    const customerId = (await tb.accounts.get('acct_1')).billingCustomerId
    expect(customerId).toMatch(/^cus_/)

    const [session] = posts('/v1/checkout/sessions')
    expect(session!.form).toEqual({
      mode: 'subscription',
      customer: customerId,
      client_reference_id: 'acct_1',
      success_url: URLS.successUrl,
      cancel_url: URLS.cancelUrl,
      'line_items[0][price]': 'price_pro',
      'line_items[0][quantity]': '1',
      'line_items[1][price]': 'price_pro_overage',
      'metadata[tollbooth_account_id]': 'acct_1',
      'metadata[tollbooth_tier]': 'pro',
      'subscription_data[metadata][tollbooth_account_id]': 'acct_1',
      'subscription_data[metadata][tollbooth_tier]': 'pro',
    })
  })

  it('creates the customer once per account and reuses it', async () => {
    await billing.checkout({ accountId: 'acct_1', tier: 'starter', ...URLS })
    await billing.checkout({ accountId: 'acct_1', tier: 'scale', ...URLS })
    await billing.portal({ accountId: 'acct_1' })
    await Promise.all([
      billing.checkout({ accountId: 'acct_2', tier: 'pro', ...URLS }),
      billing.checkout({ accountId: 'acct_2', tier: 'pro', ...URLS }),
    ])
    expect(posts('/v1/customers').map((r) => r.form['metadata[tollbooth_account_id]'])).toEqual([
      'acct_1',
      'acct_2',
    ])
    const sessions = posts('/v1/checkout/sessions')
    expect(sessions).toHaveLength(4)
    expect(sessions[0]!.form['customer']).toBe(sessions[1]!.form['customer'])
    expect(sessions[2]!.form['customer']).not.toBe(sessions[0]!.form['customer'])
  })

  it('opens a payment checkout for a credit top-up', async () => {
    const s = await billing.checkout({ accountId: 'acct_9', credits: 25_000, ...URLS })
    expect(s.sessionId).toMatch(/^cs_test_/)
    const [session] = posts('/v1/checkout/sessions')
    expect(session!.form).toEqual({
      mode: 'payment',
      customer: (await tb.accounts.get('acct_9')).billingCustomerId,
      client_reference_id: 'acct_9',
      success_url: URLS.successUrl,
      cancel_url: URLS.cancelUrl,
      'line_items[0][price]': 'price_credits_1k',
      'line_items[0][quantity]': '25',
      'metadata[tollbooth_account_id]': 'acct_9',
      'metadata[tollbooth_credits]': '25000',
      'payment_intent_data[metadata][tollbooth_account_id]': 'acct_9',
      'payment_intent_data[metadata][tollbooth_credits]': '25000',
    })
  })

  it('prices credits inline when given a currency and unit amount', async () => {
    const b = stripeBilling(tb, {
      stripe: fake.client(),
      webhookSecret: 'whsec_test_secret_0001',
      tiers: TIERS,
      credits: { currency: 'usd', unitAmount: 80, creditsPerUnit: 100 },
    })
    await b.checkout({ accountId: 'acct_3', credits: 500, ...URLS })
    const [session] = posts('/v1/checkout/sessions')
    expect(session!.form).toMatchObject({
      mode: 'payment',
      'line_items[0][price_data][currency]': 'usd',
      'line_items[0][price_data][unit_amount]': '80',
      'line_items[0][price_data][product_data][name]': 'Credits',
      'line_items[0][quantity]': '5',
    })
  })

  it.each([
    [{ accountId: 'acct_1', tier: 'enterprise', ...URLS }, 'tier'],
    [{ accountId: 'acct_1', ...URLS }, 'tier'],
    [{ accountId: 'acct_1', tier: 'pro', credits: 1000, ...URLS }, 'tier'],
    [{ accountId: 'acct_1', credits: 1500, ...URLS }, 'credits'],
    [{ accountId: 'acct_1', credits: 0, ...URLS }, 'credits'],
    [
      { accountId: 'acct_1', tier: 'pro', ...URLS, successUrl: 'javascript:alert(1)' },
      'successUrl',
    ],
    [{ accountId: 'acct_1', tier: 'pro', ...URLS, cancelUrl: 'not a url' }, 'cancelUrl'],
    [{ accountId: 'bad id{}', tier: 'pro', ...URLS }, 'accountId'],
  ])('refuses bad input %# with a 400 naming %s, sending nothing', async (input, field) => {
    const err = await billing.checkout(input as never).catch((e) => e)
    expect(isTollboothError(err)).toBe(true)
    expect(err.status).toBe(400)
    expect(err.issues[0].path).toBe(field)
    expect(fake.requests).toHaveLength(0)
  })

  it('sends a subscribed account to the portal (409) instead of opening a second subscription', async () => {
    await applyBillingChanges(tb, [
      {
        type: 'tier',
        accountId: 'acct_s',
        subscriptionId: 'sub_1',
        at: T0,
        tier: 'pro',
        expiresAt: T0 + 1_000,
      },
    ])
    const err = await billing
      .checkout({ accountId: 'acct_s', tier: 'scale', ...URLS })
      .catch((e) => e)
    expect(err.status).toBe(409)
    expect(err.message).toMatch(/billing portal/)
    expect(posts('/v1/checkout/sessions')).toHaveLength(0)
    // A top-up is still fine, and so is a new subscription once the old one ended.
    await billing.checkout({ accountId: 'acct_s', credits: 1000, ...URLS })
    await applyBillingChanges(tb, [
      { type: 'cancel', accountId: 'acct_s', subscriptionId: 'sub_1', at: T0 + 1 },
    ])
    await billing.checkout({ accountId: 'acct_s', tier: 'scale', ...URLS })
    expect(posts('/v1/checkout/sessions')).toHaveLength(2)
  })

  it('one subscription per account: a new checkout closes the open one, and a paid one not yet told by its webhook refuses (409)', async () => {
    // Two tabs: the first checkout is left open, the second opened.
    const first = await billing.checkout({ accountId: 'acct_t', tier: 'pro', ...URLS })
    const second = await billing.checkout({ accountId: 'acct_t', tier: 'scale', ...URLS })
    const status = (id: string) => fake.sessions.find((x) => x.id === id)?.status
    expect([status(first.sessionId), status(second.sessionId)]).toEqual(['expired', 'open'])
    // A top-up checkout of the account is left alone.
    const topUp = await billing.checkout({ accountId: 'acct_t', credits: 1000, ...URLS })
    await billing.checkout({ accountId: 'acct_t', tier: 'pro', ...URLS })
    expect(status(topUp.sessionId)).toBe('open')
    // A double click: two at once leave one open.
    const both = await Promise.all([
      billing.checkout({ accountId: 'acct_t', tier: 'pro', ...URLS }),
      billing.checkout({ accountId: 'acct_t', tier: 'pro', ...URLS }),
    ])
    expect(both.map((x) => status(x.sessionId)).sort()).toEqual(['expired', 'open'])
    // Paid in a tab: Stripe has the subscription, its webhook has not come yet.
    const customer = (await tb.accounts.get('acct_t')).billingCustomerId!
    fake.subscriptions.push({
      id: 'sub_t',
      object: 'subscription',
      customer,
      status: 'active',
      metadata: { tollbooth_account_id: 'acct_t', tollbooth_tier: 'pro' },
      items: { object: 'list', data: [{ id: 'si_t', price: { id: 'price_pro' } }] },
    })
    const sessions = posts('/v1/checkout/sessions').length
    const err = await billing
      .checkout({ accountId: 'acct_t', tier: 'scale', ...URLS })
      .catch((e) => e)
    expect(err.status).toBe(409)
    expect(err.message).toMatch(/billing portal/)
    expect(posts('/v1/checkout/sessions')).toHaveLength(sessions)
    // Ended at Stripe: a new subscription may be bought.
    fake.subscriptions[0]!.status = 'canceled'
    await billing.checkout({ accountId: 'acct_t', tier: 'scale', ...URLS })
    expect(posts('/v1/checkout/sessions')).toHaveLength(sessions + 1)
  })

  it('answers 502 billing_unavailable when Stripe fails, and stores no customer', async () => {
    fake.failNext('/v1/customers', 1)
    const err = await billing
      .checkout({ accountId: 'acct_5', tier: 'pro', ...URLS })
      .catch((e) => e)
    expect(err.code).toBe('billing_unavailable')
    expect(err.status).toBe(502)
    expect(err.message).not.toContain('sk_test')
    expect((await tb.accounts.get('acct_5')).billingCustomerId).toBeNull()
    // Stripe back: the same call works.
    await billing.checkout({ accountId: 'acct_5', tier: 'pro', ...URLS })
    expect((await tb.accounts.get('acct_5')).billingCustomerId).toMatch(/^cus_/)
  })
})

describe('portal', () => {
  it('opens a billing portal session for the account customer with the return URL', async () => {
    await billing.checkout({ accountId: 'acct_1', tier: 'pro', ...URLS })
    const customerId = (await tb.accounts.get('acct_1')).billingCustomerId
    const p = await billing.portal({ accountId: 'acct_1', returnUrl: 'https://app.test/account' })
    expect(p.url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\/bps_/)
    expect(posts('/v1/billing_portal/sessions').map((r) => r.form)).toEqual([
      { customer: customerId, return_url: 'https://app.test/account' },
    ])
  })

  it('uses portalReturnUrl by default and refuses a bad returnUrl', async () => {
    const b = stripeBilling(tb, {
      stripe: fake.client(),
      webhookSecret: 'whsec_test_secret_0001',
      tiers: TIERS,
      portalReturnUrl: 'https://app.test/home',
    })
    await b.portal({ accountId: 'acct_4' })
    expect(posts('/v1/billing_portal/sessions')[0]!.form['return_url']).toBe(
      'https://app.test/home',
    )
    const err = await b.portal({ accountId: 'acct_4', returnUrl: 'ftp://x' }).catch((e) => e)
    expect(err.issues[0].path).toBe('returnUrl')
  })
})

describe('names of Object.prototype members', () => {
  it('refuses a checkout for tier "constructor" (and the like) before any Stripe request', async () => {
    // Issue 20, item 14: `tiers['constructor']` is `Object`, which passed for a tier.
    for (const tier of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const err = await billing.checkout({ accountId: 'acct_5', tier, ...URLS }).catch((e) => e)
      expect(isTollboothError(err) && err.code, tier).toBe('invalid_request')
      expect(err.issues[0].path).toBe('tier')
    }
    expect(fake.requests.filter((r) => r.path === '/v1/checkout/sessions')).toEqual([])
  })
})

describe('configuration', () => {
  it.each([
    [{ tiers: { gold: { priceId: 'price_gold' } } }, 'tiers.gold'],
    [{ tiers: { pro: {} } }, 'tiers.pro.priceId'],
    [{ webhookSecret: '' }, 'webhookSecret'],
    [{ stripe: {} }, 'stripe'],
    [{ credits: { currency: 'USD', unitAmount: 5 } }, 'credits'],
    [{ surprise: true }, 'surprise'],
    // 0 turns Stripe's timestamp check off: an event captured once could be replayed once its
    // processed marker expired; so could one younger than the tolerance past markerTtlMs.
    [{ toleranceSec: 0 }, 'toleranceSec'],
    [{ toleranceSec: 3_600, markerTtlMs: 3_600_000 }, 'toleranceSec'],
  ])('throws a ConfigError for %j naming %s', (patch, name) => {
    const make = () =>
      stripeBilling(tb, {
        stripe: fake.client(),
        webhookSecret: 'whsec_test_secret_0001',
        tiers: TIERS,
        ...(patch as object),
      })
    expect(make).toThrow(name)
    try {
      make()
    } catch (err) {
      expect((err as { code: string }).code).toBe('config_invalid')
    }
  })

  it('satisfies the core and management BillingProvider interfaces', () => {
    const core: BillingProvider = billing
    const management: ManagementBillingProvider = billing
    expect(core.name).toBe('stripe')
    expect(typeof management.checkout).toBe('function')
  })
})

describe('through the management API', () => {
  it('sells only purchasable tiers: the default tier and tiers without a price answer 400', async () => {
    // A provider that names no tiers: every plan but the default tier is for sale.
    const opened: string[] = []
    const plain: ManagementBillingProvider = {
      name: 'plain',
      async checkout(input) {
        opened.push(input.tier ?? 'credits')
        return { sessionId: 'cs_1', url: 'https://pay.test/cs_1' }
      },
      async portal() {
        return { url: 'https://pay.test/portal' }
      },
      async webhook() {
        return { status: 200, body: {}, applied: [] }
      },
    }
    for (const [provider, refused, sold] of [
      [plain, 'starter', 'must be one of pro, scale'],
      [
        stripeBilling(tb, {
          stripe: fake.client(),
          webhookSecret: 'whsec_test_secret_0001',
          tiers: { pro: TIERS.pro },
        }),
        'scale',
        'must be one of pro',
      ],
    ] as const) {
      const app = managementApi(tb, { billing: provider })
      const { key } = await tb.keys.create({ accountId: 'acct_t', kind: 'management' })
      const res = await app.request('/billing/checkout', {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tier: refused, ...URLS }),
      })
      expect(res.status).toBe(400)
      expect(await res.json()).toEqual({
        error: `Invalid request body: tier: ${sold}`,
        code: 'invalid_request',
        issues: [{ path: 'tier', message: sold }],
      })
    }
    expect(opened).toEqual([])
    expect(posts('/v1/checkout/sessions')).toEqual([])
  })

  it('POST /billing/checkout and /billing/portal answer from Stripe for the key account', async () => {
    const app = new Hono()
    app.route('/v1', managementApi(tb, { billing }))
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise<void>((r) => server.once('listening', () => r()))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const { key } = await tb.keys.create({ accountId: 'acct_m', kind: 'management' })
      const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
      const res = await fetch(`${url}/v1/billing/checkout`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ tier: 'pro', ...URLS }),
      })
      expect(res.status).toBe(200)
      const body = (await res.json()) as { url: string; sessionId: string }
      expect(body.url).toBe(`https://checkout.stripe.com/c/pay/${body.sessionId}`)
      const [session] = posts('/v1/checkout/sessions')
      expect(session!.form['metadata[tollbooth_account_id]']).toBe('acct_m')
      expect(session!.form['line_items[0][price]']).toBe('price_pro')

      const portal = await fetch(`${url}/v1/billing/portal`, {
        method: 'POST',
        headers,
        body: '{}',
      })
      expect(portal.status).toBe(200)
      expect(((await portal.json()) as { url: string }).url).toMatch(/^https:\/\/billing\.stripe/)
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})
