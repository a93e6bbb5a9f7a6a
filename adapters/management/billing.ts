/**
 * @module tollbooth/management/billing
 *
 * The billing routes: the subscription, answered from the account (`tb.accounts.get`), and
 * checkout and portal sessions, which need a {@link BillingProvider} (Stripe's lives in
 * `tollbooth/stripe`). Without one, checkout and portal answer 501 `not_implemented` with a
 * message saying what to configure.
 */

import type { Hono } from 'hono'
import { InvalidRequestError, NotImplementedError, type Tollbooth } from '../../src/index.js'
import type { Guard } from './auth.js'
import { json, parse, queryOf, readJson } from './http.js'
import { checkoutBody, noQuery, portalBody } from './schemas.js'
import { subscriptionView } from './views.js'

/** What checkout is asked for: the account, the tier it subscribes to, where to send it back. */
export interface CheckoutInput {
  accountId: string
  tier: string
  successUrl: string
  cancelUrl: string
  /** The account's customer id at the billing provider, once it has one. */
  customerId: string | null
}

/** What the portal is asked for. */
export interface PortalInput {
  accountId: string
  returnUrl?: string
  customerId: string | null
}

/**
 * A billing provider: creates hosted checkout and portal sessions. Throw a tollbooth error
 * (e.g. `ConflictError` when the account has no customer yet) to answer with its status.
 */
export interface BillingProvider {
  checkout(input: CheckoutInput): Promise<{ url: string; sessionId: string }>
  portal(input: PortalInput): Promise<{ url: string }>
}

const notConfigured = () =>
  new NotImplementedError(
    'Billing is not configured: pass a billing provider to managementApi(tb, { billing })',
  )

/** Registers `/billing/*` on `app`. */
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
      const tiers = Object.keys(tb.options.plans)
      if (tiers.length > 0 && !tiers.includes(body.tier))
        throw new InvalidRequestError(
          `Invalid request body: tier: must be one of ${tiers.join(', ')}`,
          [{ path: 'tier', message: `must be one of ${tiers.join(', ')}` }],
        )
      const account = await tb.accounts.get(p.accountId)
      const s = await billing.checkout({
        accountId: p.accountId,
        ...body,
        customerId: account.billingCustomerId,
      })
      return json({ url: s.url, sessionId: s.sessionId })
    }),
  )

  app.post(
    '/billing/portal',
    guard(async (c, p) => {
      if (!billing) throw notConfigured()
      parse(noQuery, queryOf(c), 'query')
      const body = parse(portalBody, await readJson(c), 'body')
      const account = await tb.accounts.get(p.accountId)
      const s = await billing.portal({
        accountId: p.accountId,
        ...(body.returnUrl ? { returnUrl: body.returnUrl } : {}),
        customerId: account.billingCustomerId,
      })
      return json({ url: s.url })
    }),
  )
}
