/**
 * @module tollbooth/redis/usage
 *
 * The usage store on Redis, under each account's own hash tag `{u:<accountId>}`, so on a Redis
 * Cluster usage spreads over the masters with the accounts and each script stays in one slot:
 * the account's events by id in one HASH (written with HSETNX, so recording is idempotent),
 * and ZSETs of ids scored by time for the account (summaries, prune) and for each of its keys
 * (logs: equal scores order by id, so a reverse range is "newest first by time, then id").
 * A small index under `{usage}` says which account a key's events are under (`logs` is asked
 * by key id) and which accounts have events (`prune` walks them); it is written once per key
 * (then remembered by the process), not per event.
 *
 * Recording also adds each admitted event to its account's totals of its hour and its UTC day
 * (HASHes `h:<hour>` and `d:<day>` under the account's tag, fields `r:<pair>` and `u:<pair>`),
 * in the same script as the event, so a retried batch counts nothing twice. A pair is the usage
 * category alone when the key had no category, else `<category> NUL <key category>`: neither
 * category can hold a NUL, so the split is exact. `summarize` reads those totals for the whole
 * days and hours of its range, and the events only of sub-hour edges: a month is at most 31
 * days and 46 hours of totals, whatever the traffic, so one account's summary never holds
 * Redis's single thread for long. Pruning takes each deleted event out of its totals in the
 * same script.
 *
 * Versions before December 2026 kept all usage under the one tag `{usage}` (one master of a
 * cluster); `upgradeUsageTotals` moves it (see there).
 */

import { LRUCache } from 'lru-cache'
import {
  addToSummary,
  countsInSummary,
  decodeLogCursor,
  emptySummary,
  encodeLogCursor,
  type Page,
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
import { scanBatches } from './scan.js'
import { type Ctx, dec, type RedisClient, upgradeCtx } from './store.js'

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

/** The usage keys under a prefix (see the module's header). */
function usageKeys(prefix: string) {
  const tag = (id: string) => `${prefix}{u:${id}}`
  return {
    events: (id: string) => `${tag(id)}:ev`,
    byAccount: (id: string) => `${tag(id)}:t`,
    byKey: (id: string, keyId: string) => `${tag(id)}:k:${keyId}`,
    hourOf: (id: string, t: number) => `${tag(id)}:h:${t}`,
    dayOf: (id: string, t: number) => `${tag(id)}:d:${t}`,
    /** HASH key id -> account id. */
    keyAccounts: `${prefix}{usage}:keys`,
    /** SET of the accounts with events. */
    accounts: `${prefix}{usage}:accts`,
  }
}

/** The keys of the layout before December 2026, all under `{usage}`. */
function oldUsageKeys(prefix: string) {
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
 * Index entries remembered as written, per process (bounded; re-written after 10 minutes, or
 * at once when their account's events turn out gone from Redis).
 */
const INDEX_CACHE = { max: 50_000, ttl: 600_000 }
/** Key/account pairs per USAGE_INDEX call. */
const INDEX_BATCH = 1000

/**
 * Moves the usage of versions before December 2026 (all under the one hash tag `{usage}`, so on
 * a Redis Cluster on one master) to the layout of this version (under each account's tag), and
 * deletes the old keys: in batches of 200 events, each recorded under its account (idempotent
 * by event id) and then taken out of the old layout, events and totals, in one short script.
 * Events of versions before usage totals are counted in the totals as they move. Safe to run
 * again, from two processes at once, or after a crash half-way. Run it once every instance runs
 * this version (and again if an older instance was still recording meanwhile): until then,
 * summaries and logs do not show the events still in the old layout.
 *
 * @param options.client the ioredis client given to `redisStorage`
 * @param [options.keyPrefix='tollbooth:'] the `keyPrefix` given to `redisStorage`
 * @returns how many events were moved
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
  const ctx = upgradeCtx('upgradeUsageTotals', options)
  const usage = redisUsage(ctx)
  const old = oldUsageKeys(ctx.prefix)
  let moved = 0
  for (;;) {
    // Always the first batch: the moved ones are gone from `all`.
    const ids = await ctx.client.zrange(old.all, 0, BATCH - 1)
    if (ids.length === 0) return moved
    const jsons = await ctx.client.hmget(old.events, ...ids)
    const keys = [old.events, old.all]
    const argv: string[] = []
    const events: UsageEvent[] = []
    jsons.forEach((json, i) => {
      if (json === null) return
      const e = JSON.parse(json) as Omit<UsageEvent, 'code'> & { code?: string | null }
      // Events of versions with totals always carry `code`, and are in the old totals when
      // admitted; older ones are in no totals.
      const totalled = e.code !== undefined && e.code === null
      keys.push(
        old.byAccount(e.accountId),
        old.byKey(e.keyId),
        old.hourOf(e.accountId, e.time - (e.time % USAGE_HOUR_MS)),
        old.dayOf(e.accountId, e.time - (e.time % USAGE_DAY_MS)),
      )
      argv.push(ids[i]!, pairOf(e), totalled ? String(e.units) : '')
      e.ttfbMs ??= null
      e.code ??= null
      e.keyCategory ??= null
      events.push(e as UsageEvent)
    })
    await usage.record(events)
    if (argv.length > 0)
      moved += await ctx.client.tollboothUsageUnrecordOld(keys.length, ...keys, ...argv)
    // Ids left in `all` without their event.
    if (jsons.includes(null))
      await ctx.client.zrem(old.all, ...ids.filter((_, i) => jsons[i] === null))
  }
}

export function redisUsage({ client, prefix }: Ctx): UsageStore {
  const { events, byAccount, byKey, hourOf, dayOf, keyAccounts, accounts } = usageKeys(prefix)
  /** The three keys of an event in USAGE_RECORD and USAGE_PRUNE, after the account's two. */
  const keysOf = (e: UsageEvent) => [
    byKey(e.accountId, e.keyId),
    hourOf(e.accountId, e.time - (e.time % USAGE_HOUR_MS)),
    dayOf(e.accountId, e.time - (e.time % USAGE_DAY_MS)),
  ]
  /**
   * The pairs noted as written, each with its account's epoch then. An account's epoch moves
   * when its events are found gone from Redis (a FLUSHALL, a restart or failover that lost
   * data, an eviction): the index entries written before are gone too, and its pairs are
   * written again (they stayed remembered for 10 minutes before, and meanwhile `logs` by key
   * found none of the events recorded, nor `prune` the account).
   */
  const indexed = new LRUCache<string, number>(INDEX_CACHE)
  const epochs = new LRUCache<string, number>({ max: INDEX_CACHE.max })
  let lastEpoch = 0
  const epochOf = (accountId: string) => epochs.get(accountId) ?? 0

  /** Notes the key -> account pairs of `list` not yet noted by this process. */
  async function index(list: readonly UsageEvent[]): Promise<void> {
    const fresh = new Map<string, [string, string]>()
    for (const e of list) {
      const pair = JSON.stringify([e.keyId, e.accountId])
      if (indexed.get(pair) !== epochOf(e.accountId)) fresh.set(pair, [e.keyId, e.accountId])
    }
    const pairs = [...fresh]
    for (let i = 0; i < pairs.length; i += INDEX_BATCH) {
      const batch = pairs.slice(i, i + INDEX_BATCH)
      await client.tollboothUsageIndex(2, keyAccounts, accounts, ...batch.flatMap(([, p]) => p))
      for (const [p, [, accountId]] of batch) indexed.set(p, epochOf(accountId))
    }
  }

  /** Records one account's events, in calls of at most BATCH. */
  async function recordAccount(accountId: string, list: UsageEvent[]): Promise<void> {
    for (let i = 0; i < list.length; i += BATCH) {
      const batch = list.slice(i, i + BATCH)
      const keys = [events(accountId), byAccount(accountId)]
      const argv: string[] = []
      for (const e of batch) {
        keys.push(...keysOf(e))
        argv.push(
          e.id,
          String(e.time),
          JSON.stringify(e),
          pairOf(e),
          countsInSummary(e) ? String(e.units) : '',
        )
      }
      const [, had] = await client.tollboothUsageRecord(keys.length, ...keys, ...argv)
      if (had === 0) {
        // Its first events, or Redis lost them and the index with them: written again (after
        // the events, this once; an account's first batch writes its few pairs twice).
        epochs.set(accountId, ++lastEpoch)
        await index(batch)
      }
    }
  }

  /** Deletes one account's events before `before`, in calls of at most BATCH. */
  async function pruneAccount(accountId: string, before: number): Promise<number> {
    const ev = events(accountId)
    const all = byAccount(accountId)
    let removed = 0
    for (;;) {
      const ids = await client.zrangebyscore(all, '-inf', `(${before}`, 'LIMIT', 0, BATCH)
      if (ids.length === 0) return removed
      const jsons = await client.hmget(ev, ...ids)
      const keys = [ev, all]
      const argv: string[] = []
      jsons.forEach((json, i) => {
        if (json === null) return
        const e = JSON.parse(json) as UsageEvent
        keys.push(...keysOf(e))
        argv.push(ids[i]!, pairOf(e), countsInSummary(e) ? String(e.units) : '')
      })
      if (argv.length > 0)
        removed += await client.tollboothUsagePrune(keys.length, ...keys, ...argv)
      // Ids left in the index without their event (deleted by a concurrent prune).
      if (jsons.includes(null)) await client.zrem(all, ...ids.filter((_, i) => jsons[i] === null))
    }
  }

  return {
    async record(list) {
      if (list.length === 0) return
      // The index first: an event is never under an account that logs by key cannot find.
      await index(list)
      const byAcct = new Map<string, UsageEvent[]>()
      for (const e of list) {
        const group = byAcct.get(e.accountId)
        if (group) group.push(e)
        else byAcct.set(e.accountId, [e])
      }
      await Promise.all([...byAcct].map(([id, group]) => recordAccount(id, group)))
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
        const keys = [
          byAccount(accountId),
          events(accountId),
          ...buckets.slice(i, i + SUMMARY_BUCKETS),
        ]
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
      const accountId = await client.hget(keyAccounts, keyId)
      if (accountId === null) return { data: [], nextCursor: null }
      const r = await client.tollboothUsageLogs(
        2,
        byKey(accountId, keyId),
        events(accountId),
        time,
        id,
        String(limit),
      )
      const data = r
        .slice(1)
        .filter((json) => json !== '')
        .map((json) => {
          const e = JSON.parse(json) as UsageEvent
          // Events of versions before these fields, moved by upgradeUsageTotals as stored.
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
      for await (const ids of scanBatches((c) => client.sscan(accounts, c, 'COUNT', 100))) {
        const counts = await Promise.all([...new Set(ids)].map((id) => pruneAccount(id, before)))
        removed += counts.reduce((a, b) => a + b, 0)
      }
      return removed
    },
  }
}
