/**
 * @module metering/usage
 *
 * `tb.usage`: an account's usage for the current period or a past month (credits used,
 * limit, remaining; breakdown by category; request count; reset date), and a key's request
 * log. Both shapes of the seeds can be answered from {@link UsageReport}. Every storage step
 * of these reads is bounded by `storageTimeoutMs`: a store that hangs or fails makes them
 * reject with `StorageUnavailableError` (503), which the management API and the portal answer
 * as such.
 */

import { z } from 'zod'
import type { Context } from '../context.js'
import { isTollboothError, NotFoundError, StorageUnavailableError } from '../errors.js'
import { text, textProblem } from '../input.js'
import { parseInput } from '../options.js'
import type { UsageEvent, UsageSummary } from '../storage/types.js'
import { checkAccountId } from './accounts.js'
import { periodOf, periodOfMonth } from './periods.js'

export interface UsageReport {
  accountId: string
  /** `YYYY-MM`, start and end (exclusive, = the reset date) of the period. */
  period: { id: string; start: number; end: number }
  credits: { used: number; limit: number; remaining: number }
  /** Credits charged per category. */
  breakdown: Record<string, number>
  /** Requests per category. */
  requests: Record<string, number>
  requestCount: number
  resetDate: number
}

/** One request as the log shows it: no secret, no provider key. */
export type LogEntry = Omit<UsageEvent, 'accountId'>

const logsSchema = z
  .object({
    limit: z.number().int().min(1).max(100).default(20),
    cursor: text(z.string().max(300)).nullable().optional(),
    /** Only the requests of this usage category. */
    category: text(z.string().trim().min(1).max(64)).optional(),
  })
  .strict()

/** Store pages read at most for one filtered page of a log. */
const MAX_FILTERED_READS = 50

/**
 * A storage step of a usage read, bounded by `ms`: a store that does not answer in time, or
 * fails, becomes a {@link StorageUnavailableError} (503 `storage_unavailable`), never a hang or
 * a 500. tollbooth's own errors (a bad cursor, say) pass through as they are.
 */
async function bounded<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new StorageUnavailableError(`Storage did not answer within ${ms} ms`)),
          ms,
        )
      }),
    ])
  } catch (err) {
    if (isTollboothError(err)) throw err
    throw new StorageUnavailableError('Storage unavailable', { cause: err })
  } finally {
    clearTimeout(timer)
  }
}

export class UsageService {
  constructor(private readonly ctx: Context) {}

  /** Each storage step of a usage read is bounded by `storageTimeoutMs`. */
  private bounded<T>(p: Promise<T>): Promise<T> {
    return bounded(this.ctx.options.storageTimeoutMs, p)
  }

  /**
   * An account's admitted requests and credits in `[from, to)` (ms), by category, after the
   * usage out-box is flushed. The stores answer it from hourly totals (`O(categories × hours)`),
   * so it is cheap for any range on hour boundaries.
   * @throws {StorageUnavailableError} (503) when the store does not answer within `storageTimeoutMs`
   */
  async summarize(accountId: string, from: number, to: number): Promise<UsageSummary> {
    checkAccountId(accountId)
    await this.bounded(this.ctx.outbox.flush())
    return this.bounded(this.ctx.storage.usage.summarize(accountId, from, to))
  }

  /** @param options.month `YYYY-MM`; the current period when omitted */
  async get(accountId: string, options: { month?: string } = {}): Promise<UsageReport> {
    checkAccountId(accountId)
    const now = this.ctx.clock.now()
    const period = periodOfMonth(options.month, now)
    await this.bounded(this.ctx.outbox.flush())
    const current = period.start === periodOf(now).start
    const [account, summary] = await this.bounded(
      Promise.all([
        this.ctx.accounts.get(accountId, period),
        this.ctx.storage.usage.summarize(accountId, period.start, period.end),
      ]),
    )
    const used = current ? account.credits.used : summary.units
    const limit = account.credits.limit
    // fromEntries defines own properties: a category named `__proto__` stays a category.
    const categories = Object.entries(summary.byCategory)
    const breakdown = Object.fromEntries(categories.map(([cat, v]) => [cat, v.units]))
    const requests = Object.fromEntries(categories.map(([cat, v]) => [cat, v.requests]))
    return {
      accountId,
      period,
      credits: { used, limit, remaining: Math.max(0, limit - used) },
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
    const key =
      typeof keyId === 'string' && keyId.length <= 64 && textProblem(keyId) === null
        ? await this.bounded(this.ctx.storage.keys.get(keyId))
        : null
    if (!key || (scope.accountId !== undefined && key.accountId !== scope.accountId))
      throw new NotFoundError('API key not found')
    await this.bounded(this.ctx.outbox.flush())
    if (category === undefined) {
      const page = await this.bounded(this.ctx.storage.usage.logs(keyId, o))
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
      const page = await this.bounded(
        this.ctx.storage.usage.logs(keyId, { limit: o.limit - data.length, cursor }),
      )
      for (const { accountId: _a, ...e } of page.data) if (e.category === category) data.push(e)
      cursor = page.nextCursor
      if (cursor === null) break
    }
    return { data, nextCursor: cursor, hasMore: cursor !== null }
  }
}
