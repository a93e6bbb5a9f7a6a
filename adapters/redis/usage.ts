/**
 * @module tollbooth/redis/usage
 *
 * The usage store on Redis, under the `{usage}` hash tag: events by id in one HASH (written
 * with HSETNX, so recording is idempotent), and ZSETs of ids scored by time per account
 * (summaries), per key (logs: equal scores order by id, so a reverse range is "newest first
 * by time, then id") and overall (prune).
 *
 * `summarize` reads every event of the range inside Redis: its cost grows with the events in
 * the period. For heavy metering keep usage in PostgreSQL and only the counters in Redis.
 */

import {
  decodeLogCursor,
  encodeLogCursor,
  type Page,
  type UsageEvent,
  type UsageStore,
  type UsageSummary,
} from '../../src/index.js'
import { type Ctx, dec } from './store.js'

/** Events per RECORD call and per prune step, so one script never runs long. */
const BATCH = 200

export function redisUsage({ client, prefix }: Ctx): UsageStore {
  const events = `${prefix}{usage}:ev`
  const all = `${prefix}{usage}:all`
  const byAccount = (id: string) => `${prefix}{usage}:acct:${id}`
  const byKey = (id: string) => `${prefix}{usage}:key:${id}`

  return {
    async record(list) {
      for (let i = 0; i < list.length; i += BATCH) {
        const batch = list.slice(i, i + BATCH)
        const keys = [events, all]
        const argv: string[] = []
        for (const e of batch) {
          keys.push(byAccount(e.accountId), byKey(e.keyId))
          argv.push(e.id, String(e.time), JSON.stringify(e))
        }
        await client.tollboothUsageRecord(keys.length, ...keys, ...argv)
      }
    },
    async summarize(accountId, from, to): Promise<UsageSummary> {
      const r = await client.tollboothUsageSummary(
        2,
        byAccount(accountId),
        events,
        String(from),
        String(to),
      )
      const cats: Array<[string, { requests: number; units: number }]> = []
      for (let i = 2; i + 2 < r.length; i += 3)
        cats.push([r[i]!, { requests: dec(r[i + 1]!), units: dec(r[i + 2]!) }])
      // fromEntries defines own properties: a category named `__proto__` stays a category.
      return { requests: dec(r[0]!), units: dec(r[1]!), byCategory: Object.fromEntries(cats) }
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
        const tx = client
          .multi()
          .hdel(events, ...ids)
          .zrem(all, ...ids)
        jsons.forEach((json, i) => {
          if (json === null) return
          const e = JSON.parse(json) as UsageEvent
          tx.zrem(byAccount(e.accountId), ids[i]!).zrem(byKey(e.keyId), ids[i]!)
        })
        const res = await tx.exec()
        const err = res?.find(([e]) => e)?.[0]
        if (err) throw err
        removed += Number(res?.[0]?.[1] ?? 0)
      }
    },
  }
}
