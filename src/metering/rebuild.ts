/**
 * @module metering/rebuild
 *
 * Counts that must survive a counter store that comes back empty: an account's credits spent
 * in a period, a key's budget spent, a key's all-time (`total`) quota. Admission marks those
 * checks `rebuild` (see `Rebuild` in storage/types) when the counters are neither in this
 * process nor `durable` (PostgreSQL's are);
 * a store that no longer has the counter (Redis restarted without its data, while keys and
 * usage live in PostgreSQL) answers `missing`, and the count is read here from the durable
 * usage, after this instance's queued events are written:
 * - credits of a period: the units recorded in the period (`usage.summarize`);
 * - a key's budget: the units of every recorded event of the key;
 * - a `total` quota: the key's recorded admitted requests.
 * A counter is missing too the first time it is used (a new period, a new key): then the
 * usage has nothing yet and the read is one small query.
 *
 * What the rebuilt count can lack: events another instance has not flushed yet (at most its
 * `flushIntervalMs` of traffic), requests admitted but never settled (a crashed process), and
 * events past the usage retention (`total` quotas and budgets older than `retentionMs`).
 */

import type { Context } from '../context.js'
import type { CheckRole } from '../limits/admission.js'
import type { UsageEvent } from '../storage/types.js'
import type { Period } from './periods.js'

/** What a count is rebuilt from. */
export type RebuildSource =
  | { role: 'credits'; accountId: string; period: Period }
  | { role: 'budget' | 'quota'; keyId: string }

/** Whose counts a request's checks are: its key, the key's account and its current period. */
export interface RebuildOwner {
  accountId: string
  keyId: string
  /** The account's current period; null when the request holds no credits. */
  period: Period | null
}

/** The source of a check's count, or null when the check needs no rebuild. */
export function rebuildSource(
  role: CheckRole,
  allTime: boolean,
  owner: RebuildOwner,
): RebuildSource | null {
  if (role === 'credits' && owner.period)
    return { role, accountId: owner.accountId, period: owner.period }
  if (role === 'budget' || (role === 'quota' && allTime)) return { role, keyId: owner.keyId }
  return null
}

/** Rebuilds in progress, by counter key: concurrent requests of one account share one read. */
const inFlight = new WeakMap<Context, Map<string, Promise<number>>>()

/** The durable count of `source`, for counter `key`. */
export function rebuildBase(ctx: Context, key: string, source: RebuildSource): Promise<number> {
  let running = inFlight.get(ctx)
  if (!running) {
    running = new Map()
    inFlight.set(ctx, running)
  }
  const known = running.get(key)
  if (known) return known
  const p = read(ctx, source).finally(() => running.delete(key))
  running.set(key, p)
  return p
}

/** An admitted request's event (a refused one, where recorded, names its refusal in `code`). */
const admitted = (e: UsageEvent) => (e as { code?: string | null }).code == null

async function read(ctx: Context, source: RebuildSource): Promise<number> {
  await ctx.outbox.flush()
  const usage = ctx.storage.usage
  if (source.role === 'credits') {
    const p = source.period
    return (await usage.summarize(source.accountId, p.start, p.end)).units
  }
  let total = 0
  let cursor: string | null = null
  do {
    const page = await usage.logs(source.keyId, { limit: 100, cursor })
    for (const e of page.data) {
      if (!admitted(e)) continue
      total += source.role === 'budget' ? e.units : 1
    }
    cursor = page.nextCursor
  } while (cursor !== null)
  return total
}
