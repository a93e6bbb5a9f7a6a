/**
 * @module limits/admission
 *
 * Pipeline step 6: turns a key's limits, its account's plan and the route's cost into the
 * checks handed to one atomic `counters.consume`, and turns a refusal into its denial.
 *
 * A key's templates are compiled once per cache fill (counter names and windows fixed), so a
 * request only fills in its cost and hold id. Counter names start with `{<accountId>}` so on
 * Redis Cluster every counter of an account lives in one slot.
 */

import { DENIALS } from '../denials.js'
import type { Check, CheckResult, KeyRecord, RateLimit } from '../storage/types.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR

/** Rolling quota windows, each kept as 24 buckets: a refusal comes at most 1/24 window early. */
export const QUOTA_WINDOWS = {
  total: { windowMs: 0, bucketMs: 0 },
  daily: { windowMs: DAY, bucketMs: HOUR },
  weekly: { windowMs: 7 * DAY, bucketMs: 7 * HOUR },
  monthly: { windowMs: 30 * DAY, bucketMs: 30 * HOUR },
} as const

export type QuotaName = keyof typeof QUOTA_WINDOWS

/** What a check is, so a refusal maps to the right status and message. */
export type CheckRole = 'quota' | 'key-rate' | 'plan-rate' | 'concurrency' | 'credits' | 'budget'

/**
 * A check compiled once for a key or a plan, its per-request fields left open, with what
 * admission needs beside it in the same object: a request reads one object a limit (a
 * template holding its check was two, each a cache miss among a million keys, and 56 heap
 * bytes a limit more; bench/NOTES.md, session 25). A store it is passed to as a check sees
 * these fields too, and reads only a check's.
 */
export type CheckTemplate = Check & {
  role: CheckRole
  /**
   * A token-rate limit: the route's token estimate is counted at admission (or, with none,
   * room checked for) and trued-up to the reported count at settle.
   */
  tokens: boolean
  /** This check marked to be rebuilt when missing (`rebuild: {}`), made once (`authenticate`). */
  rebuilt?: Check
  /**
   * Where an in-process store last found this check's counter (`Place`): a template lives as
   * long as its key's cache entry, so a request reaches the counter's row without a lookup.
   */
  where: number
  /** The counter's stamp with `where` (`Place`). */
  stamp: number
}

/**
 * A counter's name, written flat. A template literal makes a rope of its parts (a V8 cons
 * string); used as a Map key it is flattened into a second string, and the rope stays in front
 * of it, 32 bytes more per counter for as long as its template or slot lives. `join` writes the
 * name flat at once (same text).
 */
export function counterName(...parts: Array<string | number>): string {
  return parts.join('')
}

/** `per-second`, `per-minute`, … for round windows; `per-<n>ms` otherwise. */
export function windowName(windowMs: number): string {
  switch (windowMs) {
    case 1000:
      return 'per-second'
    case 60_000:
      return 'per-minute'
    case HOUR:
      return 'per-hour'
    case DAY:
      return 'per-day'
    default:
      return windowMs % 1000 === 0 ? `per-${windowMs / 1000}s` : `per-${windowMs}ms`
  }
}

/**
 * The templates of rate limits (GCRA), numbered in order under `prefix`. A token limit, and
 * any with `exact` (its own, or `exact` for all of them), is marked exact: never leased
 * (a token limit is trued-up after the fact by negative adds; docs/leases.md).
 */
function rateTemplates(
  prefix: string,
  role: CheckRole,
  limits: ReadonlyArray<RateLimit>,
  exact: boolean,
): CheckTemplate[] {
  return limits.map((r, i) => {
    const tokens = r.unit === 'tokens'
    const t: CheckTemplate = {
      type: 'gcra',
      key: counterName(prefix, ':r', i, ':', r.limit, '/', r.windowMs, tokens ? 't' : ''),
      name: windowName(r.windowMs) + (tokens ? '-tokens' : ''),
      limit: r.limit,
      windowMs: r.windowMs,
      cost: tokens ? 0 : 1,
      role,
      tokens,
      where: -1,
      stamp: 0,
    }
    if (exact || tokens || r.exact === true) t.exact = true
    return t
  })
}

/** Compiles a key's own limits (quotas, rate limits, concurrency, budget). */
export function compileKeyLimits(key: KeyRecord): CheckTemplate[] {
  const out: CheckTemplate[] = []
  const p = `{${key.accountId}}:k:${key.id}`
  const exact = key.limits.exact === true
  const q = key.limits.quotas
  if (q) {
    for (const name of ['total', 'daily', 'weekly', 'monthly'] as const) {
      const limit = q[name]
      if (limit === undefined) continue
      const w = QUOTA_WINDOWS[name]
      out.push({
        type: 'window',
        key: counterName(p, ':q:', name),
        name,
        limit,
        windowMs: w.windowMs,
        bucketMs: w.bucketMs,
        cost: 1,
        ...(exact ? { exact: true as const } : {}),
        role: 'quota',
        tokens: false,
        where: -1,
        stamp: 0,
      })
    }
  }
  if (key.limits.rateLimits) out.push(...rateTemplates(p, 'key-rate', key.limits.rateLimits, exact))
  if (key.limits.concurrency !== undefined) {
    out.push({
      type: 'hold',
      key: counterName(p, ':c'),
      name: 'concurrency',
      limit: key.limits.concurrency,
      amount: 1,
      holdId: '',
      ttlMs: 0,
      // One unit per request in flight: always the store's (docs/leases.md).
      exact: true,
      role: 'concurrency',
      tokens: false,
      where: -1,
      stamp: 0,
    })
  }
  if (key.limits.budget !== undefined) {
    out.push({
      type: 'hold',
      key: counterName(p, ':b'),
      name: 'budget',
      limit: key.limits.budget,
      amount: 0,
      holdId: '',
      ttlMs: 0,
      ...(exact ? { exact: true as const } : {}),
      role: 'budget',
      tokens: false,
      where: -1,
      stamp: 0,
    })
  }
  // A copy of its length: grown by push, it kept room for 17 templates (120 bytes more for as
  // long as the key is cached).
  return out.slice()
}

/** Compiles a plan's account-wide rate limits. */
export function compilePlanLimits(
  accountId: string,
  tier: string,
  limits: ReadonlyArray<RateLimit>,
  exact = false,
): CheckTemplate[] {
  return rateTemplates(`{${accountId}}:p:${tier}`, 'plan-rate', limits, exact)
}

/** What a check is filled in with for one request (the pipeline's attempt has these). */
export interface CheckRequest {
  /** The hold id of this request's holds (its internal request id). */
  readonly internalId: string
  /** Credits held against a budget. */
  readonly estimate: number
  /** Tokens reserved against a token-rate limit (0: checked for room only). */
  readonly tokens: number
}

/** How long a request's holds live: a concurrency slot, a reservation of credits. */
export interface HoldTtls {
  readonly leaseTtlMs: number
  readonly reservationTtlMs: number
}

/** A filled-in check for this request. */
export function instantiate(t: CheckTemplate, r: CheckRequest, ttl: HoldTtls): Check {
  if (t.type === 'gcra') {
    if (!t.tokens || r.tokens <= 0) return t
    const { key, name, limit, windowMs } = t
    const g: Check = { type: 'gcra', key, name, limit, windowMs, cost: r.tokens }
    if (t.exact) g.exact = true
    return g
  }
  if (t.type !== 'hold') return t
  const concurrency = t.role === 'concurrency'
  const h: Check = {
    type: 'hold',
    key: t.key,
    name: t.name,
    limit: t.limit,
    amount: concurrency ? 1 : r.estimate,
    holdId: r.internalId,
    ttlMs: concurrency ? ttl.leaseTtlMs : ttl.reservationTtlMs,
  }
  if (t.exact) h.exact = true
  return h
}

/** How a refused check is answered. */
export interface Refusal {
  status: number
  code: 'quota_exceeded' | 'rate_limited' | 'concurrency_limited' | 'insufficient_credits'
  message: string
  retryAfterMs: number
}

/**
 * The denial for the first refused check. Quotas name themselves as in
 * `002_2f2523503321cfc2.txt` ("Rate limit exceeded: quota daily"); plan limits say
 * "exceeded the per-minute rate limit on your subscription".
 */
export function refusal(t: CheckTemplate, r: CheckResult, quotaStatus: number): Refusal {
  const name = t.name
  switch (t.role) {
    case 'quota':
      return {
        status: quotaStatus,
        code: 'quota_exceeded',
        message: `Rate limit exceeded: quota ${name}`,
        retryAfterMs: r.retryAfterMs,
      }
    case 'key-rate':
      return {
        status: DENIALS.rate_limited.status,
        code: 'rate_limited',
        message: `Rate limit exceeded: ${name} rate limit of this key`,
        retryAfterMs: r.retryAfterMs,
      }
    case 'plan-rate':
      return {
        status: DENIALS.rate_limited.status,
        code: 'rate_limited',
        message: `exceeded the ${name} rate limit on your subscription`,
        retryAfterMs: r.retryAfterMs,
      }
    case 'concurrency':
      return {
        status: DENIALS.concurrency_limited.status,
        code: 'concurrency_limited',
        message: `Too many concurrent requests: at most ${r.limit} in flight for this key`,
        retryAfterMs: 1000,
      }
    case 'credits':
      return {
        status: DENIALS.insufficient_credits.status,
        code: 'insufficient_credits',
        message: 'Insufficient credits',
        retryAfterMs: Infinity,
      }
    case 'budget':
      return {
        status: DENIALS.insufficient_credits.status,
        code: 'insufficient_credits',
        message: 'Insufficient credits: key budget exhausted',
        retryAfterMs: Infinity,
      }
  }
}

/**
 * Which refused check answers a refused admission: the one whose wait is longest (the first
 * on a tie), so that `Retry-After` is a time the request can pass, not one that only earns
 * the next refusal (a plan's per-second limit and a spent daily quota: the quota answers).
 *
 * @returns the index into `results`, or -1 when every check passed
 */
export function decidingRefusal(
  templates: ReadonlyArray<CheckTemplate>,
  results: ReadonlyArray<CheckResult>,
  quotaStatus: number,
): number {
  let best = -1
  let wait = -1
  for (let i = 0; i < results.length; i++) {
    const r = results[i]!
    if (r.allowed) continue
    const w = refusal(templates[i]!, r, quotaStatus).retryAfterMs
    if (w > wait) {
      best = i
      wait = w
    }
  }
  return best
}
