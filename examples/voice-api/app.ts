/**
 * @module examples/voice-api/app
 *
 * A voice API in the shape of `000_e64ca3fbac44b344.txt` and `001_da102ff7c76ebfc9.txt`, on
 * tollbooth and Hono:
 *
 * - `plabs_sk_live_` API keys (and `plabs_mk_live_` management keys), every key rate limited
 *   (60 requests a minute unless created with its own limits): 429 with `X-RateLimit-*` and
 *   `Retry-After`;
 * - `/v1/synthesize`, `/v1/transcribe`, `/v1/chat`, `/v1/rag/query` metered in credits under
 *   the categories tts, stt, llm and rag, with the usage headers on every answer;
 * - plans free/starter/pro/scale with monthly credits, overage and carryover;
 * - BYOK: `X-Provider-Key-*` headers, or provider keys stored with `/v1/provider-keys`, make a
 *   request free (`X-Usage-Bypassed: true`);
 * - the management API at `/v1` (`/v1/keys…`, `/v1/usage`, `/v1/provider-keys…`,
 *   `/v1/billing/…`), where the ordinary API key is accepted, as in the seed's curl lines;
 * - the tiers sold through Stripe Checkout when a Stripe client is given (`stripeBilling`, its
 *   webhook at `POST /v1/billing/webhook`), else through the stand-in of `demo-billing.ts`;
 * - the developer portal (`tollbooth/portal`) at `/portal`, for session tokens only.
 */

import { type Context, Hono, type Next } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type Stripe from 'stripe'
import { managementApi } from '../../adapters/management/index.js'
import { portal } from '../../adapters/portal/index.js'
import { type StripeBilling, stripeBilling } from '../../adapters/stripe/index.js'
import {
  type BillingProvider,
  type Clock,
  createTollbooth,
  type KeyLimits,
  providerVerifiers,
  type Storage,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/index.js'
import { type DemoBilling, demoBilling } from './demo-billing.js'
import { BadRequest, productRoutes } from './product-routes.js'

export { PRICING } from './product-routes.js'

/** The tiers: credits a month, overage price per credit, months of unused credits kept. */
export const PLANS = {
  free: { display: 'Free', monthlyCredits: 1_000, rateLimits: [{ limit: 10, windowMs: 1_000 }] },
  starter: {
    display: 'Starter ($29/mo)',
    monthlyCredits: 50_000,
    overageRate: 0.001,
    carryoverMonths: 0,
  },
  pro: {
    display: 'Pro ($99/mo)',
    monthlyCredits: 200_000,
    overageRate: 0.0008,
    allowOverage: true,
    carryoverMonths: 1,
  },
  scale: {
    display: 'Scale ($499/mo)',
    monthlyCredits: 1_500_000,
    overageRate: 0.0005,
    allowOverage: true,
    carryoverMonths: 2,
  },
} satisfies TollboothOptions['plans']

/** The usage categories of the product routes. */
export const CATEGORIES = ['tts', 'stt', 'llm', 'rag'] as const

/** The per-key rate limit every key gets unless it is created with its own. */
export const KEY_LIMITS: KeyLimits = { rateLimits: [{ limit: 60, windowMs: 60_000 }] }

export const PREFIXES = { consumption: 'plabs_sk_live_', management: 'plabs_mk_live_' }

export interface VoiceApiOptions {
  /** At least 32 characters: derives the key hashes (rotating it invalidates every key). */
  secret: string
  /** Default: in memory. */
  storage?: Storage | undefined
  /** Verifies the developer portal's session tokens; without it `/portal` is not served. */
  sessionSecret?: string | undefined
  /** The server's public URL, for the demo billing pages. Default `http://127.0.0.1:3000`. */
  publicUrl?: () => string
  /** Default {@link PLANS}. */
  plans?: TollboothOptions['plans']
  /** For tests: a manual clock. */
  clock?: Clock
  /**
   * Where `POST /v1/provider-keys/:provider/verify` checks a stored key: provider -> origin
   * (a proxy, or a local stand-in in tests). Default: the providers themselves
   * (`providerVerifiers()`: ElevenLabs `GET /v1/user`, OpenAI `GET /v1/models`, …).
   */
  providerBaseUrls?: Record<string, string> | undefined
  /** The verification request's timeout. Default 5,000 ms. */
  verifyTimeoutMs?: number | undefined
  /**
   * Sell the tiers through Stripe (`examples/shared/stripe.ts` reads it from the environment):
   * the client, the webhook endpoint's signing secret and each tier's recurring price.
   * Without it, the stand-in provider of `demo-billing.ts`.
   */
  stripe?: { client: Stripe; webhookSecret: string; prices: Record<PaidTier, string> } | undefined
}

/** The tiers that are sold. */
export type PaidTier = 'starter' | 'pro' | 'scale'

export interface VoiceApi {
  app: Hono
  tb: Tollbooth
  /** The billing provider: `stripeBilling` with the `stripe` option, else the demo. */
  billing: BillingProvider
  /** `stripeBilling`, null without Stripe: closed after `tb.close()` (its metered overage). */
  stripe: StripeBilling | null
  /** The stand-in provider, null with Stripe. */
  demo: DemoBilling | null
}

/**
 * Builds the voice API.
 *
 * @example
 * ```ts
 * const { app, tb } = createVoiceApi({ secret: process.env.TOLLBOOTH_SECRET! })
 * serve({ fetch: app.fetch, port: 3000 })
 * ```
 */
export function createVoiceApi(options: VoiceApiOptions): VoiceApi {
  const tb = createTollbooth({
    secret: options.secret,
    ...(options.storage ? { storage: options.storage } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    prefixes: PREFIXES,
    plans: options.plans ?? PLANS,
    defaultTier: 'free',
    // One real request per verification, to the provider's cheapest authenticated endpoint.
    verifiers: providerVerifiers({
      ...(options.providerBaseUrls ? { baseUrls: options.providerBaseUrls } : {}),
      ...(options.verifyTimeoutMs ? { timeoutMs: options.verifyTimeoutMs } : {}),
    }),
  })
  const s = options.stripe
  const demo = s
    ? null
    : demoBilling(tb, { baseUrl: options.publicUrl ?? (() => 'http://127.0.0.1:3000') })
  const stripe = s
    ? stripeBilling(tb, {
        stripe: s.client,
        webhookSecret: s.webhookSecret,
        tiers: {
          starter: { priceId: s.prices.starter },
          pro: { priceId: s.prices.pro },
          scale: { priceId: s.prices.scale },
        },
      })
    : null
  const billing: BillingProvider = stripe ?? demo!
  const app = new Hono()

  app.get('/', (c) => c.json({ name: 'voice-api', docs: 'see examples/voice-api/README.md' }))
  productRoutes(app, tb)

  // Every API key gets the per-key rate limit unless it carries its own: one rule, run by
  // tb.keys for `/v1/keys`, the portal and any other path that creates a key.
  tb.keys.addRule((draft) =>
    draft.kind === 'consumption' && !draft.limits.rateLimits
      ? { ...draft, limits: { ...draft.limits, ...KEY_LIMITS } }
      : draft,
  )

  // The usage breakdown of the seed: the four product categories, 0 when unused (calls to the
  // management routes are logged under `management` at no charge: counted in requests only).
  const productBreakdown = async (c: Context, next: Next) => {
    await next()
    if (c.res.status !== 200) return
    const body = (await c.res.json()) as { breakdown: Record<string, number> }
    body.breakdown = Object.fromEntries(CATEGORIES.map((k) => [k, body.breakdown[k] ?? 0]))
    c.res = new Response(JSON.stringify(body), c.res)
  }
  app.get('/v1/usage', productBreakdown)
  app.get('/portal/api/usage', productBreakdown)

  // The seed's curl lines manage keys with the ordinary API key: consumption keys allowed.
  // `POST /v1/billing/webhook` (no credential, the provider's signature) goes to `billing`.
  app.route('/v1', managementApi(tb, { auth: { consumptionKeys: true }, billing }))
  // The developer portal: sessions only, "not accessible with API keys"; its API under /portal/api.
  if (options.sessionSecret)
    app.route('/portal', portal(tb, { session: { secret: options.sessionSecret } }))
  if (demo) app.route('/', demo.pages)

  app.notFound((c) =>
    c.json({ error: `Not found: ${c.req.method} ${c.req.path}`, code: 'not_found' }, 404),
  )
  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse()
    if (err instanceof BadRequest)
      return c.json({ error: err.message, code: 'invalid_request', issues: err.issues }, 400)
    console.error('[voice-api]', err)
    return c.json({ error: 'Internal server error', code: 'internal_error' }, 500)
  })
  return { app, tb, billing, stripe, demo }
}
