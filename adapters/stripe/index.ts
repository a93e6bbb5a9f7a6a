/**
 * @module tollbooth/stripe
 *
 * `stripeBilling(tb, options)`: the Stripe billing provider, on the user's own `stripe`
 * client. Plans are sold with Stripe Checkout (subscription mode, one Stripe price per tier),
 * prepaid credits with Checkout in payment mode, and managed in the Stripe billing portal.
 * Each account gets one Stripe customer, created on first use and stored as the account's
 * `billingCustomerId`. The webhook endpoint verifies signatures and applies each event once
 * (`webhooks.ts`); overage reaches Stripe's invoices as meter events, once per request
 * (`meter.ts`, through the core's meter out-box), and what a dead process never sent is found
 * and sent by the meter's healing (`billing/meter-heal`), at start and on an interval.
 */

import type Stripe from 'stripe'
import {
  argumentError,
  BILLING_STATE_KEY,
  type BillingProvider,
  type BillingState,
  BillingUnavailableError,
  BodyTooLargeError,
  type CheckoutInput,
  type CheckoutResult,
  ConflictError,
  checkAccountId,
  checkTollboothArg,
  createMeterHealer,
  createMeterOutbox,
  denialAnswer,
  InvalidRequestError,
  isTollboothError,
  type MeterHealResult,
  type MeterOutbox,
  type OverageReconciliation,
  optionError,
  ownValue,
  type PortalInput,
  type PortalResult,
  parseOptions,
  readBodyBounded,
  reconcileOverage,
  reparsedWebhookMessage,
  type Tollbooth,
  WEBHOOK_BODY_MAX_BYTES,
  type WebhookInput,
  type WebhookResult,
  warnOnce,
} from '../../src/internal.js'
import { META } from './events.js'
import { stripeMeterSink } from './meter.js'
import { optionsSchema, type StripeBillingOptions } from './options.js'
import { handleStripeWebhook } from './webhooks.js'

export { changesOf, type EventChanges, META, type StripeEventLike } from './events.js'
export { DUPLICATE_CODE, isRetryable, meterIdentifier, meterValue } from './meter.js'
export type { StripeBillingOptions } from './options.js'

/** The Stripe provider: a {@link BillingProvider} plus the meter and a fetch-style endpoint. */
export interface StripeBilling extends BillingProvider {
  /** The overage out-box; null without `meterEventName`. */
  readonly meter: MeterOutbox | null
  /** The account's Stripe customer id, created (once) if it has none. */
  customerFor(accountId: string): Promise<string>
  /**
   * One healing pass of the meter, as runs at start and every `meter.healIntervalMs`: the
   * accounts with overage not known delivered (a durable journal) are reconciled and what is
   * missing is sent.
   */
  heal(): Promise<MeterHealResult>
  /** Overage recorded against overage delivered, for one account and month (`YYYY-MM`). */
  reconcile(
    accountId: string,
    options?: { month?: string; redeliver?: boolean },
  ): Promise<OverageReconciliation>
  /** The webhook endpoint for any fetch-style framework: `app.post('/stripe', (c) => billing.handleRequest(c.req.raw))`. */
  handleRequest(request: Request): Promise<Response>
  /** Stops listening to usage and sends what the meter holds (once). */
  close(): Promise<void>
}

const httpUrl = (field: string, v: unknown): string => {
  let ok = false
  try {
    ok = typeof v === 'string' && /^https?:$/.test(new URL(v).protocol)
  } catch {}
  if (!ok)
    throw new InvalidRequestError(`Invalid request: ${field}: must be an http(s) URL`, [
      { path: field, message: 'must be an http(s) URL' },
    ])
  return v as string
}

/**
 * Creates the Stripe billing provider for `tb`.
 *
 * @param tb the tollbooth instance whose accounts are billed
 * @param options.stripe the user's client, `new Stripe(process.env.STRIPE_SECRET_KEY)`
 * @param options.webhookSecret the endpoint's signing secret (`STRIPE_WEBHOOK_SECRET`, `whsec_…`)
 * @param options.tiers tier (a key of tollbooth's `plans`) -> `{ priceId, meteredPriceId?, grantCredits? }`
 * @param [options.credits] top-ups: `{ priceId }` or `{ currency, unitAmount }`, with `creditsPerUnit`, `min`, `max`
 * @param [options.meterEventName] the Stripe meter's event name; enables overage metering
 * @param [options.graceMs=3 days] how long a tier outlives its paid period, and a `past_due`
 *   subscription its tier from the event that says so
 * @throws {ConfigError} naming each bad option
 * @example
 * ```ts
 * const billing = stripeBilling(tb, {
 *   stripe: new Stripe(process.env.STRIPE_SECRET_KEY!),
 *   webhookSecret: process.env.STRIPE_WEBHOOK_SECRET!,
 *   tiers: { pro: { priceId: 'price_pro', meteredPriceId: 'price_overage' } },
 *   credits: { priceId: 'price_credit' },
 *   meterEventName: 'api_overage',
 * })
 * app.route('/v1', managementApi(tb, { billing }))
 * ```
 */
export function stripeBilling(tb: Tollbooth, options: StripeBillingOptions): StripeBilling {
  checkTollboothArg('stripeBilling', tb)
  const o = parseOptions('stripeBilling', optionsSchema, options)
  for (const tier of Object.keys(o.tiers)) {
    if (!Object.hasOwn(tb.options.plans, tier))
      throw optionError(
        'stripeBilling',
        `options.tiers.${tier}`,
        `must be a plan of the tollbooth instance (${Object.keys(tb.options.plans).join(', ') || 'none configured'})`,
      )
  }
  // An event is deduplicated for markerTtlMs; a signature older than that must not verify.
  if (o.toleranceSec * 1000 >= o.markerTtlMs)
    throw optionError(
      'stripeBilling',
      'options.toleranceSec',
      `must be shorter than options.markerTtlMs (${o.markerTtlMs} ms), or a replayed event applies again`,
    )
  // Overage a tier's plan serves that no invoice would bill: valid, probably not meant.
  for (const [tier, t] of Object.entries(o.tiers)) {
    if (ownValue(tb.options.plans, tier)?.allowOverage !== true) continue
    if (!o.meterEventName)
      warnOnce(
        'TOLLBOOTH_UNBILLED_OVERAGE',
        `stripeBilling: plan "${tier}" allows overage but options.meterEventName is not set: its overage is recorded and never sent to Stripe`,
      )
    else if (!t.meteredPriceId)
      warnOnce(
        'TOLLBOOTH_UNBILLED_OVERAGE',
        `stripeBilling: plan "${tier}" allows overage but options.tiers.${tier}.meteredPriceId is not set: its meter events reach Stripe, and no price of its subscriptions bills them`,
      )
  }
  const stripe = o.stripe
  const onError =
    o.onError ??
    tb.options.onError ??
    ((err: unknown) =>
      console.error('[tollbooth/stripe]', err instanceof Error ? err.message : err))
  const priceTiers = new Map(Object.entries(o.tiers).map(([t, c]) => [c.priceId, t]))
  const grants = Object.fromEntries(Object.entries(o.tiers).map(([t, c]) => [t, c.grantCredits]))
  const meter = o.meterEventName
    ? createMeterOutbox(
        tb,
        stripeMeterSink(stripe, o.meterEventName, o.meter.timeoutMs),
        o.meter,
        onError,
      )
    : null
  const healer = meter
    ? createMeterHealer(tb, meter, { intervalMs: o.meter.healIntervalMs ?? 600_000 }, onError)
    : null
  const unsubscribe = (() => {
    if (!meter || !healer) return () => {}
    // Noted before the usage is written (a crash right after the write loses nothing), and
    // after, should the note before have failed.
    const ahead = tb.onUsageWriting((events) => healer.noteAhead(events))
    const after = tb.onUsageFlushed((events) => {
      healer.note(events)
      meter.enqueue(events)
    })
    return () => {
      ahead()
      after()
    }
  })()
  const creating = new Map<string, Promise<string>>()
  const subscribing = new Map<string, Promise<unknown>>()

  /** Runs a Stripe call; its failures become a 502 that keeps Stripe's message as the cause. */
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn()
    } catch (err) {
      if (isTollboothError(err)) throw err
      const e = err as { type?: string; statusCode?: number }
      throw new BillingUnavailableError(
        `Stripe could not ${what} (${e.type ?? 'error'}${e.statusCode ? ` ${e.statusCode}` : ''})`,
        { cause: err },
      )
    }
  }

  const customerFor = async (accountId: string): Promise<string> => {
    checkAccountId(accountId)
    const existing = (await tb.accounts.get(accountId)).billingCustomerId
    if (existing) return existing
    let p = creating.get(accountId)
    if (!p) {
      p = (async () => {
        const c = await call('create the customer', () =>
          stripe.customers.create(
            { metadata: { [META.account]: accountId } },
            // Two instances creating at once get the same customer back.
            { idempotencyKey: `tollbooth-customer-${accountId}` },
          ),
        )
        await tb.accounts.patch(accountId, { billingCustomerId: c.id })
        return c.id
      })().finally(() => creating.delete(accountId))
      creating.set(accountId, p)
    }
    return p
  }

  /**
   * A subscription Stripe bills; a paused or unpaid one is known from the account's billing
   * state (suspended, not ended). An incomplete one (its first payment not through) does not
   * block a new checkout for the 23 hours until it expires.
   */
  const LIVE = new Set(['active', 'trialing', 'past_due'])
  const conflict = () =>
    new ConflictError(
      'This account already has a subscription: change plans in the billing portal (POST /billing/portal)',
    )

  /**
   * A second Checkout subscription would bill the account twice (Checkout cannot change an
   * existing subscription): a live one is changed in the billing portal instead. Known from
   * the account's billing state, and from Stripe itself: a checkout paid a moment ago whose
   * webhook has not come yet, or one whose webhook was lost.
   */
  const refuseSecondSubscription = async (accountId: string) => {
    const a = await tb.accounts.get(accountId)
    const state = a.metadata[BILLING_STATE_KEY] as BillingState | undefined
    const now = tb.options.clock?.now() ?? Date.now()
    if (state && !state.ended && (a.tierExpiresAt === null || a.tierExpiresAt > now))
      throw conflict()
  }

  /**
   * Asks Stripe: a live subscription of the customer that is tollbooth's (its account in the
   * metadata, or a tier's price) refuses the checkout; the customer's open subscription
   * checkouts are expired, so two tabs cannot both be paid (the newest checkout is the one).
   */
  const oneSubscriptionAtStripe = async (accountId: string, customer: string) => {
    const subs = await call('list the subscriptions', () =>
      stripe.subscriptions.list({ customer, status: 'all', limit: 100 }),
    )
    const ours = (s: Stripe.Subscription) =>
      s.metadata?.[META.account] === accountId ||
      s.items?.data?.some((i) => priceTiers.has(i.price?.id ?? ''))
    if (subs.data.some((s) => LIVE.has(s.status) && ours(s))) throw conflict()
    const open = await call('list the open checkouts', () =>
      stripe.checkout.sessions.list({ customer, status: 'open', limit: 100 }),
    )
    for (const s of open.data) {
      if (s.mode !== 'subscription') continue
      await stripe.checkout.sessions.expire(s.id).catch((err: { statusCode?: number }) => {
        // No longer open: paid in the meantime (the subscription is on its way) or expired.
        if (err?.statusCode === 400) throw conflict()
        return call('expire an open checkout', () => Promise.reject(err))
      })
    }
  }

  const checkout = async (input: CheckoutInput): Promise<CheckoutResult> => {
    const accountId = checkAccountId(input?.accountId)
    const success_url = httpUrl('successUrl', input.successUrl)
    const cancel_url = httpUrl('cancelUrl', input.cancelUrl)
    const hasTier = input.tier !== undefined
    if (hasTier === (input.credits !== undefined))
      throw new InvalidRequestError('Invalid request: tier: give either tier or credits', [
        { path: 'tier', message: 'give either tier (a subscription) or credits (a top-up)' },
      ])
    const metadata: Record<string, string> = { [META.account]: accountId }
    let params: Stripe.Checkout.SessionCreateParams
    if (hasTier) {
      const tier = input.tier as string
      const t = typeof tier === 'string' ? ownValue(o.tiers, tier) : undefined
      if (!t)
        throw new InvalidRequestError(`Invalid request: tier: unknown tier "${String(tier)}"`, [
          { path: 'tier', message: `must be one of ${Object.keys(o.tiers).join(', ')}` },
        ])
      metadata[META.tier] = tier
      params = {
        mode: 'subscription',
        line_items: [
          { price: t.priceId, quantity: 1 },
          ...(t.meteredPriceId ? [{ price: t.meteredPriceId }] : []),
        ],
        subscription_data: { metadata },
      }
    } else {
      const c = o.credits
      if (!c)
        throw new InvalidRequestError('Invalid request: credits: credit top-ups are not offered', [
          { path: 'credits', message: 'not offered (stripeBilling has no credits option)' },
        ])
      const n = input.credits as number
      if (!Number.isSafeInteger(n) || n < c.min || n > c.max || n % c.creditsPerUnit !== 0) {
        const message = `must be an integer from ${c.min} to ${c.max}, a multiple of ${c.creditsPerUnit}`
        throw new InvalidRequestError(`Invalid request: credits: ${message}`, [
          { path: 'credits', message },
        ])
      }
      metadata[META.credits] = String(n)
      const quantity = n / c.creditsPerUnit
      params = {
        mode: 'payment',
        line_items: [
          'priceId' in c
            ? { price: c.priceId, quantity }
            : {
                price_data: {
                  currency: c.currency,
                  unit_amount: c.unitAmount,
                  product_data: { name: c.productName },
                },
                quantity,
              },
        ],
        payment_intent_data: { metadata },
      }
    }
    const open = async (): Promise<CheckoutResult> => {
      if (hasTier) await refuseSecondSubscription(accountId)
      const customer = await customerFor(accountId)
      if (hasTier) await oneSubscriptionAtStripe(accountId, customer)
      const session = await call('create the checkout session', () =>
        stripe.checkout.sessions.create({
          ...params,
          customer,
          client_reference_id: accountId,
          success_url,
          cancel_url,
          metadata,
          ...(o.allowPromotionCodes ? { allow_promotion_codes: true } : {}),
        }),
      )
      if (!session.url) throw new BillingUnavailableError('Stripe returned a session without a URL')
      return { sessionId: session.id, url: session.url }
    }
    if (!hasTier) return open()
    // One subscription checkout of an account at a time in this process (a double click):
    // the second finds the first open and expires it, instead of both finding none.
    const run = (subscribing.get(accountId) ?? Promise.resolve()).then(open, open)
    const tail = run.catch(() => {})
    subscribing.set(accountId, tail)
    void tail.then(() => {
      if (subscribing.get(accountId) === tail) subscribing.delete(accountId)
    })
    return run
  }

  const portal = async (input: PortalInput): Promise<PortalResult> => {
    const accountId = checkAccountId(input?.accountId)
    const returnUrl =
      input.returnUrl === undefined ? o.portalReturnUrl : httpUrl('returnUrl', input.returnUrl)
    const customer = await customerFor(accountId)
    const s = await call('create the portal session', () =>
      stripe.billingPortal.sessions.create({
        customer,
        ...(returnUrl ? { return_url: returnUrl } : {}),
      }),
    )
    return { url: s.url }
  }

  const webhook = (input: WebhookInput): Promise<WebhookResult> =>
    handleStripeWebhook(
      tb,
      stripe,
      {
        webhookSecret: o.webhookSecret,
        toleranceSec: o.toleranceSec,
        markerTtlMs: o.markerTtlMs,
        priceTiers,
        grants,
        graceMs: o.graceMs,
        onError,
      },
      input,
    )

  return {
    name: 'stripe',
    tiers: Object.keys(o.tiers),
    meter,
    customerFor,
    checkout,
    portal,
    webhook,
    async heal() {
      if (!healer)
        throw optionError('stripeBilling', 'options.meterEventName', 'is required to heal overage')
      return healer.heal()
    },
    async reconcile(accountId, opts = {}) {
      if (!meter)
        throw optionError(
          'stripeBilling',
          'options.meterEventName',
          'is required to reconcile overage',
        )
      return reconcileOverage(tb, meter, accountId, opts)
    },
    async handleRequest(request) {
      const given = request as Partial<Request> | null | undefined
      if (typeof given?.arrayBuffer !== 'function' || typeof given.headers?.get !== 'function')
        throw argumentError(
          'billing.handleRequest',
          'request',
          'must be a fetch Request (e.g. c.req.raw)',
          request,
        )
      const reparsed = reparsedWebhookMessage(request)
      if (reparsed) {
        onError(new Error(reparsed))
        return Response.json({ error: reparsed, code: 'webhook_failed' }, { status: 500 })
      }
      let body: Uint8Array
      try {
        body = await readBodyBounded(request, WEBHOOK_BODY_MAX_BYTES)
      } catch (err) {
        if (!(err instanceof BodyTooLargeError)) throw err
        const d = denialAnswer('body_too_large', 'Webhook body too large')
        return Response.json(d.body, { status: d.status, headers: d.headers })
      }
      const r = await webhook({ body, headers: request.headers })
      return Response.json(r.body, { status: r.status })
    },
    async close() {
      unsubscribe()
      await healer?.close()
      if (meter) await meter.close()
    },
  }
}
