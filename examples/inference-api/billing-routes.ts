/**
 * @module examples/inference-api/billing-routes
 *
 * The account side of the two plans of `004_8209d5d9c76b9400.txt`, under `/api`:
 *
 * - `GET /pools` and `POST /pools/:id/subscribe` `{ days? }`: reserve a pool's daily time
 *   block for each of the next `days` days (default 30), a subscription whose keys are minted
 *   with `POST /api/keys/subscription`;
 * - `GET /billing/status`: the shared credit balance (USD and credits) and the subscriptions;
 * - with Stripe (`stripeBilling`): `POST /billing/checkout` `{ credits, successUrl, cancelUrl }`
 *   opens a Checkout session in payment mode, and the balance grows when Stripe's signed
 *   `checkout.session.completed` reaches `POST /api/billing/webhook` ({@link stripeWebhookRoute},
 *   outside the authenticated context), once per payment;
 * - without Stripe, `POST /billing/topup` `{ amount }` (USD) adds prepaid credits at once: a
 *   stand-in for the payment page, not served when Stripe is configured.
 */

import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { StripeBilling } from '../../adapters/stripe/index.js'
import { NotFoundError, type Tollbooth } from '../../src/index.js'
import { parse } from './key-routes.js'
import {
  CREDITS_PER_USD,
  POOLS,
  poolOf,
  renew,
  reserve,
  subscribe,
  subscriptionsOf,
  usd,
} from './plans.js'

const subscribeBody = z.object({ days: z.number().int().min(1).max(31).default(30) }).strict()
const urls = {
  successUrl: z.url({ protocol: /^https?$/ }),
  cancelUrl: z.url({ protocol: /^https?$/ }),
}
/** With the billing provider: the period is the provider's (a month), paid through Checkout. */
const paidSubscribeBody = z.object(urls).strict()
const topupBody = z.object({ amount: z.number().min(1).max(10_000) }).strict()
const checkoutBody = z
  .object({
    credits: z.number().int().positive(),
    successUrl: z.url({ protocol: /^https?$/ }),
    cancelUrl: z.url({ protocol: /^https?$/ }),
  })
  .strict()

const iso = (ms: number) => new Date(ms).toISOString()

/**
 * Registers `/pools*` and `/billing/*` on `api` (the `/api` context, behind `accountAuth`).
 *
 * @param stripe the Stripe provider selling credit top-ups, or null for the stand-in top-up
 */
export function billingRoutes(
  api: FastifyInstance,
  tb: Tollbooth,
  stripe: StripeBilling | null,
): void {
  const now = () => tb.options.clock?.now() ?? Date.now()

  const status = async (user: string) => {
    const a = await tb.accounts.get(user)
    const t = now()
    return {
      balance: usd(a.credits.remaining),
      credits: a.credits,
      creditsPerUsd: CREDITS_PER_USD,
      subscriptions: subscriptionsOf(a).map((s) => {
        const next = s.blocks.find((b) => b.end > t)
        return {
          id: s.id,
          poolId: s.poolId,
          status: s.pending ? 'pending' : s.expiresAt > t ? 'active' : 'expired',
          blocks: s.blocks.length,
          nextBlock: next ? { start: iso(next.start), end: iso(next.end) } : null,
          expiresAt: iso(s.expiresAt),
        }
      }),
    }
  }

  api.get('/pools', async () => ({
    success: true,
    data: Object.entries(POOLS).map(([id, p]) => ({
      id,
      name: p.name,
      dailyWindowUtc: { fromHour: p.fromHour, toHour: p.toHour },
    })),
  }))

  api.post<{ Params: { id: string } }>('/pools/:id/subscribe', async (request, reply) => {
    const pool = poolOf(request.params.id)
    if (!pool)
      throw new NotFoundError(`Pool not found; the pools are ${Object.keys(POOLS).join(', ')}`)
    if (stripe?.tiers?.includes('unlimited')) {
      // Sold: a pending subscription and a Checkout page; it becomes active (and renews)
      // when the provider's signed webhook says the period was paid.
      const body = parse(paidSubscribeBody, request.body, 'body')
      const sub = await reserve(tb, request.account.id, request.params.id, now())
      const session = await stripe.checkout({
        accountId: sub.accountId,
        tier: 'unlimited',
        successUrl: body.successUrl,
        cancelUrl: body.cancelUrl,
      })
      return reply.code(201).send({
        success: true,
        data: {
          id: sub.id,
          poolId: sub.poolId,
          status: 'pending',
          url: session.url,
          sessionId: session.sessionId,
        },
      })
    }
    const body = parse(subscribeBody, request.body, 'body')
    const sub = await subscribe(tb, request.account.id, request.params.id, body.days, now())
    return reply.code(201).send({
      success: true,
      data: {
        id: sub.id,
        poolId: sub.poolId,
        status: 'active',
        blocks: sub.blocks.map((b) => ({ start: iso(b.start), end: iso(b.end) })),
        expiresAt: iso(sub.expiresAt),
      },
    })
  })

  api.get('/billing/status', async (request) => ({
    success: true,
    data: await status(request.account.id),
  }))

  if (stripe) {
    api.post('/billing/checkout', async (request) => {
      const body = parse(checkoutBody, request.body, 'body')
      const session = await stripe.checkout({ accountId: request.account.id, ...body })
      return { success: true, data: { url: session.url, sessionId: session.sessionId } }
    })
    return
  }
  api.post('/billing/topup', async (request) => {
    const body = parse(topupBody, request.body, 'body')
    await tb.accounts.addCredits(request.account.id, Math.round(body.amount * CREDITS_PER_USD))
    return { success: true, data: await status(request.account.id) }
  })
}

/**
 * `POST /api/billing/webhook` on `app`, in a context of its own: no session or key (Stripe's
 * signature over the raw body is the credential), the body kept as bytes for that check.
 * Subscribe the endpoint to `checkout.session.completed` and
 * `checkout.session.async_payment_succeeded` (credits), and, when pools are sold,
 * `customer.subscription.created`, `customer.subscription.updated`,
 * `customer.subscription.deleted` and `invoice.paid` (each paid period extends the pool
 * subscription and its keys).
 */
export async function stripeWebhookRoute(
  app: FastifyInstance,
  tb: Tollbooth,
  stripe: StripeBilling,
) {
  const now = () => tb.options.clock?.now() ?? Date.now()
  await app.register(async (hook) => {
    hook.removeAllContentTypeParsers()
    hook.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) =>
      done(null, body),
    )
    hook.post('/api/billing/webhook', async (request, reply) => {
      const body = Buffer.isBuffer(request.body) ? request.body : ''
      const r = await stripe.webhook({ body, headers: request.headers })
      // A pool subscription's paid period (first payment or renewal), applied once: a replayed
      // event applies nothing, so it renews nothing.
      for (const a of r.applied) {
        const c = a.change
        if (a.applied && c.type === 'tier' && c.tier === 'unlimited' && c.expiresAt)
          await renew(tb, c.accountId, c.expiresAt, now())
      }
      return reply.code(r.status).send(r.body)
    })
  })
}
