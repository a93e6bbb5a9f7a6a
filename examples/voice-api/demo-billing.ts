/**
 * @module examples/voice-api/demo-billing
 *
 * A stand-in billing provider, so `POST /v1/billing/checkout` and `POST /v1/billing/portal`
 * answer as in `000_e64ca3fbac44b344.txt` without a Stripe account. Checkout returns a local
 * URL; opening it completes the "payment" at once: the tier change (or the credit top-up) goes
 * through `applyBillingChanges`, exactly as a Stripe webhook would apply it, then the browser is
 * redirected to `successUrl`. The portal URL shows the subscription as JSON.
 *
 * Sessions live in this process's memory. For real payments, pass `stripeBilling(tb, …)` from
 * `tollbooth/stripe` to `managementApi` instead (see the README).
 */

import { Hono } from 'hono'
import {
  applyBillingChanges,
  type BillingProvider,
  type CheckoutInput,
  type Tollbooth,
} from '../../src/index.js'

const MONTH = 30 * 86_400_000

/** The demo provider and the routes that play the provider's hosted pages. */
export interface DemoBilling extends BillingProvider {
  /** `GET /billing/demo/checkout/:id` and `GET /billing/demo/portal/:id`: mount at the root. */
  pages: Hono
}

/**
 * Creates the demo provider.
 *
 * @param tb the tollbooth instance whose accounts are "billed"
 * @param options.baseUrl the server's public URL, read when a session is created
 */
export function demoBilling(tb: Tollbooth, options: { baseUrl: () => string }): DemoBilling {
  const now = () => tb.options.clock?.now() ?? Date.now()
  const checkouts = new Map<string, CheckoutInput>()
  const portals = new Map<string, string>()
  const pages = new Hono()

  pages.get('/billing/demo/checkout/:id', async (c) => {
    const id = c.req.param('id')
    const session = checkouts.get(id)
    if (!session) return c.json({ error: 'Checkout session not found', code: 'not_found' }, 404)
    checkouts.delete(id)
    const at = now()
    await applyBillingChanges(
      tb,
      session.tier !== undefined
        ? [
            {
              type: 'tier',
              accountId: session.accountId,
              subscriptionId: `sub_demo_${id.slice(8)}`,
              at,
              tier: session.tier,
              expiresAt: at + MONTH,
            },
          ]
        : [
            {
              type: 'credits',
              accountId: session.accountId,
              amount: session.credits,
              grantId: id,
              reason: 'top-up',
            },
          ],
    )
    return c.redirect(session.successUrl, 303)
  })

  pages.get('/billing/demo/portal/:id', async (c) => {
    const accountId = portals.get(c.req.param('id'))
    if (!accountId) return c.json({ error: 'Portal session not found', code: 'not_found' }, 404)
    const a = await tb.accounts.get(accountId)
    return c.json({
      account: accountId,
      tier: a.tier,
      tierDisplay: a.tierDisplay,
      tierExpiresAt: a.tierExpiresAt === null ? null : new Date(a.tierExpiresAt).toISOString(),
      note: 'A real billing portal shows invoices and payment methods here.',
    })
  })

  return {
    name: 'demo',
    // The paid tiers, as Stripe would have a price for each: `free` is never bought.
    tiers: ['starter', 'pro', 'scale'],
    pages,
    async checkout(input) {
      const id = `cs_demo_${crypto.randomUUID().replaceAll('-', '')}`
      checkouts.set(id, input)
      return { sessionId: id, url: `${options.baseUrl()}/billing/demo/checkout/${id}` }
    },
    async portal(input) {
      const id = `bps_demo_${crypto.randomUUID().replaceAll('-', '')}`
      portals.set(id, input.accountId)
      return { url: `${options.baseUrl()}/billing/demo/portal/${id}` }
    },
    async webhook() {
      return {
        status: 400,
        body: { error: 'The demo billing provider sends no webhooks', code: 'invalid_request' },
        applied: [],
      }
    },
  }
}
