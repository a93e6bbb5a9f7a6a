/**
 * @module test/support/webhook
 *
 * What the Stripe webhook fault suites share: a tollbooth with a `starter` (default) and a
 * `pro` tier and its `stripeBilling`, subscription `sub_1` of `acct_1` to `pro` as Stripe sends
 * it, and the delivery of an event signed with the real `generateTestHeaderString`.
 */

import Stripe from 'stripe'
import { stripeBilling } from '../../adapters/stripe/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'

const stripe = new Stripe('sk_test_unused')

/** A webhook delivery's answer. */
export type Delivered = Awaited<ReturnType<ReturnType<typeof stripeBilling>['webhook']>>

/**
 * A tollbooth on `storage` (errors dropped) and its Stripe billing, `pro` sold as `price_pro`;
 * `deliver` signs an event with `whsec` and hands it to the webhook.
 */
export function webhookBilling(
  storage: Storage,
  o: { secret: string; whsec: string; storageTimeoutMs?: number },
): {
  tb: Tollbooth
  deliver(id: string, type: string, object: object, created: number): Promise<Delivered>
} {
  const tb = createTollbooth({
    secret: o.secret,
    storage,
    ...(o.storageTimeoutMs === undefined ? {} : { storageTimeoutMs: o.storageTimeoutMs }),
    plans: { starter: { monthlyCredits: 100 }, pro: { monthlyCredits: 10_000 } },
    defaultTier: 'starter',
    onError: () => {},
  })
  const billing = stripeBilling(tb, {
    stripe,
    webhookSecret: o.whsec,
    tiers: { pro: { priceId: 'price_pro' } },
    onError: () => {},
  })
  return {
    tb,
    deliver(id, type, object, created) {
      const body = JSON.stringify({ id, object: 'event', type, created, data: { object } })
      const header = stripe.webhooks.generateTestHeaderString({
        payload: body,
        secret: o.whsec,
        timestamp: Math.floor(Date.now() / 1000),
      })
      return billing.webhook({ body, headers: { 'stripe-signature': header } })
    },
  }
}

/** Subscription `sub_1` of customer `cus_1` (account `acct_1`, tier `pro`), its period from `s0` (s) for 30 days. */
export function proSubscription(status: string, s0: number) {
  return {
    id: 'sub_1',
    object: 'subscription',
    customer: 'cus_1',
    status,
    cancel_at: null,
    cancel_at_period_end: false,
    metadata: { tollbooth_account_id: 'acct_1', tollbooth_tier: 'pro' },
    items: {
      object: 'list',
      data: [
        {
          id: 'si_1',
          price: { id: 'price_pro' },
          current_period_start: s0,
          current_period_end: s0 + 30 * 86_400,
        },
      ],
    },
  }
}
