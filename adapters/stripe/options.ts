/**
 * @module tollbooth/stripe/options
 *
 * The options of `stripeBilling()`, in one zod schema with their defaults. A bad or unknown
 * option throws a `ConfigError` naming it (through the core's `parseConfig`).
 */

import type Stripe from 'stripe'
import { z } from 'zod'
import { MARKER_TTL_MS, type MeterOutboxOptions } from '../../src/internal.js'

const id = z.string().min(1).max(255)
const tierSchema = z
  .object({
    /** The recurring Stripe price of the tier. */
    priceId: id,
    /** A metered price (on the overage meter) added to the subscription, so overage is invoiced. */
    meteredPriceId: id.optional(),
    /** Prepaid credits added at each paid period (beside the plan's monthly credits). */
    grantCredits: z.number().int().nonnegative().default(0),
  })
  .strict()
const creditBounds = {
  /** Credits per unit of the price (a pack), default 1: quantity = credits / creditsPerUnit. */
  creditsPerUnit: z.number().int().positive().default(1),
  min: z.number().int().positive().default(1),
  max: z.number().int().positive().default(10_000_000),
}
/** Every option of `stripeBilling()`. */
export const optionsSchema = z
  .object({
    stripe: z.custom<Stripe>(
      (v) => typeof (v as Stripe)?.checkout?.sessions?.create === 'function',
      { message: 'must be a Stripe client (new Stripe(process.env.STRIPE_SECRET_KEY))' },
    ),
    webhookSecret: z.string().min(8, 'must be the endpoint secret (whsec_…)'),
    tiers: z.record(z.string().min(1).max(64), tierSchema),
    credits: z
      .union([
        z.object({ priceId: id, ...creditBounds }).strict(),
        z
          .object({
            currency: z.string().regex(/^[a-z]{3}$/, 'must be a lowercase ISO currency, e.g. usd'),
            /** Price of one unit (creditsPerUnit credits) in the currency's minor unit (cents). */
            unitAmount: z.number().int().positive(),
            productName: z.string().min(1).max(200).default('Credits'),
            ...creditBounds,
          })
          .strict(),
      ])
      .optional(),
    meterEventName: z.string().min(1).max(100).optional(),
    meter: z
      .object({
        batchSize: z.number().int().min(1).max(1000),
        concurrency: z.number().int().min(1).max(32),
        retryMs: z.number().int().positive(),
        maxRetryMs: z.number().int().positive(),
        intervalMs: z.number().int().positive(),
        maxPending: z.number().int().positive(),
        markerTtlMs: z.number().int().positive(),
        value: z.custom<(e: unknown) => number>((v) => typeof v === 'function'),
      })
      .partial()
      .strict()
      .default({}),
    /** How long a tier outlives its paid period while Stripe retries the renewal. */
    graceMs: z
      .number()
      .int()
      .nonnegative()
      .default(3 * 86_400_000),
    toleranceSec: z.number().int().nonnegative().default(300),
    markerTtlMs: z.number().int().positive().default(MARKER_TTL_MS),
    portalReturnUrl: z.url({ protocol: /^https?$/ }).optional(),
    allowPromotionCodes: z.boolean().default(false),
    onError: z.custom<(err: unknown) => void>((v) => typeof v === 'function').optional(),
  })
  .strict()

/** What `stripeBilling()` takes. */
export type StripeBillingOptions = z.input<typeof optionsSchema> & {
  meter?: Omit<MeterOutboxOptions, 'value'> & { value?: MeterOutboxOptions['value'] }
}
