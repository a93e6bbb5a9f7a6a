/**
 * @module metering/usage-buckets
 *
 * How the stores answer `usage.summarize(accountId, from, to)` without reading every event:
 * each store keeps, as events are recorded, an account's admitted requests and units per
 * (usage category, key category) pair per UTC hour (Redis also per UTC day). A range is then cut into the whole days and
 * hours it covers, read from those totals, and at most two partial hours at its edges, read
 * from the events themselves. Billing periods and the portal's days start on hour boundaries,
 * so their summaries read totals only: the cost is O(pairs × buckets), not O(events).
 *
 * Keeping pairs rather than each category alone lets one set of totals answer both breakdowns
 * (`byCategory`, `byKeyCategory`) and any {@link UsageFilter}: {@link addToSummary} drops the
 * pairs a filter leaves out. Totals recorded before key categories were kept are pairs with
 * the key category `uncategorized`.
 */

import { roundAmount } from '../limits/amount.js'
import type { UsageEvent, UsageFilter, UsageSummary } from '../storage/types.js'

/** One hour (ms): the finest bucket of the usage totals. */
export const USAGE_HOUR_MS = 3_600_000
/** One day (ms): the coarser bucket (UTC days, as the portal's chart). */
export const USAGE_DAY_MS = 86_400_000

/** The pieces a range `[from, to)` is read from. */
export interface UsageRangeParts {
  /** `[start, end)` of the whole hours inside the range, or null when it holds none. */
  hours: [number, number] | null
  /** Sub-hour `[from, to)` ranges at the edges, to be read from the events. */
  edges: Array<[number, number]>
}

const floorTo = (t: number, step: number) => t - (((t % step) + step) % step)
const ceilTo = (t: number, step: number) => {
  const f = floorTo(t, step)
  return f === t ? t : f + step
}

/** Cuts `[from, to)` into its whole hours and the sub-hour edges around them. */
export function splitUsageRange(from: number, to: number): UsageRangeParts {
  if (!(to > from)) return { hours: null, edges: [] }
  const h1 = ceilTo(from, USAGE_HOUR_MS)
  const h2 = floorTo(to, USAGE_HOUR_MS)
  if (h1 >= h2) return { hours: null, edges: [[from, to]] }
  const edges: Array<[number, number]> = []
  if (from < h1) edges.push([from, h1])
  if (h2 < to) edges.push([h2, to])
  return { hours: [h1, h2], edges }
}

/**
 * The whole hours `[h1, h2)` (hour boundaries) as whole UTC days plus the hours outside them,
 * for a store that keeps daily totals beside hourly ones.
 */
export function usageBuckets(h1: number, h2: number): { days: number[]; hours: number[] } {
  const out = { days: [] as number[], hours: [] as number[] }
  let d1 = ceilTo(h1, USAGE_DAY_MS)
  let d2 = floorTo(h2, USAGE_DAY_MS)
  if (d1 >= d2) d1 = d2 = h2
  for (let t = h1; t < d1; t += USAGE_HOUR_MS) out.hours.push(t)
  for (let t = d1; t < d2; t += USAGE_DAY_MS) out.days.push(t)
  for (let t = d2; t < h2; t += USAGE_HOUR_MS) out.hours.push(t)
  return out
}

/** The name summaries give a missing usage or key category. */
export const UNCATEGORIZED = 'uncategorized'

/** The category an event is totalled under. */
export function usageCategory(e: Pick<UsageEvent, 'category'>): string {
  return e.category ?? UNCATEGORIZED
}

/** The key category an event is totalled under (an event of an older version has none). */
export function usageKeyCategory(e: Pick<UsageEvent, 'keyCategory'>): string {
  return e.keyCategory ?? UNCATEGORIZED
}

/** An empty summary. */
export function emptySummary(): UsageSummary {
  return { requests: 0, units: 0, byCategory: {}, byKeyCategory: {} }
}

/** Whether an event counts in summaries and billing: admitted requests only. */
export function countsInSummary(e: Pick<UsageEvent, 'code'>): boolean {
  return e.code === null || e.code === undefined
}

type Breakdown = UsageSummary['byCategory']

/** Adds to one breakdown, by own property only (see {@link addToSummary}). */
function addTo(b: Breakdown, name: string, requests: number, units: number): void {
  const c = Object.hasOwn(b, name) ? b[name] : undefined
  if (c) {
    c.requests += requests
    c.units = roundAmount(c.units + units)
  } else
    Object.defineProperty(b, name, {
      value: { requests, units: roundAmount(units) },
      enumerable: true,
      writable: true,
      configurable: true,
    })
}

/**
 * Adds `requests` and `units` of a (usage category, key category) pair to a summary, unless
 * `filter` leaves the pair out.
 */
export function addToSummary(
  out: UsageSummary,
  category: string,
  keyCategory: string,
  requests: number,
  units: number,
  filter?: UsageFilter,
): void {
  if (filter?.category !== undefined && filter.category !== category) return
  if (filter?.keyCategory !== undefined && filter.keyCategory !== keyCategory) return
  out.requests += requests
  // Units are amounts: summed on the amount grid (`limits/amount`), whatever the store kept.
  out.units = roundAmount(out.units + units)
  // Own properties only, and defined rather than assigned: a category named `__proto__` or
  // `constructor` is counted as itself, never read from or written to Object.prototype.
  addTo(out.byCategory, category, requests, units)
  addTo(out.byKeyCategory, keyCategory, requests, units)
}
