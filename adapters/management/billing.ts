/**
 * @module tollbooth/management/billing
 *
 * The billing routes: the subscription, answered from the account (`tb.accounts.get`), and
 * checkout and portal sessions, which need a {@link BillingProvider} (Stripe's lives in
 * `tollbooth/stripe`). Without one, checkout and portal answer 501 `not_implemented` with a
 * message saying what to configure.
 */

import type { Hono } from 'hono'
import {
  type BillingProvider,
  type CheckoutInput,
  InvalidRequestError,
  NotImplementedError,
  type PortalInput,
  type Tollbooth,
} from '../../src/index.js'
import type { Guard } from './auth.js'
import { json, parse, queryOf, readJson, refusal } from './http.js'
import { checkoutBody, noQuery, portalBody } from './schemas.js'
import { subscriptionView } from './views.js'

export type { BillingProvider, CheckoutInput, PortalInput }

/** The largest webhook body read (Stripe events are a few kB). */
const MAX_WEBHOOK_BYTES = 1 << 20

const notConfigured = () =>
  new NotImplementedError(
    'Billing is not configured: pass a billing provider to managementApi(tb, { billing })',
  )

/**
 * Registers `/billing/*` on `app`. `POST /billing/webhook` takes no credential: the provider's
 * signature over the raw body is checked by `billing.webhook()`.
 */
export function billingRoutes(
  app: Hono,
  tb: Tollbooth,
  guard: Guard,
  billing: BillingProvider | undefined,
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
        const tiers = Object.keys(tb.options.plans)
        if (tiers.length > 0 && !tiers.includes(body.tier))
          throw new InvalidRequestError(
            `Invalid request body: tier: must be one of ${tiers.join(', ')}`,
            [{ path: 'tier', message: `must be one of ${tiers.join(', ')}` }],
          )
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

  app.post('/billing/webhook', async (c) => {
    if (!billing) throw notConfigured()
    const raw = new Uint8Array(await c.req.arrayBuffer())
    if (raw.byteLength > MAX_WEBHOOK_BYTES) {
      return refusal('body_too_large', 'Webhook body too large')
    }
    const r = await billing.webhook({ body: raw, headers: c.req.raw.headers })
    return c.json(r.body, r.status as 200)
  })
}
