/**
 * @module examples/shared/stripe
 *
 * Real Stripe for the examples' `server.ts`, from the environment: `STRIPE_SECRET_KEY`,
 * `STRIPE_WEBHOOK_SECRET` and one `STRIPE_PRICE_<NAME>` per price the example sells. With none
 * of them set the example keeps its stand-in billing; with only some set it refuses to start,
 * naming the missing variables (a half-configured shop would take no payments, or free ones).
 */

import Stripe from 'stripe'

/** A Stripe client, the webhook endpoint's signing secret, and the price ids by name. */
export interface StripeSetup<P extends string> {
  client: Stripe
  webhookSecret: string
  prices: Record<P, string>
}

/**
 * Reads the Stripe configuration from `env`.
 *
 * @param prices the price names, e.g. `['starter', 'pro', 'scale']` for `STRIPE_PRICE_STARTER`, …
 * @returns the setup, or null when no Stripe variable is set
 * @throws {Error} naming the missing variables when only some are set
 */
export function stripeFromEnv<P extends string>(
  prices: readonly P[],
  env: Record<string, string | undefined> = process.env,
): StripeSetup<P> | null {
  const priceVar = (p: P) => `STRIPE_PRICE_${p.toUpperCase()}`
  const names = ['STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', ...prices.map(priceVar)]
  const set = names.filter((n) => (env[n] ?? '') !== '')
  if (set.length === 0) return null
  const missing = names.filter((n) => !set.includes(n))
  if (missing.length > 0)
    throw new Error(
      `Stripe is half configured: set ${missing.join(', ')} too (or unset ${set.join(', ')} for the stand-in billing)`,
    )
  return {
    client: new Stripe(env['STRIPE_SECRET_KEY']!),
    webhookSecret: env['STRIPE_WEBHOOK_SECRET']!,
    prices: Object.fromEntries(prices.map((p) => [p, env[priceVar(p)]!])) as Record<P, string>,
  }
}
