/**
 * @module metering/usage
 *
 * `tb.usage`: an account's usage for the current period or a past month (credits used,
 * limit, remaining; breakdown by usage category or by the category of the keys that made the
 * requests, optionally filtered by either; request count; reset date), and a key's request
 * log. Both shapes of the seeds can be answered from {@link UsageReport}. Each of these reads
 * is bounded by `storageTimeoutMs` as every call of the instance off the request path
 * (`bounded-calls`): a store that hangs or fails makes it reject with `StorageUnavailableError`
 * (503), which the management API and the portal answer as such.
 */

import { z } from 'zod'
import type { Context } from '../context.js'
import { NotFoundError } from '../errors.js'
import { categoryText, pageSize, text, textProblem } from '../input.js'
import { roundAmount } from '../limits/amount.js'
import { parseInput, parseOptions } from '../options.js'
import type { UsageEvent, UsageFilter, UsageSummary } from '../storage/types.js'
import { accountScope, checkAccountId, type PeriodCredits } from './accounts.js'
import { monthSchema, periodOf, periodOfMonth } from './periods.js'

/** What a usage breakdown is keyed by: the request's usage category or its key's category. */
export type UsageGroupBy = 'category' | 'keyCategory'

export interface UsageReport {
  accountId: string
  /** `YYYY-MM`, start and end (exclusive, = the reset date) of the period. */
  period: { id: string; start: number; end: number }
  /**
   * The account's credits of the period: all its requests, whatever the filter. A past
   * period's are as its rollover closed it ({@link PeriodCredits}).
   */
  credits: PeriodCredits
  /** What `breakdown` and `requests` are keyed by. */
  groupBy: UsageGroupBy
  /** The filter `breakdown`, `requests` and `requestCount` were counted with. */
  filter: { category: string | null; keyCategory: string | null }
  /** Credits charged per category (of the kind `groupBy` names). */
  breakdown: Record<string, number>
  /** Requests per category (of the kind `groupBy` names). */
  requests: Record<string, number>
  requestCount: number
  resetDate: number
}

/**
 * A category to count only the requests of: 1-64 characters after trimming, valid Unicode
 * without NUL, as a key's category is given (`keys/fields.ts`). Shared by `tb.usage`, the
 * management API and the portal, so all three refuse the same values with the same message.
 */
export const usageFilterValue = categoryText

/** What a breakdown is keyed by; `category` when omitted. */
export const usageGroupBySchema = z
  .enum(['category', 'keyCategory'], { message: "must be 'category' or 'keyCategory'" })
  .default('category')

const filterSchema = z
  .object({ category: usageFilterValue.optional(), keyCategory: usageFilterValue.optional() })
  .strict()

/**
 * A usage report's options, as `tb.usage.get`, `GET /usage` and the portal's daily series take
 * them: a month, what the breakdown is keyed by (`category`, the requests' usage category, or
 * `keyCategory`, the category of the keys that made them), and the category of either kind to
 * count only the requests of.
 */
export const usageQuerySchema = z
  .object({
    month: monthSchema.optional(),
    groupBy: usageGroupBySchema,
    category: usageFilterValue.optional(),
    keyCategory: usageFilterValue.optional(),
  })
  .strict()

/** The filter a store is given: only the fields set. */
export function filterOf(f: { category?: string | undefined; keyCategory?: string | undefined }) {
  const out: UsageFilter = {}
  if (f.category !== undefined) out.category = f.category
  if (f.keyCategory !== undefined) out.keyCategory = f.keyCategory
  return out
}

/** One request as the log shows it: no secret, no provider key. */
export type LogEntry = Omit<UsageEvent, 'accountId'>

const logsSchema = z
  .object({
    limit: pageSize.default(20),
    cursor: text(z.string().max(300)).nullable().optional(),
    /** Only the requests of this usage category. */
    category: categoryText.optional(),
  })
  .strict()

/** Store pages read at most for one filtered page of a log. */
const MAX_FILTERED_READS = 50

export class UsageService {
  constructor(private readonly ctx: Context) {}

  /**
   * An account's admitted requests and credits in `[from, to)` (ms), by usage category and by
   * key category, after the usage out-box is flushed. The stores answer it from hourly totals
   * (`O(category pairs × hours)`), so it is cheap for any range on hour boundaries.
   * @param [filter.category] only the requests of this usage category (`uncategorized`: none)
   * @param [filter.keyCategory] only the requests of keys of this category (`uncategorized`:
   *   keys without one, and requests recorded before key categories were kept)
   * @throws {InvalidRequestError} (400) naming a bad filter field
   * @throws {StorageUnavailableError} (503) when the store does not answer within `storageTimeoutMs`
   */
  async summarize(
    accountId: string,
    from: number,
    to: number,
    filter: UsageFilter = {},
  ): Promise<UsageSummary> {
    checkAccountId(accountId)
    const f = filterOf(parseInput(filterSchema, filter))
    await this.ctx.outbox.flush()
    return this.ctx.storage.usage.summarize(accountId, from, to, f)
  }

  /**
   * An account's usage of a billing period.
   * @param [options.month] `YYYY-MM`; the current period when omitted
   * @param [options.groupBy='category'] `breakdown` and `requests` by the requests' usage
   *   category, or by `keyCategory`, the category of the key that made each request (as it
   *   was then; `uncategorized` for keys without one and requests recorded before)
   * @param [options.category] count only the requests of this usage category
   * @param [options.keyCategory] count only the requests of keys of this category
   * @throws {InvalidRequestError} (400) naming a bad option (`month`, `groupBy`, …)
   */
  async get(
    accountId: string,
    options: {
      month?: string
      groupBy?: UsageGroupBy
      category?: string
      keyCategory?: string
    } = {},
  ): Promise<UsageReport> {
    checkAccountId(accountId)
    const o = parseInput(usageQuerySchema, options)
    const now = this.ctx.clock.now()
    const period = periodOfMonth(o.month, now)
    const filter = filterOf(o)
    await this.ctx.outbox.flush()
    const current = period.start === periodOf(now).start
    const filtered = filter.category !== undefined || filter.keyCategory !== undefined
    const [account, summary, all] = await Promise.all([
      this.ctx.accounts.statement(accountId, period),
      this.ctx.storage.usage.summarize(accountId, period.start, period.end, filter),
      // A past period's credits are its requests' units, all of them.
      filtered && !current
        ? this.ctx.storage.usage.summarize(accountId, period.start, period.end)
        : null,
    ])
    // A past period closed with its figures is as its rollover closed it; one closed before
    // they were kept (carryover null) counts its requests' units.
    const c = account.credits
    const used = current || c.carryover !== null ? c.used : (all ?? summary).units
    // fromEntries defines own properties: a category named `__proto__` stays a category.
    const groups = Object.entries(
      o.groupBy === 'keyCategory' ? summary.byKeyCategory : summary.byCategory,
    )
    const breakdown = Object.fromEntries(groups.map(([cat, v]) => [cat, v.units]))
    const requests = Object.fromEntries(groups.map(([cat, v]) => [cat, v.requests]))
    return {
      accountId,
      period,
      credits: {
        used,
        limit: c.limit,
        remaining: used === c.used ? c.remaining : Math.max(0, roundAmount(c.limit - used)),
        carryover: c.carryover,
        balance: c.balance,
      },
      groupBy: o.groupBy,
      filter: { category: filter.category ?? null, keyCategory: filter.keyCategory ?? null },
      breakdown,
      requests,
      requestCount: summary.requests,
      resetDate: period.end,
    }
  }

  /** A key's request log, newest first. `scope.accountId` makes another account's key a 404. */
  async logs(
    keyId: string,
    options: z.input<typeof logsSchema> = {},
    scope: { accountId?: string } = {},
  ): Promise<{ data: LogEntry[]; nextCursor: string | null; hasMore: boolean }> {
    const { category, ...o } = parseInput(logsSchema, options)
    parseOptions('tb.usage.logs', accountScope, scope, 'scope')
    const key =
      typeof keyId === 'string' && keyId.length <= 64 && textProblem(keyId) === null
        ? await this.ctx.storage.keys.get(keyId)
        : null
    if (!key || (scope.accountId !== undefined && key.accountId !== scope.accountId))
      throw new NotFoundError('API key not found')
    await this.ctx.outbox.flush()
    if (category === undefined) {
      const page = await this.ctx.storage.usage.logs(keyId, o)
      return {
        data: page.data.map(({ accountId: _a, ...e }) => e),
        nextCursor: page.nextCursor,
        hasMore: page.nextCursor !== null,
      }
    }
    // Filtered: store pages no larger than what is still missing, so the store's cursor
    // stays the next one.
    const data: LogEntry[] = []
    let cursor = o.cursor ?? null
    for (let reads = 0; reads < MAX_FILTERED_READS && data.length < o.limit; reads++) {
      const page = await this.ctx.storage.usage.logs(keyId, {
        limit: o.limit - data.length,
        cursor,
      })
      for (const { accountId: _a, ...e } of page.data) if (e.category === category) data.push(e)
      cursor = page.nextCursor
      if (cursor === null) break
    }
    return { data, nextCursor: cursor, hasMore: cursor !== null }
  }
}
