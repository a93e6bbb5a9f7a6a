/**
 * @module tollbooth/redis/usage
 *
 * The usage store on Redis, under the `{usage}` hash tag: events by id in one HASH (written
 * with HSETNX, so recording is idempotent), and ZSETs of ids scored by time per account
 * (summaries), per key (logs: equal scores order by id, so a reverse range is "newest first
 * by time, then id") and overall (prune).
 *
 * Recording also adds each admitted event to its account's totals of its hour and its UTC day
 * (HASHes `agg:<account>:h:<hour>` and `agg:<account>:d:<day>`, fields `r:<pair>` and
 * `u:<pair>`), in the same script as the event, so a retried batch counts nothing twice. A
 * pair is the usage category alone when the key had no category (as every total recorded
 * before key categories were kept reads), else `<category> NUL <key category>`: neither
 * category can hold a NUL, so the split is exact and no stored total needs rewriting.
 * `summarize` reads those totals for the whole days and hours of its range, and the events
 * only of sub-hour edges: a month is at most 31 days and 46 hours of totals, whatever the
 * traffic, so one account's summary never holds Redis's single thread for long. Pruning takes
 * each deleted event out of its totals in the same script.
 */

import { z } from 'zod'
import {
  addToSummary,
  countsInSummary,
  decodeLogCursor,
  emptySummary,
  encodeLogCursor,
  type Page,
  parseOptions,
  splitUsageRange,
  UNCATEGORIZED,
  USAGE_DAY_MS,
  USAGE_HOUR_MS,
  type UsageEvent,
  type UsageStore,
  type UsageSummary,
  usageBuckets,
  usageCategory,
  usageKeyCategory,
} from '../../src/internal.js'
import {
  type Ctx,
  dec,
  defineCommands,
  keyPrefixSchema,
  type RedisClient,
  redisClientSchema,
} from './store.js'

/** Events per RECORD call and per prune step, so one script never runs long. */
const BATCH = 200
/** Day and hour totals read per summary script: a month (at most 77) is one script. */
const SUMMARY_BUCKETS = 1000

/** The name of an event's totals within an hour or day HASH (see the module's header). */
function pairOf(e: Pick<UsageEvent, 'category' | 'keyCategory'>): string {
  const k = usageKeyCategory(e)
  return k === UNCATEGORIZED ? usageCategory(e) : `${usageCategory(e)}\u0000${k}`
}

/** A pair back as (usage category, key category). */
function splitPair(pair: string): [string, string] {
  const i = pair.indexOf('\u0000')
  return i < 0 ? [pair, UNCATEGORIZED] : [pair.slice(0, i), pair.slice(i + 1)]
}

/** The usage keys under a prefix. */
function usageKeys(prefix: string) {
  return {
    events: `${prefix}{usage}:ev`,
    all: `${prefix}{usage}:all`,
    byAccount: (id: string) => `${prefix}{usage}:acct:${id}`,
    byKey: (id: string) => `${prefix}{usage}:key:${id}`,
    hourOf: (id: string, t: number) => `${prefix}{usage}:agg:${id}:h:${t}`,
    dayOf: (id: string, t: number) => `${prefix}{usage}:agg:${id}:d:${t}`,
  }
}

/**
 * Run once after every instance runs a version with usage totals (December 2026): adds the
 * events recorded before, by a version without them, to the totals that summaries read, in
 * batches of 200 events, each one short script. Idempotent (an upgraded event is marked), so
 * it is safe to run again or from two processes. Until it has run, `GET /usage` does not count
 * those older events; their logs show `ttfbMs` and `code` as null either way.
 *
 * @param options.client the ioredis client given to `redisStorage`
 * @param [options.keyPrefix='tollbooth:'] the `keyPrefix` given to `redisStorage`
 * @returns how many events were upgraded
 * @throws {ConfigError} naming a bad option
 * @example
 * ```ts
 * import { upgradeUsageTotals } from 'tollbooth/redis'
 * await upgradeUsageTotals({ client, keyPrefix: 'myapi:' })
 * ```
 */
export async function upgradeUsageTotals(options: {
  client: RedisClient
  keyPrefix?: string
}): Promise<number> {
  const { client, keyPrefix } = parseOptions(
    'upgradeUsageTotals',
    z.object({ client: redisClientSchema, keyPrefix: keyPrefixSchema }).strict(),
    options,
  )
  const ctx: Ctx = { client: defineCommands(client), prefix: keyPrefix }
  const { events, all, hourOf, dayOf } = usageKeys(ctx.prefix)
  let upgraded = 0
  for (let start = 0; ; start += BATCH) {
    const ids = await ctx.client.zrange(all, start, start + BATCH - 1)
    if (ids.length === 0) return upgraded
    const jsons = await ctx.client.hmget(events, ...ids)
    const keys = [events]
    const argv: string[] = []
    for (const json of jsons) {
      if (json === null) continue
      // Events of this version always carry `code`; an older version recorded served ones only.
      const e = JSON.parse(json) as Omit<UsageEvent, 'code'> & { code?: string | null }
      if (e.code !== undefined) continue
      keys.push(
        hourOf(e.accountId, e.time - (e.time % USAGE_HOUR_MS)),
        dayOf(e.accountId, e.time - (e.time % USAGE_DAY_MS)),
      )
      argv.push(e.id, json, pairOf(e), String(e.units))
    }
    if (argv.length > 0)
      upgraded += await ctx.client.tollboothUsageUpgrade(keys.length, ...keys, ...argv)
  }
}

export function redisUsage({ client, prefix }: Ctx): UsageStore {
  const { events, all, byAccount, byKey, hourOf, dayOf } = usageKeys(prefix)
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
            pairOf(e),
            counted ? String(e.units) : '',
          )
        }
        await client.tollboothUsageRecord(keys.length, ...keys, ...argv)
      }
    },
    async summarize(accountId, from, to, filter): Promise<UsageSummary> {
      const parts = splitUsageRange(from, to)
      const whole = parts.hours ? usageBuckets(...parts.hours) : { days: [], hours: [] }
      const buckets = [
        ...whole.days.map((t) => dayOf(accountId, t)),
        ...whole.hours.map((t) => hourOf(accountId, t)),
      ]
      const out = emptySummary()
      // A month is one call; a range of years is a few, each script short (and each call's
      // arguments well under what a function call takes).
      let edges = parts.edges.flatMap(([a, b]) => [String(a), String(b)])
      for (let i = 0; i === 0 || i < buckets.length; i += SUMMARY_BUCKETS) {
        const keys = [byAccount(accountId), events, ...buckets.slice(i, i + SUMMARY_BUCKETS)]
        const r = await client.tollboothUsageSummary(keys.length, ...keys, ...edges)
        edges = []
        for (let j = 2; j + 2 < r.length; j += 3)
          addToSummary(out, ...splitPair(r[j]!), dec(r[j + 1]!), dec(r[j + 2]!), filter)
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
        .map((json) => {
          const e = JSON.parse(json) as UsageEvent
          // Events recorded before these fields existed (see upgradeRedisUsageTotals).
          e.ttfbMs ??= null
          e.code ??= null
          e.keyCategory ??= null
          return e
        })
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
          argv.push(e.id, pairOf(e), countsInSummary(e) ? String(e.units) : '')
        })
        const n = await client.tollboothUsagePrune(keys.length, ...keys, ...argv)
        // Ids whose event was already gone: drop them from `all` so the loop ends.
        if (jsons.includes(null)) await client.zrem(all, ...ids.filter((_, i) => jsons[i] === null))
        removed += n
      }
    },
  }
}
