/**
 * @module examples/inference-api/billing-routes
 *
 * The account side of the two plans of `004_8209d5d9c76b9400.txt`, under `/api`:
 *
 * - `GET /pools` and `POST /pools/:id/subscribe` `{ days? }`: reserve a pool's daily time
 *   block for each of the next `days` days (default 30), a subscription whose keys are minted
 *   with `POST /api/keys/subscription`;
 * - `GET /billing/status`: the shared credit balance (USD and credits) and the subscriptions;
 * - `POST /billing/topup` `{ amount }`: adds prepaid credits. A stand-in for the payment page:
 *   in production the balance grows from your payment provider's webhook
 *   (`applyBillingChanges` with a `credits` change, as `tollbooth/stripe` does).
 */

import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { NotFoundError, type Tollbooth } from '../../src/index.js'
import { parse } from './key-routes.js'
import { CREDITS_PER_USD, POOLS, subscribe, subscriptionsOf, usd } from './plans.js'

const subscribeBody = z.object({ days: z.number().int().min(1).max(31).default(30) }).strict()
const topupBody = z.object({ amount: z.number().min(1).max(10_000) }).strict()

const iso = (ms: number) => new Date(ms).toISOString()

/** Registers `/pools*` and `/billing/*` on `api` (the `/api` context, behind `accountAuth`). */
export function billingRoutes(api: FastifyInstance, tb: Tollbooth): void {
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
          status: s.expiresAt > t ? 'active' : 'expired',
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
    const pool = POOLS[request.params.id]
    if (!pool)
      throw new NotFoundError(`Pool not found; the pools are ${Object.keys(POOLS).join(', ')}`)
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

  api.post('/billing/topup', async (request) => {
    const body = parse(topupBody, request.body, 'body')
    await tb.accounts.addCredits(request.account.id, Math.round(body.amount * CREDITS_PER_USD))
    return { success: true, data: await status(request.account.id) }
  })
}
