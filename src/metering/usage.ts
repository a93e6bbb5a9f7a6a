/**
 * @module metering/usage
 *
 * `tb.usage`: an account's usage for the current period or a past month (credits used,
 * limit, remaining; breakdown by category; request count; reset date), and a key's request
 * log. Both shapes of the seeds can be answered from {@link UsageReport}.
 */

import { z } from 'zod'
import type { Context } from '../context.js'
import { InvalidRequestError, NotFoundError } from '../errors.js'
import { text, textProblem } from '../input.js'
import { parseInput } from '../options.js'
import type { UsageEvent } from '../storage/types.js'
import { checkAccountId } from './accounts.js'
import { parseMonth, periodOf } from './periods.js'

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
  })
  .strict()

export class UsageService {
  constructor(private readonly ctx: Context) {}

  /** @param options.month `YYYY-MM`; the current period when omitted */
  async get(accountId: string, options: { month?: string } = {}): Promise<UsageReport> {
    checkAccountId(accountId)
    const now = this.ctx.clock.now()
    let period = periodOf(now)
    if (options.month !== undefined) {
      const p = typeof options.month === 'string' ? parseMonth(options.month) : null
      if (!p)
        throw new InvalidRequestError('Invalid request: month: must be YYYY-MM', [
          { path: 'month', message: 'must be YYYY-MM' },
        ])
      period = p
    }
    await this.ctx.outbox.flush()
    const current = period.start === periodOf(now).start
    const [account, summary] = await Promise.all([
      this.ctx.accounts.get(accountId, period),
      this.ctx.storage.usage.summarize(accountId, period.start, period.end),
    ])
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
    const o = parseInput(logsSchema, options)
    const key =
      typeof keyId === 'string' && keyId.length <= 64 && textProblem(keyId) === null
        ? await this.ctx.storage.keys.get(keyId)
        : null
    if (!key || (scope.accountId !== undefined && key.accountId !== scope.accountId))
      throw new NotFoundError('API key not found')
    await this.ctx.outbox.flush()
    const page = await this.ctx.storage.usage.logs(keyId, o)
    return {
      data: page.data.map(({ accountId: _a, ...e }) => e),
      nextCursor: page.nextCursor,
      hasMore: page.nextCursor !== null,
    }
  }
}
