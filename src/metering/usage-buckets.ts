/**
 * @module metering/usage-buckets
 *
 * How the stores answer `usage.summarize(accountId, from, to)` without reading every event:
 * each store keeps, as events are recorded, an account's admitted requests and units per
 * category per UTC hour (Redis also per UTC day). A range is then cut into the whole days and
 * hours it covers, read from those totals, and at most two partial hours at its edges, read
 * from the events themselves. Billing periods and the portal's days start on hour boundaries,
 * so their summaries read totals only: the cost is O(categories × buckets), not O(events).
 */

import type { UsageEvent, UsageSummary } from '../storage/types.js'

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

/** The category an event is totalled under. */
export function usageCategory(e: Pick<UsageEvent, 'category'>): string {
  return e.category ?? 'uncategorized'
}

/** Whether an event counts in summaries and billing: admitted requests only. */
export function countsInSummary(e: Pick<UsageEvent, 'code'>): boolean {
  return e.code === null || e.code === undefined
}

/** Adds `requests` and `units` of `category` to a summary. */
export function addToSummary(
  out: UsageSummary,
  category: string,
  requests: number,
  units: number,
): void {
  out.requests += requests
  out.units += units
  // Own properties only, and defined rather than assigned: a category named `__proto__` or
  // `constructor` is counted as itself, never read from or written to Object.prototype.
  const c = Object.hasOwn(out.byCategory, category) ? out.byCategory[category] : undefined
  if (c) {
    c.requests += requests
    c.units += units
  } else
    Object.defineProperty(out.byCategory, category, {
      value: { requests, units },
      enumerable: true,
      writable: true,
      configurable: true,
    })
}
