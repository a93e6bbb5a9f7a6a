/**
 * @module tollbooth/stripe/options
 *
 * The options of `stripeBilling()`, in one zod schema with their defaults. A bad or unknown
 * option throws a `ConfigError` naming it (through the core's `parseOptions`).
 */

import type Stripe from 'stripe'
import { z } from 'zod'
import {
  fnOption,
  integer,
  MARKER_TTL_MS,
  type MeterOutboxOptions,
  objectOption,
} from '../../src/internal.js'

const id = z.string().min(1).max(255)
const tierSchema = z
  .object({
    /** The recurring Stripe price of the tier. */
    priceId: id,
    /** A metered price (on the overage meter) added to the subscription, so overage is invoiced. */
    meteredPriceId: id.optional(),
    /** Prepaid credits added at each paid period (beside the plan's monthly credits). */
    grantCredits: integer(0).default(0),
  })
  .strict()
const creditBounds = {
  /** Credits per unit of the price (a pack), default 1: quantity = credits / creditsPerUnit. */
  creditsPerUnit: integer(1).default(1),
  min: integer(1).default(1),
  max: integer(1).default(10_000_000),
}
/** Every option of `stripeBilling()`. */
export const optionsSchema = z
  .object({
    stripe: objectOption<Stripe>(
      (v) => typeof (v as Stripe)?.checkout?.sessions?.create === 'function',
      'must be a Stripe client (new Stripe(process.env.STRIPE_SECRET_KEY))',
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
            unitAmount: integer(1),
            productName: z.string().min(1).max(200).default('Credits'),
            ...creditBounds,
          })
          .strict(),
      ])
      .optional(),
    meterEventName: z.string().min(1).max(100).optional(),
    meter: z
      .object({
        batchSize: integer(1, 1000),
        concurrency: integer(1, 32),
        retryMs: integer(1),
        maxRetryMs: integer(1),
        intervalMs: integer(1),
        maxPending: integer(1),
        markerTtlMs: integer(1),
        /** How long one meter event call may take (ms, default 10 s); then it is retried. */
        timeoutMs: integer(1),
        /**
         * Time between the meter's healing passes (ms, default 10 minutes; one also runs at
         * start): overage a dead process never sent is found and sent. 0 turns healing off.
         * At most 2^31 - 1 (about 24.8 days): past it, a timer runs after 1 ms.
         */
        healIntervalMs: integer(0, 2_147_483_647),
        value: fnOption<(e: unknown) => number>(),
      })
      .partial()
      .strict()
      .default({}),
    /**
     * How long a tier outlives its paid period (ms, default 3 days), and how long a `past_due`
     * subscription keeps it from the event that says so, while Stripe retries the renewal.
     */
    graceMs: integer(0).default(3 * 86_400_000),
    /**
     * Maximum age of a webhook signature (s). At least 1: Stripe's 0 turns the check off, and a
     * captured event could then be replayed once its processed marker expired.
     */
    toleranceSec: integer(1).default(300),
    markerTtlMs: integer(1).default(MARKER_TTL_MS),
    portalReturnUrl: z.url({ protocol: /^https?$/ }).optional(),
    allowPromotionCodes: z.boolean().default(false),
    onError: fnOption<(err: unknown) => void>().optional(),
  })
  .strict()

/** What `stripeBilling()` takes. */
export type StripeBillingOptions = z.input<typeof optionsSchema> & {
  meter?: Omit<MeterOutboxOptions, 'value'> & {
    value?: MeterOutboxOptions['value']
    /** How long one meter event call may take (ms, default 10 s); then it is retried. */
    timeoutMs?: number
    /** Time between healing passes (ms, default 10 minutes, one at start too; at most 2^31 - 1); 0: off. */
    healIntervalMs?: number
  }
}
