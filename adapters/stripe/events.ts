/**
 * @module tollbooth/stripe/events
 *
 * Turns one verified Stripe event into tollbooth {@link BillingChange}s. Pure: no I/O, no
 * clock. Objects are read field by field rather than through the `stripe` types, so the
 * mapping holds across Stripe API versions (the subscription period end moved from the
 * subscription to its items in 2025-03-31; an invoice's subscription moved under `parent`).
 *
 * Which account an object belongs to comes from the metadata tollbooth writes at checkout
 * (`tollbooth_account_id` on the session, the subscription and the payment); objects without
 * it were not made by tollbooth and are ignored.
 */

import { type BillingChange, ownValue } from '../../src/internal.js'

/** Metadata keys tollbooth sets on Stripe objects. */
export const META = {
  account: 'tollbooth_account_id',
  tier: 'tollbooth_tier',
  credits: 'tollbooth_credits',
} as const

/** What the mapping needs to know of the configuration. */
export interface EventContext {
  /** Stripe price id -> tier. */
  priceTiers: ReadonlyMap<string, string>
  /** Tier -> credits granted on each paid period (0: none). */
  grants: Readonly<Record<string, number>>
  /** How long a tier outlives its paid period while Stripe retries the renewal (ms). */
  graceMs: number
}

/** A Stripe event as verified by `stripe.webhooks.constructEventAsync`. */
export interface StripeEventLike {
  id: string
  type: string
  /** Seconds since the epoch. */
  created: number
  data: { object: unknown }
}

type Obj = Record<string, unknown>
const obj = (v: unknown): Obj | null =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : null
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null)
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
/** An expandable field: the id string, or the expanded object's id. */
const idOf = (v: unknown): string | null => str(v) ?? str(obj(v)?.['id'])
const list = (v: unknown): Obj[] =>
  (Array.isArray(obj(v)?.['data']) ? (obj(v)!['data'] as unknown[]) : [])
    .map(obj)
    .filter((o): o is Obj => o !== null)
const meta = (o: Obj | null, key: string) => str(obj(o?.['metadata'])?.[key])

/** The result: changes to apply, or why the event is ignored. */
export type EventChanges = { changes: BillingChange[] } | { ignored: string }

/** Maps one event; unknown types and foreign objects are `{ ignored }`. */
export function changesOf(event: StripeEventLike, ctx: EventContext): EventChanges {
  const o = obj(event.data?.object)
  if (!o) return { ignored: 'no data.object' }
  const at = event.created * 1000
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
      return checkoutChanges(event.type, o, at, ctx)
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.resumed':
    case 'customer.subscription.paused':
    case 'customer.subscription.deleted':
      return subscriptionChanges(event.type, o, at, ctx)
    case 'invoice.paid':
      return invoiceChanges(o, at, ctx)
    default:
      return { ignored: `event type ${event.type} is not used` }
  }
}

function customerChange(accountId: string, o: Obj): BillingChange[] {
  const customerId = idOf(o['customer'])
  return customerId ? [{ type: 'customer', accountId, customerId }] : []
}

/**
 * When `o` (a checkout session, an invoice) was created, in ms, as the time its change is
 * ordered by: never later than its event's time `at` (also `at` when `created` is missing).
 */
function madeAt(o: Obj, at: number): number {
  const created = num(o['created'])
  return created === null ? at : Math.min(at, created * 1000)
}

function checkoutChanges(type: string, s: Obj, at: number, ctx: EventContext): EventChanges {
  const accountId = meta(s, META.account)
  if (!accountId) return { ignored: 'not a tollbooth checkout' }
  const changes = customerChange(accountId, s)
  const paid = s['payment_status'] === 'paid' || s['payment_status'] === 'no_payment_required'
  if (s['mode'] === 'subscription' && type === 'checkout.session.completed') {
    const subscriptionId = idOf(s['subscription'])
    const tier = meta(s, META.tier)
    if (subscriptionId && tier && tier in ctx.grants && paid) {
      // The period end comes with the subscription's own events; keep the stored expiry.
      // Ordered by the session's creation, which precedes its subscription: delivered after
      // the subscription's events (Stripe's order is not guaranteed), it never makes them stale.
      changes.push({ type: 'tier', accountId, subscriptionId, at: madeAt(s, at), tier })
    }
  } else if (s['mode'] === 'payment' && paid) {
    const credits = Number(meta(s, META.credits))
    const sessionId = str(s['id'])
    if (Number.isFinite(credits) && credits > 0 && sessionId) {
      changes.push({
        type: 'credits',
        accountId,
        amount: credits,
        grantId: `checkout:${sessionId}`,
        reason: 'top-up',
      })
    }
  }
  return { changes }
}

/** The tier of a subscription: its first item whose price is a configured tier, else metadata. */
function tierOf(sub: Obj, ctx: EventContext): { tier: string | null; periodEnd: number | null } {
  let periodEnd = num(sub['current_period_end'])
  for (const item of list(sub['items'])) {
    const price = idOf(item['price']) ?? idOf(obj(item['plan'])?.['id'])
    const tier = price ? ctx.priceTiers.get(price) : undefined
    if (tier) return { tier, periodEnd: num(item['current_period_end']) ?? periodEnd }
    periodEnd = periodEnd ?? num(item['current_period_end'])
  }
  return { tier: null, periodEnd }
}

function subscriptionChanges(type: string, sub: Obj, at: number, ctx: EventContext): EventChanges {
  const accountId = meta(sub, META.account)
  const subscriptionId = str(sub['id'])
  if (!accountId || !subscriptionId) return { ignored: 'not a tollbooth subscription' }
  const changes = customerChange(accountId, sub)
  const status = str(sub['status'])
  const ended =
    type === 'customer.subscription.deleted' ||
    status === 'canceled' ||
    status === 'incomplete_expired'
  // Paused (by the customer, or a trial ended without a payment method) or unpaid (renewal
  // retries exhausted): no tier, but it can be resumed or paid and become active again.
  const suspended = status === 'paused' || status === 'unpaid'
  if (ended || suspended) {
    changes.push({
      type: 'cancel',
      accountId,
      subscriptionId,
      at,
      ...(ended ? {} : { suspended: true }),
    })
    return { changes }
  }
  if (status !== 'active' && status !== 'trialing' && status !== 'past_due') return { changes }
  const found = tierOf(sub, ctx)
  const tier = found.tier ?? meta(sub, META.tier)
  if (!tier || !Object.hasOwn(ctx.grants, tier))
    return { ignored: 'subscription price is not a configured tier' }
  const cancelAt =
    num(sub['cancel_at']) ?? (sub['cancel_at_period_end'] === true ? found.periodEnd : null)
  // A subscription set to cancel ends exactly then; a renewing one gets the grace period
  // after its paid period. A past_due one has an unpaid invoice: the grace period from this
  // event (Stripe advances the period before the renewal is paid, so the period's end would
  // give a failed renewal the whole unpaid period; a plan change's invoice can fail mid-period).
  const end = found.periodEnd !== null ? found.periodEnd * 1000 + ctx.graceMs : undefined
  const lapse = status === 'past_due' ? Math.min(at + ctx.graceMs, end ?? Infinity) : end
  const expiresAt =
    cancelAt !== null
      ? lapse === undefined
        ? cancelAt * 1000
        : Math.min(cancelAt * 1000, lapse)
      : lapse
  changes.push({
    type: 'tier',
    accountId,
    subscriptionId,
    at,
    tier,
    ...(expiresAt === undefined ? {} : { expiresAt }),
  })
  return { changes }
}

function invoiceChanges(inv: Obj, at: number, ctx: EventContext): EventChanges {
  const details =
    obj(obj(inv['parent'])?.['subscription_details']) ?? obj(inv['subscription_details'])
  const subscriptionId = idOf(details?.['subscription']) ?? idOf(inv['subscription'])
  const accountId = meta(details, META.account)
  const invoiceId = str(inv['id'])
  if (!accountId || !subscriptionId || !invoiceId) return { ignored: 'not a tollbooth invoice' }
  const changes = customerChange(accountId, inv)
  const line = tierLine(inv, ctx)
  if (line) {
    const { tier, end, amount } = line
    // The invoice lists the subscription as it was when the invoice was made, which can be
    // well before it is paid (a plan change in between is newer): ordered by its creation.
    changes.push({
      type: 'tier',
      accountId,
      subscriptionId,
      at: madeAt(inv, at),
      tier,
      ...(end === null ? {} : { expiresAt: end * 1000 + ctx.graceMs }),
    })
    const grant = ownValue(ctx.grants, tier) ?? 0
    const reason = inv['billing_reason']
    // A paid period: a trial's line is $0 (a coupon's is not: its discount is apart).
    const paidPeriod = amount !== 0
    if (
      grant > 0 &&
      paidPeriod &&
      (reason === 'subscription_create' || reason === 'subscription_cycle')
    ) {
      changes.push({
        type: 'credits',
        accountId,
        amount: grant,
        grantId: `invoice:${invoiceId}`,
        reason: 'renewal',
      })
    }
  }
  return { changes }
}

/** True for a proration line (an unused-time credit or a remaining-time charge of a plan change). */
const isProration = (line: Obj): boolean => {
  const parent = obj(line['parent'])
  return (
    line['proration'] === true ||
    obj(parent?.['subscription_item_details'])?.['proration'] === true ||
    obj(parent?.['invoice_item_details'])?.['proration'] === true
  )
}

/**
 * The invoice line that says which tier was paid for: a plan's line for a whole period
 * before a proration, never a credit (the unused time of the plan left, which comes first
 * on the invoice of an upgrade).
 */
function tierLine(
  inv: Obj,
  ctx: EventContext,
): { tier: string; end: number | null; amount: number | null } | null {
  let found: { tier: string; end: number | null; amount: number | null } | null = null
  for (const line of list(inv['lines'])) {
    const pricing = obj(obj(line['pricing'])?.['price_details'])
    const price = idOf(pricing?.['price']) ?? idOf(line['price'])
    const tier = price ? ctx.priceTiers.get(price) : undefined
    const amount = num(line['amount'])
    if (!tier || (amount !== null && amount < 0)) continue
    const candidate = { tier, end: num(obj(line['period'])?.['end']), amount }
    if (!isProration(line)) return candidate
    found ??= candidate
  }
  return found
}
