/**
 * @module billing/types
 *
 * The contract between tollbooth and a billing provider (`tollbooth/stripe` is one). A
 * provider sells plans and credits on its own hosted pages and tells tollbooth what was
 * bought through webhooks; tollbooth never sees a card. Three calls cover it:
 *
 * - `checkout`: a hosted payment page for an account, either a subscription to a tier (the
 *   keys of `options.plans`) or a one-off purchase of prepaid credits (a top-up);
 * - `portal`: a hosted page where the account manages its subscription, invoices and cards;
 * - `webhook`: the provider's signed notification (raw body and headers) turned into
 *   {@link BillingChange}s and applied to the account, once per notification.
 *
 * The management API answers `POST /billing/checkout` and `POST /billing/portal` (and the
 * webhook route) through this interface, so a provider other than Stripe plugs in the same
 * way. Providers turn their own events into {@link BillingChange}s and hand them to
 * `applyBillingChanges()` (`billing/apply`), which owns ordering and idempotency.
 */

/** Start a hosted checkout for a tier (subscription) or for `credits` (a one-off top-up). */
export type CheckoutInput = {
  accountId: string
  /** Where the provider sends the buyer after paying (http or https URL). */
  successUrl: string
  /** Where the provider sends the buyer who gives up (http or https URL). */
  cancelUrl: string
} & (
  | { /** A key of `options.plans` the provider has a price for. */ tier: string; credits?: never }
  | { /** Prepaid credits to buy: a positive integer. */ credits: number; tier?: never }
)

/** A hosted checkout page: send the buyer to `url`. */
export interface CheckoutResult {
  sessionId: string
  url: string
}

export interface PortalInput {
  accountId: string
  /** Where the portal's "back" link goes; the provider's default when omitted. */
  returnUrl?: string
}

export interface PortalResult {
  url: string
}

/** Header lookup accepted by `webhook`: a plain object (any case) or a Fetch `Headers`. */
export type HeaderBag =
  | Record<string, string | string[] | undefined>
  | { get(name: string): string | null }

/** A provider notification exactly as received: the raw body is needed to check its signature. */
export interface WebhookInput {
  body: string | Uint8Array
  headers: HeaderBag
}

/** What a webhook call answers: send `status` and `body` (JSON) back to the provider. */
export interface WebhookResult {
  /** 200 handled (or a replay, or an event tollbooth ignores); 400 bad signature or body; 409 the same event is being handled elsewhere; 500 failed, the provider retries. */
  status: number
  body: Record<string, unknown>
  /** What each change did; empty for a replay or a refused call. */
  applied: AppliedChange[]
}

/**
 * One change to an account, decided by the provider from its event. `at` is the provider's
 * event time (ms): changes of a subscription older than the last one applied are ignored, so
 * events delivered out of order never roll an account back.
 */
export type BillingChange =
  | {
      /** The provider's customer id for the account (stored as `billingCustomerId`). */
      type: 'customer'
      accountId: string
      customerId: string
    }
  | {
      /** A live subscription: the account is on `tier` until `expiresAt`. */
      type: 'tier'
      accountId: string
      subscriptionId: string
      at: number
      tier: string
      /** When the tier lapses unless renewed (ms); null: never; omitted: unchanged. */
      expiresAt?: number | null
    }
  | {
      /** The subscription ended: the account falls back to the default tier. */
      type: 'cancel'
      accountId: string
      subscriptionId: string
      at: number
      /**
       * Stopped for now (paused, or unpaid), not ended: the account falls back to the default
       * tier, and a newer change of the same subscription (resumed, paid) gives the tier back.
       */
      suspended?: boolean
    }
  | {
      /** Prepaid credits bought or granted; applied once per `grantId` (a payment or invoice id). */
      type: 'credits'
      accountId: string
      amount: number
      grantId: string
      reason: 'top-up' | 'renewal'
    }

/** The outcome of one change: `applied` false with the reason it was skipped. */
export interface AppliedChange {
  change: BillingChange
  applied: boolean
  reason?: 'stale' | 'ended' | 'other-subscription' | 'already-granted' | 'unchanged'
  /**
   * Applied instead of `change`: the subscription's current state at the provider, asked
   * because `change` tied with the last one applied (same time) and disagreed with it.
   */
  current?: BillingChange
}

/** A hosted-billing provider, bound to one tollbooth instance. */
export interface BillingProvider {
  /** A short id, e.g. `stripe`. */
  readonly name: string
  /**
   * The tiers it sells (keys of `options.plans` it has a price for). Checkout refuses any
   * other with a 400 naming `tier`. When left out, every plan but `options.defaultTier` (the
   * tier an account falls back to, never bought) is taken as purchasable.
   */
  readonly tiers?: ReadonlyArray<string>
  /**
   * @throws {InvalidRequestError} (400) naming the bad field: unknown tier, bad credits, bad URL
   * @throws {BillingUnavailableError} (502) when the provider does not answer or refuses
   */
  checkout(input: CheckoutInput): Promise<CheckoutResult>
  /** @throws {BillingUnavailableError} (502) when the provider does not answer or refuses */
  portal(input: PortalInput): Promise<PortalResult>
  /** Never throws: a bad signature is a 400 result, a failure to apply a 500 result. */
  webhook(input: WebhookInput): Promise<WebhookResult>
}

/** Reads one header from a {@link HeaderBag}, case-insensitively; first value of a list. */
export function headerOf(headers: HeaderBag, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(n: string): string | null }).get(name) ?? undefined
  }
  const bag = headers as Record<string, string | string[] | undefined>
  const lower = name.toLowerCase()
  for (const k in bag) {
    if (k.toLowerCase() !== lower) continue
    const v = bag[k]
    return Array.isArray(v) ? v[0] : v
  }
  return undefined
}
