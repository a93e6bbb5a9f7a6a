/**
 * @module tollbooth/redis/usage
 *
 * The usage store on Redis, under the `{usage}` hash tag: events by id in one HASH (written
 * with HSETNX, so recording is idempotent), and ZSETs of ids scored by time per account
 * (summaries), per key (logs: equal scores order by id, so a reverse range is "newest first
 * by time, then id") and overall (prune).
 *
 * Recording also adds each admitted event to its account's totals of its hour and its UTC day
 * (HASHes `agg:<account>:h:<hour>` and `agg:<account>:d:<day>`, fields `r:<category>` and
 * `u:<category>`), in the same script as the event, so a retried batch counts nothing twice.
 * `summarize` reads those totals for the whole days and hours of its range, and the events
 * only of sub-hour edges: a month is at most 31 days and 46 hours of totals, whatever the
 * traffic, so one account's summary never holds Redis's single thread for long. Pruning takes
 * each deleted event out of its totals in the same script.
 */

import {
  countsInSummary,
  decodeLogCursor,
  encodeLogCursor,
  type Page,
  splitUsageRange,
  USAGE_DAY_MS,
  USAGE_HOUR_MS,
  type UsageEvent,
  type UsageStore,
  type UsageSummary,
  usageCategory,
} from '../../src/index.js'
import { type Ctx, dec } from './store.js'

/** Events per RECORD call and per prune step, so one script never runs long. */
const BATCH = 200

export function redisUsage({ client, prefix }: Ctx): UsageStore {
  const events = `${prefix}{usage}:ev`
  const all = `${prefix}{usage}:all`
  const byAccount = (id: string) => `${prefix}{usage}:acct:${id}`
  const byKey = (id: string) => `${prefix}{usage}:key:${id}`
  const hourOf = (id: string, t: number) => `${prefix}{usage}:agg:${id}:h:${t}`
  const dayOf = (id: string, t: number) => `${prefix}{usage}:agg:${id}:d:${t}`
  /** The four keys of an event in USAGE_RECORD and USAGE_PRUNE. */
  const keysOf = (e: UsageEvent) => [
    byAccount(e.accountId),
    byKey(e.keyId),
    hourOf(e.accountId, e.time - (e.time % USAGE_HOUR_MS)),
    dayOf(e.accountId, e.time - (e.time % USAGE_DAY_MS)),
  ]

  return {
    async record(list) {
      for (let i = 0; i < list.length; i += BATCH) {
        const batch = list.slice(i, i + BATCH)
        const keys = [events, all]
        const argv: string[] = []
        for (const e of batch) {
          keys.push(...keysOf(e))
          const counted = countsInSummary(e)
          argv.push(
            e.id,
            String(e.time),
            JSON.stringify(e),
            usageCategory(e),
            counted ? String(e.units) : '',
          )
        }
        await client.tollboothUsageRecord(keys.length, ...keys, ...argv)
      }
    },
    async summarize(accountId, from, to): Promise<UsageSummary> {
      const parts = splitUsageRange(from, to)
      const keys = [
        byAccount(accountId),
        events,
        ...parts.days.map((t) => dayOf(accountId, t)),
        ...parts.hours.map((t) => hourOf(accountId, t)),
      ]
      const argv = parts.edges.flatMap(([a, b]) => [String(a), String(b)])
      const r = await client.tollboothUsageSummary(keys.length, ...keys, ...argv)
      const out: UsageSummary = { requests: dec(r[0]!), units: dec(r[1]!), byCategory: {} }
      for (let i = 2; i + 2 < r.length; i += 3) {
        out.byCategory[r[i]!] = { requests: dec(r[i + 1]!), units: dec(r[i + 2]!) }
      }
      return out
    },
    async logs(keyId, { limit, cursor }): Promise<Page<UsageEvent>> {
      let time = ''
      let id = ''
      if (cursor) {
        const [t, last] = decodeLogCursor(cursor)
        if (Number.isFinite(t)) {
          time = String(t)
          id = last
        }
      }
      const r = await client.tollboothUsageLogs(2, byKey(keyId), events, time, id, String(limit))
      const data = r
        .slice(1)
        .filter((json) => json !== '')
        .map((json) => JSON.parse(json) as UsageEvent)
      const last = data[data.length - 1]
      return { data, nextCursor: r[0] === '1' && last ? encodeLogCursor(last) : null }
    },
    async prune(before) {
      let removed = 0
      for (;;) {
        const ids = await client.zrangebyscore(all, '-inf', `(${before}`, 'LIMIT', 0, BATCH)
        if (ids.length === 0) return removed
        const jsons = await client.hmget(events, ...ids)
        const keys = [events, all]
        const argv: string[] = []
        jsons.forEach((json, i) => {
          if (json === null) {
            // An id left in `all` without its event (deleted by a concurrent prune).
            keys.push(all, all, all, all)
            argv.push(ids[i]!, '', '')
            return
          }
          const e = JSON.parse(json) as UsageEvent
          keys.push(...keysOf(e))
          argv.push(e.id, usageCategory(e), countsInSummary(e) ? String(e.units) : '')
        })
        const n = await client.tollboothUsagePrune(keys.length, ...keys, ...argv)
        // Ids whose event was already gone: drop them from `all` so the loop ends.
        if (jsons.includes(null)) await client.zrem(all, ...ids.filter((_, i) => jsons[i] === null))
        removed += n
      }
    },
  }
}
