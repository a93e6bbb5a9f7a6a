/**
 * @module tollbooth/management/billing
 *
 * The billing routes: the subscription, answered from the account (`tb.accounts.get`), and
 * checkout and portal sessions, which need a {@link BillingProvider} (Stripe's lives in
 * `tollbooth/stripe`). Without one, checkout and portal answer 501 `not_implemented` with a
 * message saying what to configure.
 */

import type { Hono, MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import {
  type BillingProvider,
  type CheckoutInput,
  InvalidRequestError,
  NotImplementedError,
  type PortalInput,
  reparsedWebhookMessage,
  type Tollbooth,
  WEBHOOK_BODY_MAX_BYTES,
} from '../../src/internal.js'
import type { Guard } from './auth.js'
import { json, parse, queryOf, readJson, refusal } from './http.js'
import { checkoutBody, noQuery, portalBody } from './schemas.js'
import { subscriptionView } from './views.js'

export type { BillingProvider, CheckoutInput, PortalInput }

const notConfigured = () =>
  new NotImplementedError(
    'Billing is not configured: pass a billing provider to managementApi(tb, { billing })',
  )

/**
 * The tiers a checkout may sell: the provider's own list, else every plan but the default
 * tier (which an account falls back to and never buys); null, the provider decides, when
 * neither the provider nor the instance names any.
 */
function purchasable(tb: Tollbooth, billing: BillingProvider): ReadonlyArray<string> | null {
  const plans = Object.keys(tb.options.plans)
  if (billing.tiers)
    return plans.length > 0 ? billing.tiers.filter((t) => plans.includes(t)) : billing.tiers
  if (plans.length === 0) return null
  return plans.filter((t) => t !== tb.options.defaultTier)
}

/**
 * Registers `/billing/*` on `app`. `POST /billing/webhook` takes no credential: the provider's
 * signature over the raw body is checked by `billing.webhook()`.
 */
export function billingRoutes(
  app: Hono,
  tb: Tollbooth,
  guard: Guard,
  billing: BillingProvider | undefined,
  report: (err: unknown) => void,
): void {
  app.get(
    '/billing/subscription',
    guard(async (c, p) => {
      parse(noQuery, queryOf(c), 'query')
      return json(subscriptionView(await tb.accounts.get(p.accountId)))
    }),
  )

  app.post(
    '/billing/checkout',
    guard(async (c, p) => {
      if (!billing) throw notConfigured()
      parse(noQuery, queryOf(c), 'query')
      const body = parse(checkoutBody, await readJson(c), 'body')
      if (body.tier !== undefined) {
        const tiers = purchasable(tb, billing)
        if (tiers && !tiers.includes(body.tier)) {
          const message =
            tiers.length > 0 ? `must be one of ${tiers.join(', ')}` : 'no tier is sold here'
          throw new InvalidRequestError(`Invalid request body: tier: ${message}`, [
            { path: 'tier', message },
          ])
        }
      }
      const base = {
        accountId: p.accountId,
        successUrl: body.successUrl,
        cancelUrl: body.cancelUrl,
      }
      const s = await billing.checkout(
        body.tier !== undefined
          ? { ...base, tier: body.tier }
          : { ...base, credits: body.credits! },
      )
      return json({ url: s.url, sessionId: s.sessionId })
    }),
  )

  app.post(
    '/billing/portal',
    guard(async (c, p) => {
      if (!billing) throw notConfigured()
      parse(noQuery, queryOf(c), 'query')
      const body = parse(portalBody, await readJson(c), 'body')
      const s = await billing.portal({
        accountId: p.accountId,
        ...(body.returnUrl ? { returnUrl: body.returnUrl } : {}),
      })
      return json({ url: s.url })
    }),
  )

  // No credential guards this route: the body is read up to the bound and no further (a
  // declared Content-Length over it is refused before any byte is read).
  const webhookBody = bodyLimit({
    maxSize: WEBHOOK_BODY_MAX_BYTES,
    onError: () => refusal('body_too_large', 'Webhook body too large'),
  })
  // Before the bound, which may wrap the request in a new one.
  const rawBytes: MiddlewareHandler = async (c, next) => {
    const reparsed = billing ? reparsedWebhookMessage(c.req.raw) : undefined
    if (!reparsed) return next()
    report(new Error(reparsed))
    return json({ error: reparsed, code: 'webhook_failed' }, 500)
  }
  app.post('/billing/webhook', rawBytes, webhookBody, async (c) => {
    if (!billing) throw notConfigured()
    const raw = new Uint8Array(await c.req.arrayBuffer())
    const r = await billing.webhook({ body: raw, headers: c.req.raw.headers })
    return c.json(r.body, r.status as 200)
  })
}
