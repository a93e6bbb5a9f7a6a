/**
 * @module tollbooth/portal/daily-usage
 *
 * `GET <base>/api/usage/daily?month=YYYY-MM&groupBy=category|keyCategory`: the signed-in
 * account's usage per UTC day of a billing period, split by usage category (the default) or
 * by the category of the keys that made the requests, for the portal's chart; `category=` and
 * `keyCategory=` count only the requests of one category, as `GET /usage` does. `categories`
 * and each day's `byCategory` hold the categories of the kind `groupBy` names. The management API answers a
 * whole period (`GET /usage`); the days come from the same storage call it uses,
 * `tb.usage.summarize(accountId, from, to, filter)`, once per day up to today (at most 31, a few at a
 * time), which flushes the usage out-box first so the last requests are counted and answers
 * 503 `storage_unavailable` when the store does not answer within `storageTimeoutMs`.
 */

import type { Hono } from 'hono'
import {
  emptySummary,
  filterOf,
  parseMonth,
  periodOf,
  type Tollbooth,
  type UsageFilter,
  type UsageSummary,
  usageQuerySchema,
} from '../../src/internal.js'
import { json, parse, queryOf, refusal } from '../management/http.js'
import type { Identify } from './session-routes.js'

const DAY = 86_400_000
/** Days summarized at once: enough to be quick, few enough not to drain a connection pool. */
const PARALLEL = 8

/** One day of the series. Credits and requests, in total and per category (of `groupBy`). */
export interface UsageDay {
  /** `YYYY-MM-DD` (UTC). */
  date: string
  requests: number
  credits: number
  byCategory: Record<string, { requests: number; credits: number }>
}

const empty: UsageSummary = emptySummary()

/** Summaries of `[from, to)` for each `from`, at most {@link PARALLEL} in flight. */
async function summarizeDays(
  tb: Tollbooth,
  accountId: string,
  starts: number[],
  filter: UsageFilter,
): Promise<UsageSummary[]> {
  const out: UsageSummary[] = []
  for (let i = 0; i < starts.length; i += PARALLEL) {
    const batch = starts.slice(i, i + PARALLEL)
    out.push(
      ...(await Promise.all(batch.map((t) => tb.usage.summarize(accountId, t, t + DAY, filter)))),
    )
  }
  return out
}

/** Registers `GET /api/usage/daily` on `app`. */
export function dailyUsageRoute(app: Hono, tb: Tollbooth, identify: Identify): void {
  const now = () => (tb.options.clock ? tb.options.clock.now() : Date.now())

  app.get('/api/usage/daily', async (c) => {
    const who = await identify(c)
    if (!who) return refusal('unauthorized', 'Not signed in; sign in to the portal')
    if ('unavailable' in who) return refusal('session_keys_unavailable', who.unavailable)
    const q = parse(usageQuerySchema, queryOf(c), 'query')
    const t = now()
    const period = q.month ? parseMonth(q.month)! : periodOf(t)
    const starts: number[] = []
    for (let d = period.start; d < period.end; d += DAY) starts.push(d)
    const past = starts.filter((d) => d <= t)
    const filter = filterOf(q)
    const sums = await summarizeDays(tb, who.accountId, past, filter)
    const categories = new Set<string>()
    const days: UsageDay[] = starts.map((d, i) => {
      const s = sums[i] ?? empty
      const entries = Object.entries(q.groupBy === 'keyCategory' ? s.byKeyCategory : s.byCategory)
      for (const [cat] of entries) categories.add(cat)
      // fromEntries defines own properties: a category named `__proto__` stays a category.
      const byCategory: UsageDay['byCategory'] = Object.fromEntries(
        entries.map(([cat, v]) => [cat, { requests: v.requests, credits: v.units }]),
      )
      return {
        date: new Date(d).toISOString().slice(0, 10),
        requests: s.requests,
        credits: s.units,
        byCategory,
      }
    })
    return json({
      period: {
        id: period.id,
        start: new Date(period.start).toISOString(),
        end: new Date(period.end).toISOString(),
      },
      groupBy: q.groupBy,
      categories: [...categories].sort(),
      days,
    })
  })
}
