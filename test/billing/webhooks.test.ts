/**
 * Stripe webhooks signed with the real `stripe.webhooks.generateTestHeaderString`: valid
 * events change the account (tier, expiry, customer, credits), a bad signature is a 400 that
 * changes nothing, a replay changes nothing, out-of-order events never roll an account back,
 * and a failed apply answers 500 and succeeds on Stripe's retry.
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import Stripe from 'stripe'
import { beforeEach, describe, expect, it } from 'vitest'
import { type StripeBilling, stripeBilling } from '../../adapters/stripe/index.js'
import {
  createTollbooth,
  type ManualClock,
  manualClock,
  memoryStorage,
  type Storage,
  type Tollbooth,
} from '../../src/internal.js'
import { streamBody } from '../support/stream-body.js'
import { startFakeStripe } from './stripe-server.js'

const SECRET = 'billing-suite-secret-billing-suite-secret-0002'
const WHSEC = 'whsec_test_webhook_secret_0002'
const T0 = Date.UTC(2026, 10, 24, 12, 0, 0)
const S0 = T0 / 1000
const DAY = 86_400_000
const GRACE = 3 * DAY
const PERIOD_END = S0 + 30 * 86_400
const stripe = new Stripe('sk_test_unused')

let clock: ManualClock
let tb: Tollbooth
let billing: StripeBilling
let faults: { accountsUpdate: number }

function faultyStorage(): Storage {
  const s = memoryStorage()
  const update = s.accounts.update.bind(s.accounts)
  s.accounts.update = async (...args) => {
    if (faults.accountsUpdate > 0) {
      faults.accountsUpdate--
      throw new Error('storage down')
    }
    return update(...args)
  }
  return s
}

beforeEach(() => {
  faults = { accountsUpdate: 0 }
  clock = manualClock(T0)
  tb = createTollbooth({
    secret: SECRET,
    clock,
    storage: faultyStorage(),
    plans: {
      starter: { monthlyCredits: 1_000 },
      pro: { monthlyCredits: 200_000, allowOverage: true },
      scale: { monthlyCredits: 2_000_000 },
    },
    defaultTier: 'starter',
    onError: () => {},
  })
  billing = stripeBilling(tb, {
    stripe,
    webhookSecret: WHSEC,
    tiers: {
      starter: { priceId: 'price_starter' },
      pro: { priceId: 'price_pro', grantCredits: 5_000 },
      scale: { priceId: 'price_scale' },
    },
    onError: () => {},
  })
})

let seq = 0
const event = (type: string, object: Record<string, unknown>, created = S0, id?: string) => ({
  id: id ?? `evt_${++seq}`,
  object: 'event',
  type,
  created,
  api_version: '2026-10-28.endive',
  data: { object },
})

const signed = (body: string, opts: { secret?: string; timestamp?: number } = {}) =>
  stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: opts.secret ?? WHSEC,
    timestamp: opts.timestamp ?? Math.floor(clock.now() / 1000),
  })

async function deliver(e: object) {
  const body = JSON.stringify(e)
  return billing.webhook({ body, headers: { 'Stripe-Signature': signed(body) } })
}

const subscriptionCheckout = (account: string, sub: string, tier = 'pro') => ({
  id: `cs_${sub}`,
  object: 'checkout.session',
  mode: 'subscription',
  status: 'complete',
  payment_status: 'paid',
  customer: 'cus_A',
  subscription: sub,
  client_reference_id: account,
  metadata: { tollbooth_account_id: account, tollbooth_tier: tier },
})

const subscription = (
  account: string,
  id: string,
  o: { status?: string; price?: string; end?: number; cancelAtPeriodEnd?: boolean } = {},
) => ({
  id,
  object: 'subscription',
  customer: 'cus_A',
  status: o.status ?? 'active',
  cancel_at: null,
  cancel_at_period_end: o.cancelAtPeriodEnd ?? false,
  metadata: { tollbooth_account_id: account, tollbooth_tier: 'pro' },
  items: {
    object: 'list',
    data: [
      {
        id: `si_${id}`,
        price: { id: o.price ?? 'price_pro' },
        current_period_start: S0,
        current_period_end: o.end ?? PERIOD_END,
      },
    ],
  },
})

const topUp = (account: string, session: string, credits: number, paid = true) => ({
  id: session,
  object: 'checkout.session',
  mode: 'payment',
  status: 'complete',
  payment_status: paid ? 'paid' : 'unpaid',
  customer: 'cus_A',
  metadata: { tollbooth_account_id: account, tollbooth_credits: String(credits) },
})

const invoice = (
  account: string,
  id: string,
  sub: string,
  end: number,
  reason = 'subscription_cycle',
) => ({
  id,
  object: 'invoice',
  customer: 'cus_A',
  billing_reason: reason,
  parent: {
    type: 'subscription_details',
    subscription_details: { subscription: sub, metadata: { tollbooth_account_id: account } },
  },
  lines: {
    object: 'list',
    data: [
      {
        id: `il_${id}`,
        period: { start: end - 30 * 86_400, end },
        pricing: {
          type: 'price_details',
          price_details: { price: 'price_pro', product: 'prod_1' },
        },
      },
    ],
  },
})

describe('valid events', () => {
  it('a subscription checkout sets the tier and the customer; the subscription sets the expiry', async () => {
    const r = await deliver(
      event('checkout.session.completed', subscriptionCheckout('acct_1', 'sub_1')),
    )
    expect(r.status).toBe(200)
    let a = await tb.accounts.get('acct_1')
    expect(a.tier).toBe('pro')
    expect(a.billingCustomerId).toBe('cus_A')
    expect(a.tierExpiresAt).toBeNull()
    await deliver(event('customer.subscription.created', subscription('acct_1', 'sub_1')))
    a = await tb.accounts.get('acct_1')
    expect(a.tier).toBe('pro')
    expect(a.tierExpiresAt).toBe(PERIOD_END * 1000 + GRACE)
  })

  it('a paid renewal extends the tier and grants its credits; the tier lapses to the default when unpaid', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_1', 'sub_1')))
    const next = PERIOD_END + 30 * 86_400
    await deliver(event('invoice.paid', invoice('acct_1', 'in_1', 'sub_1', next), S0 + 60))
    let a = await tb.accounts.get('acct_1')
    expect(a.tierExpiresAt).toBe(next * 1000 + GRACE)
    expect(a.balance).toBe(5_000)
    clock.set(next * 1000 + GRACE + 1)
    a = await tb.accounts.get('acct_1')
    expect(a.tier).toBe('starter')
  })

  it('cancel at period end keeps the tier until then, and deletion returns to the default tier', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_1', 'sub_1')))
    await deliver(
      event(
        'customer.subscription.updated',
        subscription('acct_1', 'sub_1', { cancelAtPeriodEnd: true }),
        S0 + 10,
      ),
    )
    let a = await tb.accounts.get('acct_1')
    expect(a.tier).toBe('pro')
    expect(a.tierExpiresAt).toBe(PERIOD_END * 1000)
    await deliver(
      event(
        'customer.subscription.deleted',
        subscription('acct_1', 'sub_1', { status: 'canceled' }),
        S0 + 20,
      ),
    )
    a = await tb.accounts.get('acct_1')
    expect(a.tier).toBe('starter')
    expect(a.tierExpiresAt).toBeNull()
  })

  it('a credit top-up adds the credits when paid, and not before', async () => {
    const unpaid = await deliver(
      event('checkout.session.completed', topUp('acct_2', 'cs_t1', 25_000, false)),
    )
    expect(unpaid.status).toBe(200)
    expect((await tb.accounts.get('acct_2')).balance).toBe(0)
    await deliver(
      event('checkout.session.async_payment_succeeded', topUp('acct_2', 'cs_t1', 25_000)),
    )
    const a = await tb.accounts.get('acct_2')
    expect(a.balance).toBe(25_000)
    expect(a.credits.limit).toBe(1_000 + 25_000)
  })

  it('answers 200 and changes nothing for events it does not use or objects it did not create', async () => {
    const r1 = await deliver(event('charge.succeeded', { id: 'ch_1', object: 'charge' }))
    expect(r1.status).toBe(200)
    expect(r1.body['ignored']).toMatch(/not used/)
    const foreign = { ...subscription('x', 'sub_x'), metadata: {} }
    const r2 = await deliver(event('customer.subscription.created', foreign))
    expect(r2.body['ignored']).toMatch(/not a tollbooth subscription/)
  })
})

describe('signatures', () => {
  it('refuses a bad, missing, tampered or stale signature with 400 and changes nothing', async () => {
    const before = await tb.accounts.get('acct_3')
    const e = event('checkout.session.completed', topUp('acct_3', 'cs_s1', 10_000))
    const body = JSON.stringify(e)
    const cases = [
      { body, headers: { 'stripe-signature': signed(body, { secret: 'whsec_wrong_secret' }) } },
      { body, headers: {} },
      { body: body.replace('10000', '99999'), headers: { 'stripe-signature': signed(body) } },
      { body, headers: { 'stripe-signature': signed(body, { timestamp: S0 - 301 }) } },
      { body: 'not json', headers: { 'stripe-signature': signed('not json') } },
    ]
    for (const c of cases) {
      const r = await billing.webhook(c)
      expect(r.status).toBe(400)
      expect(r.applied).toEqual([])
      expect(JSON.stringify(r.body)).not.toContain(WHSEC)
    }
    expect(await tb.accounts.get('acct_3')).toEqual(before)
    // Nothing was remembered either: the genuine event still applies.
    const ok = await billing.webhook({ body, headers: { 'stripe-signature': signed(body) } })
    expect(ok.status).toBe(200)
    expect((await tb.accounts.get('acct_3')).balance).toBe(10_000)
  })

  it('takes a header with two v1 signatures (Stripe signing with the old and the new secret while it is rolled)', async () => {
    const body = JSON.stringify(
      event('checkout.session.completed', topUp('acct_roll', 'cs_roll', 10)),
    )
    const t = Math.floor(clock.now() / 1000)
    const v1 = (secret: string) =>
      signed(body, { secret, timestamp: t })
        .split(',')
        .find((p) => p.startsWith('v1='))!
    const header = `t=${t},${v1('whsec_rolled_out_old_secret')},${v1(WHSEC)}`
    const r = await billing.webhook({ body, headers: { 'stripe-signature': header } })
    expect(r.status).toBe(200)
    expect((await tb.accounts.get('acct_roll')).balance).toBe(10)
  })

  it('verifies on the raw bytes and over real HTTP (handleRequest)', async () => {
    const app = new Hono()
    app.post('/stripe/webhook', (c) => billing.handleRequest(c.req.raw))
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise<void>((r) => server.once('listening', () => r()))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/stripe/webhook`
    try {
      // Multi-byte characters: the signature covers the raw bytes, not a re-encoded string.
      const session = { ...topUp('acct_h', 'cs_h1', 700), custom_text: 'Crédits für café ☕' }
      const body = JSON.stringify(event('checkout.session.completed', session))
      const bad = await fetch(url, {
        method: 'POST',
        body,
        headers: { 'stripe-signature': signed(body, { secret: 'whsec_nope_nope' }) },
      })
      expect(bad.status).toBe(400)
      expect(await bad.json()).toEqual({
        error: 'Invalid Stripe signature',
        code: 'invalid_signature',
      })
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: { 'stripe-signature': signed(body) },
      })
      expect(res.status).toBe(200)
      expect(((await res.json()) as { received: boolean }).received).toBe(true)
      expect((await tb.accounts.get('acct_h')).balance).toBe(700)
    } finally {
      await new Promise((r) => server.close(r))
    }
  })

  it('handleRequest reads at most 1 MiB of a streamed body (413), not the whole of it', async () => {
    const app = new Hono()
    app.post('/stripe/webhook', (c) => billing.handleRequest(c.req.raw))
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise<void>((r) => server.once('listening', () => r()))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/stripe/webhook`
    try {
      const r = await streamBody(url, 64 * 2 ** 20)
      expect([r.status, JSON.parse(r.body)]).toEqual([
        413,
        { error: 'Webhook body too large', code: 'invalid_request' },
      ])
      // Socket buffers hold a few MiB; without the bound all 64 MiB were read first.
      expect(r.sent).toBeLessThan(16 * 2 ** 20)
      const declared = await fetch(url, { method: 'POST', body: new Uint8Array(2 ** 20 + 1) })
      expect(declared.status).toBe(413)
    } finally {
      ;(server as import('node:http').Server).closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })
})

describe('replays', () => {
  it('a replayed event changes nothing: no double grant', async () => {
    const e = event('checkout.session.completed', topUp('acct_4', 'cs_r1', 25_000))
    const first = await deliver(e)
    const second = await deliver(e)
    const third = await deliver(e)
    expect(first.body['duplicate']).toBeUndefined()
    expect(second.body['duplicate']).toBe(true)
    expect(third.body['duplicate']).toBe(true)
    expect((await tb.accounts.get('acct_4')).balance).toBe(25_000)
  })

  it('the same event delivered concurrently is applied once', async () => {
    const e = event('checkout.session.completed', topUp('acct_c', 'cs_c1', 1_000))
    const results = await Promise.all(Array.from({ length: 8 }, () => deliver(e)))
    const applied = results.filter((r) => r.status === 200 && !r.body['duplicate'])
    expect(applied).toHaveLength(1)
    for (const r of results) expect([200, 409]).toContain(r.status)
    expect((await tb.accounts.get('acct_c')).balance).toBe(1_000)
  })

  it('the same payment in another event grants once; a renewal invoice grants once', async () => {
    await deliver(event('checkout.session.completed', topUp('acct_5', 'cs_r2', 3_000)))
    const again = await deliver(
      event('checkout.session.async_payment_succeeded', topUp('acct_5', 'cs_r2', 3_000)),
    )
    expect(again.applied.find((a) => a.change.type === 'credits')?.reason).toBe('already-granted')
    await deliver(event('customer.subscription.created', subscription('acct_5', 'sub_5')))
    const inv = invoice('acct_5', 'in_5', 'sub_5', PERIOD_END + 86_400 * 30)
    await deliver(event('invoice.paid', inv, S0 + 5))
    await deliver(event('invoice.paid', inv, S0 + 6)) // the same invoice, a new event id
    expect((await tb.accounts.get('acct_5')).balance).toBe(3_000 + 5_000)
  })
})

describe('out of order', () => {
  it('an older subscription event arriving late is ignored', async () => {
    const r1 = await deliver(
      event(
        'customer.subscription.updated',
        subscription('acct_6', 'sub_6', { cancelAtPeriodEnd: true }),
        S0 + 20,
      ),
    )
    expect(r1.applied.map((a) => a.applied)).toEqual([true, true])
    const r2 = await deliver(
      event('customer.subscription.created', subscription('acct_6', 'sub_6'), S0 + 10),
    )
    expect(r2.applied.find((a) => a.change.type === 'tier')?.reason).toBe('stale')
    const a = await tb.accounts.get('acct_6')
    expect(a.tierExpiresAt).toBe(PERIOD_END * 1000) // the cancellation's, not the renewal's
  })

  it('a deleted subscription is not revived by an update delivered after it', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_7', 'sub_7'), S0))
    await deliver(
      event(
        'customer.subscription.deleted',
        subscription('acct_7', 'sub_7', { status: 'canceled' }),
        S0 + 30,
      ),
    )
    const late = await deliver(
      event('customer.subscription.updated', subscription('acct_7', 'sub_7'), S0 + 30),
    )
    expect(late.applied.find((a) => a.change.type === 'tier')?.reason).toBe('ended')
    const paid = await deliver(
      event('invoice.paid', invoice('acct_7', 'in_7', 'sub_7', PERIOD_END), S0 + 40),
    )
    expect(paid.applied.find((a) => a.change.type === 'tier')?.reason).toBe('ended')
    expect((await tb.accounts.get('acct_7')).tier).toBe('starter')
  })

  it('two updates of the same second delivered in the wrong order end on the subscription’s current tier', async () => {
    // Stripe's times are whole seconds: pro → scale → starter within S0 + 5, delivered with
    // the starter update first. The tie is settled by the subscription as Stripe has it now.
    const fake = await startFakeStripe()
    try {
      billing = stripeBilling(tb, {
        stripe: fake.client(),
        webhookSecret: WHSEC,
        tiers: {
          starter: { priceId: 'price_starter' },
          pro: { priceId: 'price_pro' },
          scale: { priceId: 'price_scale' },
        },
        onError: () => {},
      })
      const now = subscription('acct_t', 'sub_t', { price: 'price_starter' })
      fake.subscriptions.push(now)
      const retrieved = () => fake.requests.filter((r) => r.path === '/v1/subscriptions/sub_t')
      await deliver(event('customer.subscription.created', subscription('acct_t', 'sub_t'), S0))
      await deliver(event('customer.subscription.updated', now, S0 + 5))
      expect((await tb.accounts.get('acct_t')).tier).toBe('starter')
      expect(retrieved()).toHaveLength(0) // no tie yet: no API call
      // The scale update, made before the starter one in the same second, arrives last.
      const scale = subscription('acct_t', 'sub_t', { price: 'price_scale' })
      const late = await deliver(event('customer.subscription.updated', scale, S0 + 5))
      expect(late.status).toBe(200)
      expect((await tb.accounts.get('acct_t')).tier).toBe('starter')
      expect(retrieved()).toHaveLength(1)
      expect(late.applied.find((a) => a.change.type === 'tier')?.current).toMatchObject({
        tier: 'starter',
      })
      // The same snapshot again (a replay under another event id) agrees: no call.
      await deliver(event('customer.subscription.updated', now, S0 + 5))
      expect(retrieved()).toHaveLength(1)
      // Stripe unreachable on a tie: 500, Stripe retries, nothing changed.
      await fake.stop()
      const down = await deliver(event('customer.subscription.updated', scale, S0 + 5))
      expect(down.status).toBe(500)
      expect((await tb.accounts.get('acct_t')).tier).toBe('starter')
    } finally {
      await fake.close()
    }
  })

  it('the end of a replaced subscription does not cancel the new one', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_8', 'sub_old'), S0))
    await deliver(
      event(
        'customer.subscription.created',
        subscription('acct_8', 'sub_new', { price: 'price_scale' }),
        S0 + 50,
      ),
    )
    const r = await deliver(
      event(
        'customer.subscription.deleted',
        subscription('acct_8', 'sub_old', { status: 'canceled' }),
        S0 + 60,
      ),
    )
    expect(r.applied.find((a) => a.change.type === 'cancel')?.reason).toBe('other-subscription')
    expect((await tb.accounts.get('acct_8')).tier).toBe('scale')
  })
})

describe('failures', () => {
  it('answers 200 and reports an event whose account id tollbooth refuses (a retry cannot help)', async () => {
    const errors: unknown[] = []
    const b = stripeBilling(tb, {
      stripe,
      webhookSecret: WHSEC,
      tiers: { pro: { priceId: 'price_pro' } },
      onError: (err) => errors.push(err),
    })
    const body = JSON.stringify(
      event('checkout.session.completed', topUp('acct {bad}', 'cs_b1', 5)),
    )
    const r = await b.webhook({ body, headers: { 'stripe-signature': signed(body) } })
    expect(r.status).toBe(200)
    expect(r.body['ignored']).toMatch(/accountId/)
    expect(errors).toHaveLength(1)
  })

  it('answers 500 when the change cannot be stored, and applies on the retry', async () => {
    const e = event('customer.subscription.created', subscription('acct_9', 'sub_9'))
    await tb.accounts.get('acct_9')
    faults.accountsUpdate = 1
    const r1 = await deliver(e)
    expect(r1.status).toBe(500)
    expect(r1.body['code']).toBe('webhook_failed')
    const r2 = await deliver(e)
    expect(r2.status).toBe(200)
    expect(r2.body['duplicate']).toBeUndefined()
    expect((await tb.accounts.get('acct_9')).tier).toBe('pro')
  })
})

describe('plan changes and unpaid renewals', () => {
  const line = (
    id: string,
    price: string,
    start: number,
    end: number,
    amount: number,
    proration: boolean,
  ) => ({
    id,
    object: 'line_item',
    amount,
    period: { start, end },
    parent: {
      type: 'subscription_item_details',
      subscription_item_details: { subscription_item: 'si_1', proration },
    },
    pricing: { type: 'price_details', price_details: { price, product: 'prod_1' } },
  })
  const cycleInvoice = (
    account: string,
    id: string,
    sub: string,
    lines: object[],
    created = S0,
  ) => ({
    ...invoice(account, id, sub, PERIOD_END),
    created,
    lines: { object: 'list', data: lines },
  })

  it('a renewal invoice carrying the prorations of an upgrade sets the new tier and grants its credits', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_p1', 'sub_p1'), S0))
    const mid = S0 + 15 * 86_400
    const next = PERIOD_END + 30 * 86_400
    // Upgraded mid-period (prorations left pending for the next invoice).
    await deliver(
      event(
        'customer.subscription.updated',
        subscription('acct_p1', 'sub_p1', { price: 'price_scale' }),
        mid,
      ),
    )
    expect((await tb.accounts.get('acct_p1')).tier).toBe('scale')
    // The renewal invoice: unused time on pro (a credit), remaining time on scale, next period.
    const inv = cycleInvoice(
      'acct_p1',
      'in_p1',
      'sub_p1',
      [
        line('il_1', 'price_pro', mid, PERIOD_END, -1_000, true),
        line('il_2', 'price_scale', mid, PERIOD_END, 5_000, true),
        line('il_3', 'price_scale', PERIOD_END, next, 10_000, false),
      ],
      PERIOD_END,
    )
    const r = await deliver(event('invoice.paid', inv, PERIOD_END + 60))
    expect(r.status).toBe(200)
    const a = await tb.accounts.get('acct_p1')
    expect(a.tier).toBe('scale')
    expect(a.tierExpiresAt).toBe(next * 1000 + GRACE)
    expect(a.balance).toBe(0) // scale grants no credits; pro's 5 000 are not granted
  })

  it('an invoice paid after a later plan change does not roll the tier back', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_p2', 'sub_p2'), S0))
    // The renewal invoice (pro) is created at S0 + 100 and paid an hour later; in between, the
    // customer upgrades to scale in the portal.
    await deliver(
      event(
        'customer.subscription.updated',
        subscription('acct_p2', 'sub_p2', { price: 'price_scale' }),
        S0 + 1_800,
      ),
    )
    const inv = cycleInvoice(
      'acct_p2',
      'in_p2',
      'sub_p2',
      [line('il_4', 'price_pro', S0, PERIOD_END, 10_000, false)],
      S0 + 100,
    )
    const r = await deliver(event('invoice.paid', inv, S0 + 3_600))
    expect(r.status).toBe(200)
    const a = await tb.accounts.get('acct_p2')
    expect(a.tier).toBe('scale')
    expect(a.balance).toBe(5_000) // the paid pro period still grants its credits
  })

  it('a checkout completed after its subscription events leaves their expiry', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_p3', 'sub_p3'), S0))
    await deliver(
      event(
        'invoice.paid',
        invoice('acct_p3', 'in_p3', 'sub_p3', PERIOD_END, 'subscription_create'),
        S0 + 1,
      ),
    )
    const session = { ...subscriptionCheckout('acct_p3', 'sub_p3'), created: S0 - 120 }
    await deliver(event('checkout.session.completed', session, S0 + 2))
    // Stripe may deliver checkout.session.completed first: the subscription still sets the expiry.
    const s2 = { ...subscriptionCheckout('acct_p4', 'sub_p4'), created: S0 - 120 }
    await deliver(event('checkout.session.completed', s2, S0 + 2))
    await deliver(event('customer.subscription.created', subscription('acct_p4', 'sub_p4'), S0))
    for (const id of ['acct_p3', 'acct_p4']) {
      const a = await tb.accounts.get(id)
      expect([id, a.tier, a.tierExpiresAt]).toEqual([id, 'pro', PERIOD_END * 1000 + GRACE])
    }
  })

  it('a renewal that fails keeps the tier for the grace period only, not for the unpaid period', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_p5', 'sub_p5'), S0))
    const next = PERIOD_END + 30 * 86_400
    // The period rolls over and the renewal payment fails: Stripe marks it past_due.
    const pastDue = {
      ...subscription('acct_p5', 'sub_p5', { status: 'past_due', end: next }),
    }
    pastDue.items.data[0]!.current_period_start = PERIOD_END
    const failed = PERIOD_END + 3_600
    await deliver(event('customer.subscription.updated', pastDue, failed))
    let a = await tb.accounts.get('acct_p5')
    expect(a.tier).toBe('pro')
    expect(a.tierExpiresAt).toBe(failed * 1000 + GRACE)
    clock.set(failed * 1000 + GRACE + 1)
    a = await tb.accounts.get('acct_p5')
    expect(a.tier).toBe('starter')
    // Paid late: the subscription is active again for the whole period.
    const active = subscription('acct_p5', 'sub_p5', { end: next })
    active.items.data[0]!.current_period_start = PERIOD_END
    await deliver(event('customer.subscription.updated', active, PERIOD_END + 4 * 86_400))
    a = await tb.accounts.get('acct_p5')
    expect([a.tier, a.tierExpiresAt]).toEqual(['pro', next * 1000 + GRACE])
  })

  it('a plan change whose invoice fails mid-period keeps the tier for the grace period from then', async () => {
    await deliver(event('customer.subscription.created', subscription('acct_p6', 'sub_p6'), S0))
    const failed = S0 + 20 * 86_400
    const pastDue = subscription('acct_p6', 'sub_p6', { status: 'past_due', price: 'price_scale' })
    await deliver(event('customer.subscription.updated', pastDue, failed))
    const a = await tb.accounts.get('acct_p6')
    expect([a.tier, a.tierExpiresAt]).toEqual(['scale', failed * 1000 + GRACE])
  })
})

describe('paused and unpaid subscriptions', () => {
  for (const [stop, back] of [
    ['paused', 'customer.subscription.resumed'],
    ['unpaid', 'customer.subscription.updated'],
  ] as const) {
    it(`${stop === 'paused' ? 'a' : 'an'} ${stop} subscription drops to the default tier and gets its tier back when it is active again`, async () => {
      const acct = `acct_${stop}`
      await deliver(event('customer.subscription.created', subscription(acct, `sub_${stop}`), S0))
      const type =
        stop === 'paused' ? 'customer.subscription.paused' : 'customer.subscription.updated'
      await deliver(event(type, subscription(acct, `sub_${stop}`, { status: stop }), S0 + 10))
      let a = await tb.accounts.get(acct)
      expect(a.tier).toBe('starter')
      const r = await deliver(event(back, subscription(acct, `sub_${stop}`), S0 + 20))
      expect(r.status).toBe(200)
      a = await tb.accounts.get(acct)
      expect([a.tier, a.tierExpiresAt]).toEqual(['pro', PERIOD_END * 1000 + GRACE])
      // Deleted later: the end is final.
      await deliver(
        event(
          'customer.subscription.deleted',
          subscription(acct, `sub_${stop}`, { status: 'canceled' }),
          S0 + 30,
        ),
      )
      const late = await deliver(event(back, subscription(acct, `sub_${stop}`), S0 + 40))
      expect(late.applied.find((x) => x.change.type === 'tier')?.reason).toBe('ended')
      expect((await tb.accounts.get(acct)).tier).toBe('starter')
    })
  }
})

describe('trials', () => {
  it('the $0 invoice of a trial grants no credits; the first paid invoice does', async () => {
    const trialEnd = S0 + 14 * 86_400
    const trialing = subscription('acct_tr', 'sub_tr', { status: 'trialing', end: trialEnd })
    await deliver(event('customer.subscription.created', trialing, S0))
    const trialInvoice = invoice('acct_tr', 'in_tr0', 'sub_tr', trialEnd, 'subscription_create')
    const trialLine = trialInvoice.lines.data[0]!
    Object.assign(trialLine, { amount: 0, description: 'Trial period for Pro' })
    Object.assign(trialInvoice, { amount_paid: 0, total: 0 })
    await deliver(event('invoice.paid', trialInvoice, S0 + 1))
    let a = await tb.accounts.get('acct_tr')
    expect([a.tier, a.tierExpiresAt]).toEqual(['pro', trialEnd * 1000 + GRACE])
    expect(a.balance).toBe(0)
    // The trial ends and the first period is paid.
    const next = trialEnd + 30 * 86_400
    const paid = invoice('acct_tr', 'in_tr1', 'sub_tr', next)
    Object.assign(paid.lines.data[0]!, { amount: 9_900 })
    await deliver(event('invoice.paid', paid, trialEnd + 60))
    a = await tb.accounts.get('acct_tr')
    expect(a.balance).toBe(5_000)
  })
})
