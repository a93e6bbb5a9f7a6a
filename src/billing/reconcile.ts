/**
 * @module billing/reconcile
 *
 * Overage reconciliation: for one account and one period, the overage tollbooth recorded
 * (`tb.storage.usage`, the source of truth) against what the meter out-box delivered to the
 * billing provider (its delivered markers). `drift` is 0 when every recorded unit reached the
 * provider; otherwise `missing` lists what did not, and `redeliver` queues it again (a
 * process that died with a full queue, an account that had no billing customer yet). Safe to
 * run at any time and as often as wanted: delivery stays once per event.
 *
 * Cost: one pass over the account's request logs of the period (newest first, stopping at
 * the period start) and one counter read per event with overage. Run it from a scheduled job,
 * e.g. daily and once after each period closes, within the log retention.
 */

import { z } from 'zod'
import { roundAmount } from '../limits/amount.js'
import { checkAccountId } from '../metering/accounts.js'
import { monthSchema, type Period, periodOfMonth } from '../metering/periods.js'
import { parseInput } from '../options.js'
import type { UsageEvent } from '../storage/types.js'
import type { Tollbooth } from '../tollbooth.js'
import type { MeterOutbox } from './meter-outbox.js'

/** Events and overage units. */
export interface OverageTotals {
  events: number
  overage: number
}

export interface OverageReconciliation {
  accountId: string
  period: Period
  /** Overage recorded by tollbooth in the period. */
  recorded: OverageTotals
  /** Of it, delivered to the provider. */
  delivered: OverageTotals
  /** Of it, queued in this process and not yet delivered. */
  pending: OverageTotals
  /** Recorded, neither delivered nor queued; `ids` lists the first 100 event ids. */
  missing: OverageTotals & { ids: string[] }
  /** `recorded.overage - delivered.overage`: 0 when the provider has everything. */
  drift: number
  /** Events queued again by `redeliver`. */
  redelivered: number
}

/** An account's events with overage > 0 in `period`, across all its keys (revoked included). */
export async function overageEvents(
  tb: Tollbooth,
  accountId: string,
  period: Period,
): Promise<UsageEvent[]> {
  const out: UsageEvent[] = []
  let keyCursor: string | null = null
  do {
    const keys = await tb.storage.keys.list(accountId, {
      limit: 100,
      cursor: keyCursor,
      includeRevoked: true,
    })
    for (const key of keys.data) {
      let cursor: string | null = null
      scan: do {
        const page = await tb.storage.usage.logs(key.id, { limit: 100, cursor })
        for (const e of page.data) {
          if (e.time < period.start) break scan
          if (e.time < period.end && e.overage > 0 && e.accountId === accountId) out.push(e)
        }
        cursor = page.nextCursor
      } while (cursor)
    }
    keyCursor = keys.nextCursor
  } while (keyCursor)
  return out
}

/**
 * The options of {@link reconcileOverage}, strict: `redeliver` sends overage to Stripe again,
 * so a `'false'` or a misspelt name is refused, never taken as true or left unread.
 */
const reconcileOptions = z
  .object({ month: monthSchema.optional(), redeliver: z.boolean().optional() })
  .strict()

/**
 * Reconciles one account's overage for the period `month` (`YYYY-MM`; the current one by
 * default). Flushes tollbooth's usage queue first, so the figures include every settled
 * request.
 *
 * @param [options.redeliver=false] queue the missing events in `outbox` again
 * @throws {InvalidRequestError} for a bad account id, month or option
 */
export async function reconcileOverage(
  tb: Tollbooth,
  outbox: MeterOutbox,
  accountId: string,
  options: { month?: string; redeliver?: boolean } = {},
): Promise<OverageReconciliation> {
  checkAccountId(accountId)
  const o = parseInput(reconcileOptions, options)
  const period = periodOfMonth(o.month, tb.options.clock?.now() ?? Date.now())
  await tb.flush()
  const { result, lost } = await reconcilePeriod(tb, outbox, accountId, period)
  if (o.redeliver && lost.length > 0) {
    outbox.enqueue(lost)
    result.redelivered = lost.length
  }
  return result
}

/**
 * The figures of {@link reconcileOverage} for any `period` (usage as stored: no flush), and
 * the events neither delivered nor queued in `outbox`, oldest first.
 */
export async function reconcilePeriod(
  tb: Tollbooth,
  outbox: MeterOutbox,
  accountId: string,
  period: Period,
): Promise<{ result: OverageReconciliation; lost: UsageEvent[] }> {
  const events = await overageEvents(tb, accountId, period)
  const zero = (): OverageTotals => ({ events: 0, overage: 0 })
  const r: OverageReconciliation = {
    accountId,
    period,
    recorded: zero(),
    delivered: zero(),
    pending: zero(),
    missing: { ...zero(), ids: [] },
    drift: 0,
    redelivered: 0,
  }
  const add = (t: OverageTotals, e: UsageEvent) => {
    t.events++
    t.overage = roundAmount(t.overage + e.overage)
  }
  const lost: UsageEvent[] = []
  let next = 0
  const worker = async () => {
    while (next < events.length) {
      const e = events[next++]!
      add(r.recorded, e)
      if (await outbox.isDelivered(e)) add(r.delivered, e)
      else if (outbox.has(e.id)) add(r.pending, e)
      else {
        add(r.missing, e)
        lost.push(e)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(8, events.length) }, worker))
  lost.sort((a, b) => a.time - b.time)
  r.missing.ids = lost.slice(0, 100).map((e) => e.id)
  // Each total is on the amount grid already (`add`); so is their difference.
  r.drift = roundAmount(r.recorded.overage - r.delivered.overage)
  return { result: r, lost }
}
