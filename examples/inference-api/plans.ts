/**
 * @module examples/inference-api/plans
 *
 * How the two kinds of consumption keys of `004_8209d5d9c76b9400.txt` map onto tollbooth:
 *
 * - **Credit keys** belong to the user's account, on the `credits` plan: no monthly credits,
 *   only the prepaid balance (top-ups), which all credit keys share. Each key has 60 rpm by
 *   default, an optional `maxBudget` (a per-key credit budget), an optional tpm (a token-rate
 *   limit counted from the tokens each response reports) and optional rolling quotas.
 * - **Pool keys** belong to a subscription: reserving time blocks on a pool creates a
 *   subscription account (`<user>:sub_…`) on the `unlimited` plan, so its keys never touch the
 *   user's balance. Each pool key is limited to the subscription's time blocks and to one
 *   request in flight, and expires with the subscription.
 *
 * One credit is one token of the stand-in model; {@link CREDITS_PER_USD} converts the
 * dollar amounts of the API (top-ups, `maxBudget`, balances).
 */

import {
  type AccountView,
  type KeyCreationRule,
  type KeyLimits,
  type TimeBlock,
  type Tollbooth,
  TollboothError,
} from '../../src/index.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR

/** $10 per million tokens. */
export const CREDITS_PER_USD = 100_000

/**
 * The most tokens an answer may have when a request sets no `max_tokens`: the answer is cut
 * there, so a request's estimate (its prompt plus this) bounds what it can use.
 */
export const DEFAULT_MAX_TOKENS = 256

export const PLANS = {
  credits: {
    display: 'Credits (prepaid)',
    monthlyCredits: 0,
    // Plan-level caps across all of an account's keys (`002_2f2523503321cfc2.txt`): bursts of
    // 10 a second, 120 a minute sustained. The per-minute cap is below 60 times the per-second
    // one, so each can be the one that refuses (10/s and 600/min refill alike: 600/min would
    // never fire).
    rateLimits: [
      { limit: 10, windowMs: 1_000 },
      { limit: 120, windowMs: 60_000 },
    ],
  },
  unlimited: { display: 'Unlimited (pool subscription)', monthlyCredits: null },
}

/** The pools: a daily window in UTC hours, reserved for each day of a subscription. */
export const POOLS: Record<string, { name: string; fromHour: number; toHour: number }> = {
  'pool-night': { name: 'Night (00:00-08:00 UTC)', fromHour: 0, toHour: 8 },
  'pool-day': { name: 'Day (08:00-16:00 UTC)', fromHour: 8, toHour: 16 },
  'pool-evening': { name: 'Evening (16:00-24:00 UTC)', fromHour: 16, toHour: 24 },
}

/**
 * The pool `id` names, or undefined. An own-property lookup: `POOLS['constructor']` is
 * `Object`, and a subscription to it would get no time blocks (a key valid around the clock).
 */
export function poolOf(id: string): (typeof POOLS)[string] | undefined {
  return Object.hasOwn(POOLS, id) ? POOLS[id] : undefined
}

/** A pool subscription, kept in the user's account metadata. */
export interface Subscription {
  id: string
  poolId: string
  /** The subscription's own account, owner of its pool keys. */
  accountId: string
  createdAt: number
  expiresAt: number
  blocks: TimeBlock[]
  /** Sold through the billing provider and not paid yet (no blocks, no keys). */
  pending?: boolean
}

/** The pool's daily windows from `from` until `until` (ms). */
export function blocksUntil(poolId: string, from: number, until: number): TimeBlock[] {
  const days = Math.ceil((until - from) / DAY)
  return blocksFor(poolId, from, days).filter((b) => b.start < until)
}

/** The user whose subscription account is `accountId` (`<user>:sub_…`), or null. */
export function ownerOf(accountId: string): string | null {
  const m = /^(.+):sub_[A-Za-z0-9]+$/.exec(accountId)
  return m ? m[1]! : null
}

/** Stores `sub` in its user's account metadata, replacing the record of the same id. */
async function saveSubscription(tb: Tollbooth, userId: string, sub: Subscription): Promise<void> {
  const user = await tb.accounts.get(userId)
  const list = (user.metadata['subscriptions'] as Subscription[] | undefined) ?? []
  const next = list.some((s) => s.id === sub.id)
    ? list.map((s) => (s.id === sub.id ? sub : s))
    : [...list, sub]
  await tb.accounts.patch(userId, { metadata: { ...user.metadata, subscriptions: next } })
}

/**
 * A pool subscription sold through the billing provider, before it is paid: its account
 * exists but holds no tier, so no key can be minted for it until the provider says it was paid.
 */
export async function reserve(
  tb: Tollbooth,
  userId: string,
  poolId: string,
  now: number,
): Promise<Subscription> {
  const id = `sub_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`
  const sub: Subscription = {
    id,
    poolId,
    accountId: `${userId}:${id}`,
    createdAt: now,
    expiresAt: now,
    blocks: [],
    pending: true,
  }
  await saveSubscription(tb, userId, sub)
  return sub
}

/**
 * The provider says the subscription of `accountId` is paid until `expiresAt`: the first
 * payment activates it, each renewal extends it. Its time blocks run to the new end, and each
 * of its pool keys expires then too. Idempotent: the same period applied twice changes nothing.
 *
 * @returns the subscription, or null when `accountId` is no subscription of this example
 */
export async function renew(
  tb: Tollbooth,
  accountId: string,
  expiresAt: number,
  now: number,
): Promise<Subscription | null> {
  const userId = ownerOf(accountId)
  if (!userId) return null
  const sub = subscriptionsOf(await tb.accounts.get(userId)).find((s) => s.accountId === accountId)
  if (!sub) return null
  const next: Subscription = {
    id: sub.id,
    poolId: sub.poolId,
    accountId: sub.accountId,
    createdAt: sub.createdAt,
    expiresAt,
    blocks: blocksUntil(sub.poolId, now, expiresAt),
  }
  await saveSubscription(tb, userId, next)
  let cursor: string | null = null
  do {
    const page = await tb.keys.list(accountId, { limit: 100, cursor })
    for (const k of page.data)
      await tb.keys.update(k.id, { expiresAt, limits: { ...k.limits, ...poolLimits(next) } })
    cursor = page.nextCursor
  } while (cursor)
  return next
}

/** The pool's window on each of `days` days from `now` (today's if it has not ended). */
export function blocksFor(poolId: string, now: number, days: number): TimeBlock[] {
  const pool = poolOf(poolId)
  if (!pool) throw new RangeError(`unknown pool "${poolId}"`)
  const today = Math.floor(now / DAY) * DAY
  const blocks: TimeBlock[] = []
  for (let d = 0; d <= days; d++) {
    const start = today + d * DAY + pool.fromHour * HOUR
    const end = today + d * DAY + pool.toHour * HOUR
    if (end > now && start < now + days * DAY) blocks.push({ start, end })
  }
  return blocks
}

/** The user's subscriptions, newest first. */
export function subscriptionsOf(account: AccountView): Subscription[] {
  const list = account.metadata['subscriptions']
  return Array.isArray(list) ? [...(list as Subscription[])].reverse() : []
}

/** Reserves the pool's time blocks for `days` days: a new subscription on the unlimited plan. */
export async function subscribe(
  tb: Tollbooth,
  userId: string,
  poolId: string,
  days: number,
  now: number,
): Promise<Subscription> {
  const id = `sub_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`
  const sub: Subscription = {
    id,
    poolId,
    accountId: `${userId}:${id}`,
    createdAt: now,
    expiresAt: now + days * DAY,
    blocks: blocksFor(poolId, now, days),
  }
  await tb.accounts.setTier(sub.accountId, 'unlimited', { expiresAt: sub.expiresAt })
  const user = await tb.accounts.get(userId)
  const previous = (user.metadata['subscriptions'] as Subscription[] | undefined) ?? []
  await tb.accounts.patch(userId, {
    metadata: { ...user.metadata, subscriptions: [...previous, sub] },
  })
  return sub
}

/** A credit key's requests per minute unless it is created with its own (`004`). */
export const CREDIT_KEY_RPM = 60

/** True for a subscription's own account (`<user>:sub_…`), the owner of its pool keys. */
const isSubscriptionAccount = (accountId: string) => /:sub_[A-Za-z0-9]+$/.test(accountId)

/**
 * The one place for the rules of a new consumption key, whatever creates it: the dashboard
 * API's `POST /api/keys/credit`, or the developer portal's `POST /portal/api/keys` (through
 * `tb.keys.addRule`, so the two cannot drift apart).
 *
 * - A key of a subscription's account is a pool key, `sk_pool_…`: its limits are set where it
 *   is minted.
 * - Any other consumption key is a credit key (`004`), `sk_live_…`: creating one needs a credit balance
 *   > 0 (402 otherwise); it gets {@link CREDIT_KEY_RPM} requests a minute unless it has a
 *   request rate limit of its own, and the category `production` unless it has one.
 */
export function consumptionKeyRule(tb: Tollbooth): KeyCreationRule {
  return async (draft) => {
    if (draft.kind !== 'consumption') return draft
    if (isSubscriptionAccount(draft.accountId))
      return { ...draft, prefix: 'sk_pool_', metadata: { ...draft.metadata, keyPlan: 'pool' } }
    const account = await tb.accounts.get(draft.accountId)
    if (!(account.credits.remaining > 0))
      throw new TollboothError(
        'insufficient_credits',
        402,
        'Insufficient credit balance: top up first',
      )
    const rates = draft.limits.rateLimits ?? []
    const rpm = rates.some((r) => r.unit !== 'tokens')
      ? []
      : [{ limit: CREDIT_KEY_RPM, windowMs: 60_000 }]
    return {
      ...draft,
      prefix: 'sk_live_',
      category: draft.category ?? 'production',
      metadata: { ...draft.metadata, keyPlan: 'credits' },
      limits: { ...draft.limits, rateLimits: [...rpm, ...rates] },
    }
  }
}

/** Limits of a credit key, as `POST /api/keys/credit` takes them ({@link consumptionKeyRule} adds the defaults). */
export function creditLimits(o: {
  rpm?: number | undefined
  tpm?: number | undefined
  maxBudget?: number | undefined
  quotas?: KeyLimits['quotas'] | undefined
}): KeyLimits {
  const rates = [
    ...(o.rpm ? [{ limit: o.rpm, windowMs: 60_000 }] : []),
    ...(o.tpm ? [{ limit: o.tpm, windowMs: 60_000, unit: 'tokens' as const }] : []),
  ]
  return {
    ...(rates.length > 0 ? { rateLimits: rates } : {}),
    ...(o.maxBudget !== undefined ? { budget: Math.round(o.maxBudget * CREDITS_PER_USD) } : {}),
    ...(o.quotas ? { quotas: o.quotas } : {}),
  }
}

/** Limits of a pool key: its subscription's blocks, one request at a time. */
export function poolLimits(sub: Subscription): KeyLimits {
  return { timeBlocks: sub.blocks, concurrency: 1 }
}

/** Dollars, rounded to the cent's hundredth. */
export const usd = (credits: number) => Math.round((credits / CREDITS_PER_USD) * 10_000) / 10_000
