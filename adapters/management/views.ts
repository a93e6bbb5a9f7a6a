/**
 * @module tollbooth/management/views
 *
 * The JSON shapes of the management API, as the seeds show them: times as ISO 8601 strings,
 * a key's display `prefix` (never its secret or hash), and `null` where a figure is unlimited
 * (JSON has no Infinity). Pure functions from the core's values to plain objects.
 */

import type {
  AccountView,
  KeyLimits,
  KeyView,
  LogEntry,
  ProviderKeyView,
  UsageReport,
} from '../../src/internal.js'

/** Shown beside a plaintext key, the one time it is shown. */
export const SAVE_KEY_MESSAGE = 'Save this key - it will not be shown again.'

/** An ISO 8601 string for a time in ms, or null. */
export const iso = (ms: number | null): string | null =>
  ms === null ? null : new Date(ms).toISOString()

/** A number, or null when it is not finite (an unlimited credit figure). */
const finite = (n: number): number | null => (Number.isFinite(n) ? n : null)

/** Key limits with time blocks as ISO strings (the rest are counts and `…Ms` durations). */
export function limitsView(limits: KeyLimits): Record<string, unknown> {
  if (!limits.timeBlocks) return { ...limits }
  return {
    ...limits,
    timeBlocks: limits.timeBlocks.map((b) => ({ start: iso(b.start), end: iso(b.end) })),
  }
}

/** A key as listed and fetched: its display prefix, never its secret. */
export function keyView(k: KeyView): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    prefix: `${k.start}...`,
    kind: k.kind,
    category: k.category,
    scopes: k.scopes,
    metadata: k.metadata,
    active: k.active,
    createdAt: iso(k.createdAt),
    expiresAt: iso(k.expiresAt),
    lastUsedAt: iso(k.lastUsedAt),
    revokedAt: iso(k.revokedAt),
    limits: limitsView(k.limits),
  }
}

/** The answer to create and rotate: the plaintext, once. */
export function createdView(key: string, k: KeyView): Record<string, unknown> {
  return {
    id: k.id,
    key,
    name: k.name,
    prefix: `${k.start}...`,
    createdAt: iso(k.createdAt),
    expiresAt: iso(k.expiresAt),
    message: SAVE_KEY_MESSAGE,
  }
}

/**
 * One request of a key's log, with the key's alias (its name) and category (`002`: the alias
 * "shows up in logs"); `category` stays the request's usage category. `keyCategory` is the
 * key's category now, like the alias, though each event also records the one it had when the
 * request was made (what `GET /usage?groupBy=keyCategory` counts by).
 */
export function logView(e: LogEntry, key: KeyView): Record<string, unknown> {
  return { ...e, time: iso(e.time), alias: key.name, keyCategory: key.category }
}

/**
 * `GET /usage`: credits (used, limit, remaining, and the carryover and prepaid balance the limit
 * holds beyond the plan's credits: a past month's as it was closed, null when not kept),
 * breakdown by category (of the kind `groupBy` names), request count, reset date, period, and
 * the grouping and filter the figures were counted with.
 */
export function usageView(u: UsageReport): Record<string, unknown> {
  return {
    credits: {
      used: u.credits.used,
      limit: finite(u.credits.limit),
      remaining: finite(u.credits.limit) === null ? null : u.credits.remaining,
      carryover: u.credits.carryover,
      balance: u.credits.balance,
    },
    groupBy: u.groupBy,
    filter: u.filter,
    breakdown: u.breakdown,
    requests: u.requests,
    requestCount: u.requestCount,
    resetDate: iso(u.resetDate),
    period: { id: u.period.id, start: iso(u.period.start), end: iso(u.period.end) },
  }
}

/** `GET /billing/subscription`, answered from the account. */
export function subscriptionView(a: AccountView): Record<string, unknown> {
  const limit = finite(a.credits.limit)
  return {
    tier: a.tier,
    tierDisplay: a.tierDisplay,
    credits: {
      used: a.credits.used,
      limit,
      remaining: limit === null ? null : a.credits.remaining,
    },
    plan: a.plan
      ? {
          monthlyCredits: a.plan.monthlyCredits,
          overageRate: a.plan.overageRate,
          carryoverMonths: a.plan.carryoverMonths,
        }
      : null,
    balance: a.balance,
    stripeCustomerId: a.billingCustomerId,
    tierExpiresAt: iso(a.tierExpiresAt),
  }
}

/** A stored provider key: masked. */
export function providerKeyView(p: ProviderKeyView): Record<string, unknown> {
  return {
    provider: p.provider,
    masked: p.masked,
    createdAt: iso(p.createdAt),
    verifiedAt: iso(p.verifiedAt),
  }
}
