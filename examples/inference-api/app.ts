/**
 * @module examples/inference-api/app
 *
 * An inference API in the shape of `004_8209d5d9c76b9400.txt` and `002_2f2523503321cfc2.txt`,
 * on tollbooth and Fastify:
 *
 * - an OpenAI-compatible `POST /v1/chat/completions` and an Anthropic-compatible
 *   `POST /v1/messages` on a deterministic stand-in model, charged by the tokens each response
 *   reports, with errors in each SDK's shape;
 * - consumption keys `sk_`: credit keys (60 rpm, a shared prepaid balance, per-key
 *   `maxBudget`, tpm, rolling quotas) and pool keys (reserved time blocks, 1 request at a
 *   time, expiring with their subscription), see `plans.ts`;
 * - management keys `mk_` and session tokens for `/api/*`: keys, pools, billing;
 * - the error strings and statuses of `002`: `Invalid API Key`, `Inactive API Key`,
 *   `Expired API Key` (401), `Rate limit exceeded: quota daily` (401),
 *   `exceeded the per-second rate limit on your subscription` (429),
 *   `IP temporarily blocked` (403, after 20 failed attempts from one IP in a minute);
 * - request logs per key (`GET /api/keys/:id/logs`);
 * - prepaid credits sold through Stripe Checkout when a Stripe client is given
 *   (`stripeBilling`, its webhook at `POST /api/billing/webhook`), else a stand-in top-up;
 * - the developer portal (`tollbooth/portal`) at `/portal`, signed in with the dashboard's
 *   session tokens.
 */

import Fastify, { type FastifyInstance } from 'fastify'
import type Stripe from 'stripe'
import { mountFetch, tollbooth } from '../../adapters/fastify/index.js'
import { portal } from '../../adapters/portal/index.js'
import { type StripeBilling, stripeBilling } from '../../adapters/stripe/index.js'
import {
  type Clock,
  createTollbooth,
  isTollboothError,
  type Storage,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/index.js'
import { accountAuth } from './account-auth.js'
import { anthropicRoutes } from './anthropic-routes.js'
import { billingRoutes, stripeWebhookRoute } from './billing-routes.js'
import { keyRoutes } from './key-routes.js'
import { MODELS } from './model.js'
import { openAiRoutes } from './openai-routes.js'
import { CREDITS_PER_USD, consumptionKeyRule, PLANS } from './plans.js'

export { countTokens } from './model.js'
export { CREDITS_PER_USD, DEFAULT_MAX_TOKENS, POOLS } from './plans.js'

/**
 * Key prefixes (`004`): credit keys `sk_live_…`, pool keys `sk_pool_…` (both consumption keys,
 * each parsed and checksummed), management keys `mk_…`.
 */
export const PREFIXES = { consumption: ['sk_live_', 'sk_pool_'], management: 'mk_' }

export interface InferenceApiOptions {
  /** At least 32 characters: derives the key hashes (rotating it invalidates every key). */
  secret: string
  /** Verifies the session tokens of the dashboard and the portal (HS256, 32+ characters). */
  sessionSecret: string
  /** Default: in memory. */
  storage?: Storage | undefined
  /** For tests: a manual clock. */
  clock?: Clock
  /** The failed-auth IP guard. Default: 20 failures a minute block the IP for 15 minutes. */
  failedAuth?: TollboothOptions['failedAuth']
  /**
   * Sell credits through Stripe (`examples/shared/stripe.ts` reads it from the environment):
   * the client, the webhook endpoint's signing secret, and the one-time price of one unit of
   * `creditsPerUnit` credits (default {@link CREDITS_PER_USD}: a $1 price). Without it, the
   * stand-in `POST /api/billing/topup`.
   */
  stripe?:
    | {
        client: Stripe
        webhookSecret: string
        creditsPriceId: string
        creditsPerUnit?: number
        /**
         * The recurring price of a pool subscription: `POST /api/pools/:id/subscribe` then
         * opens Checkout, and each paid period (webhook) activates or renews it. Without it,
         * subscribing stays the free stand-in.
         */
        poolPriceId?: string | undefined
      }
    | undefined
}

export interface InferenceApi {
  app: FastifyInstance
  tb: Tollbooth
  /** The Stripe provider with the `stripe` option, else null. */
  billing: StripeBilling | null
}

/**
 * Builds the inference API (call `app.listen()` or `app.ready()` next).
 *
 * @example
 * ```ts
 * const { app } = await createInferenceApi({ secret: process.env.TOLLBOOTH_SECRET!, sessionSecret: process.env.SESSION_SECRET! })
 * await app.listen({ port: 3000 })
 * ```
 */
export async function createInferenceApi(options: InferenceApiOptions): Promise<InferenceApi> {
  const tb = createTollbooth({
    secret: options.secret,
    ...(options.storage ? { storage: options.storage } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.failedAuth !== undefined ? { failedAuth: options.failedAuth } : {}),
    prefixes: PREFIXES,
    plans: PLANS,
    defaultTier: 'credits',
    // `002`: a reached rolling quota answers 401 "Rate limit exceeded: quota daily".
    quotaStatus: 401,
  })
  // The rules of a new credit or pool key, for the dashboard API and the portal alike.
  tb.keys.addRule(consumptionKeyRule(tb))
  const s = options.stripe
  const perUnit = s?.creditsPerUnit ?? CREDITS_PER_USD
  const billing = s
    ? stripeBilling(tb, {
        stripe: s.client,
        webhookSecret: s.webhookSecret,
        tiers: s.poolPriceId ? { unlimited: { priceId: s.poolPriceId } } : {},
        // From one unit ($1) to 10,000 units: the stand-in top-up's bounds.
        credits: {
          priceId: s.creditsPriceId,
          creditsPerUnit: perUnit,
          min: perUnit,
          max: 10_000 * perUnit,
        },
      })
    : null
  const app = Fastify({ bodyLimit: 1 << 20 })
  await app.register(tollbooth, { tb })

  app.get('/', async () => ({
    name: 'inference-api',
    models: MODELS,
    docs: 'see examples/inference-api/README.md',
  }))
  await app.register(openAiRoutes(tb), { prefix: '/v1' })
  await app.register(anthropicRoutes(), { prefix: '/v1' })
  await app.register(
    async (api) => {
      accountAuth(api, tb, options.sessionSecret)
      api.setErrorHandler((err, _request, reply) => {
        if (isTollboothError(err))
          return reply.code(err.status).send({ success: false, error: err.message, code: err.code })
        const status = (err as { statusCode?: number }).statusCode
        if (typeof status === 'number' && status >= 400 && status < 500)
          return reply
            .code(status)
            .send({ success: false, error: (err as Error).message, code: 'invalid_request' })
        reply.log.error(err)
        return reply
          .code(500)
          .send({ success: false, error: 'Internal server error', code: 'internal_error' })
      })
      keyRoutes(api, tb)
      billingRoutes(api, tb, billing)
    },
    { prefix: '/api' },
  )
  if (billing) await stripeWebhookRoute(app, tb, billing)
  const portalApp = portal(tb, { session: { secret: options.sessionSecret } })
  await app.register(mountFetch(portalApp.fetch), { prefix: '/portal' })
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: `Not found: ${request.method} ${request.url}`, code: 'not_found' }),
  )
  app.addHook('onClose', async () => {
    await billing?.close()
    await tb.close()
  })
  return { app, tb, billing }
}
