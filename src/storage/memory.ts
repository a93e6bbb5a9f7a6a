/**
 * @module storage/memory
 *
 * The embedded default storage: everything in this process's memory, lost on exit. Right for
 * tests, demos and a single instance; several instances need `tollbooth/redis` or
 * `tollbooth/postgres`, since each process would count on its own.
 *
 * Counters run `limits/counters` (through `countersFromState`) on rows of numbers off the V8
 * heap (`storage/counter-slots`), synchronously, so every `consume` is atomic by construction
 * (JavaScript runs it to completion). Expired counters are swept a few per call, from a queue
 * of expiries a minute after they expire, so memory stays proportional to the keys active
 * within their longest window (or the last minute):
 * with four limits (three counters), about 120 bytes of heap and, off it, 192 bytes of rows
 * and about 90 of their index per active key (the arrays grow by doubling, so up to twice
 * that), measured by `test/limits/memory-per-key.ts` and `test/storage/retained-size.test.ts`.
 */

import { z } from 'zod'
import { ConflictError, InvalidRequestError } from '../errors.js'
import { patchFields } from '../keys/fields.js'
import { roundAmount } from '../limits/amount.js'
import type { StoredCounter } from '../limits/counters.js'
import {
  addToSummary,
  countsInSummary,
  emptySummary,
  splitUsageRange,
  USAGE_HOUR_MS,
  usageCategory,
  usageKeyCategory,
} from '../metering/usage-buckets.js'
import { integer, parseOptions } from '../options.js'
import { sharedIfEmpty, sharedValues } from '../shared-values.js'
import { KeyedIndex } from '../slot-index.js'
import { counterSlots } from './counter-slots.js'
import { EventRing } from './event-ring.js'
import { markInProcess } from './in-process.js'
import { memoryIpBlocks } from './memory-ip-blocks.js'
import { heapPop, heapPush } from './min-heap.js'
import { rotation } from './rows.js'
import { listsByLength, type Place, syncCountersFromState } from './state-counters.js'
import type {
  AccountRecord,
  AccountStore,
  CounterStore,
  KeyPatch,
  KeyRecord,
  KeyStore,
  Page,
  ProviderKeyRecord,
  SecretStore,
  Storage,
  UsageEvent,
  UsageStore,
  UsageSummary,
} from './types.js'
import { type TallyPlace, usageTallies, withPlacedRecord } from './usage-tallies.js'

/**
 * A deep copy of a stored value. Records are plain data (objects, arrays, strings, numbers,
 * booleans, null): copied by hand, several times faster than `structuredClone`, which
 * serializes (it was a quarter of a cache miss's time: a key record's three object fields and
 * the account). Anything else (a Date or a typed array a caller put in metadata) goes through
 * `structuredClone`. A `__proto__` key stays an own property, as in the original.
 */
function clone<T>(v: T): T {
  if (typeof v !== 'object' || v === null) return v
  if (Array.isArray(v)) {
    const out = new Array(v.length)
    for (let i = 0; i < v.length; i++) out[i] = clone(v[i])
    return out as T
  }
  const proto = Object.getPrototypeOf(v)
  if (proto !== Object.prototype && proto !== null) return structuredClone(v)
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(v)) {
    const x = clone((v as Record<string, unknown>)[k])
    if (k === '__proto__')
      Object.defineProperty(out, k, {
        value: x,
        enumerable: true,
        writable: true,
        configurable: true,
      })
    else out[k] = x
  }
  return out as T
}

/**
 * A copy of a key record: its own fields in one object of a fixed shape, the strings shared
 * (they cannot change), each object field (scopes, metadata, limits) cloned. Smaller than a
 * structured clone, which makes every string anew and lays the fields out one by one.
 */
function copyRecord(r: KeyRecord): KeyRecord {
  const k: Record<string, unknown> = { ...r }
  for (const f in k) {
    const v = k[f]
    if (typeof v === 'object' && v !== null) k[f] = clone(v)
  }
  return k as unknown as KeyRecord
}

/**
 * A stored key record. Its `lastUsedAt` is held beside it as a number (NaN: never) rather than
 * in the record: a touch then writes a double in place, where a record field that began as
 * null would take a new heap number per touch (an old object pointing at a young one, which
 * every scavenge must visit, among a million keys). Its limits and scopes are the store's
 * shared copies (`sharedValues`): most keys repeat their plan's limits, five objects and
 * about 250 bytes a key kept once.
 */
class HeldKey {
  lastUsedAt: number
  constructor(
    public record: KeyRecord,
    shared: <T>(v: T) => T,
  ) {
    this.lastUsedAt = record.lastUsedAt ?? Number.NaN
    keepShared(record, shared)
  }
  /** A copy for a caller, with its `lastUsedAt`. */
  copy(): KeyRecord {
    const k = copyRecord(this.record)
    k.lastUsedAt = Number.isNaN(this.lastUsedAt) ? null : this.lastUsedAt
    return k
  }
  patch(patch: KeyPatch, shared: <T>(v: T) => T): void {
    Object.assign(this.record, clone(patchFields(patch)))
    keepShared(this.record, shared)
  }
}

/**
 * A stored key's fields that many keys repeat, as the shared copies: empty metadata (an empty
 * object of its own was 56 bytes per key and per account; every read clones a record's
 * fields), its limits and scopes (`sharedValues`).
 */
function keepShared(r: KeyRecord, shared: <T>(v: T) => T): void {
  r.metadata = sharedIfEmpty(r.metadata)
  r.limits = shared(r.limits)
  r.scopes = shared(r.scopes)
}

function memoryKeys(): KeyStore {
  // Found by the record's own id and hash (`KeyedIndex`: no table on the heap, no second
  // reference to either string); by hash, the record itself: a cache miss reads one index.
  const byId = new KeyedIndex<HeldKey>((k) => k.record.id)
  const byHash = new KeyedIndex<HeldKey>((k) => k.record.hash, 16)
  // An account's key ids: the id alone while it has one key (most have), a Set past that.
  const byAccount = new Map<string, string | Set<string>>()
  const shared = sharedValues(clone)
  const insert = (k: KeyRecord) => {
    if (byId.has(k.id) || byHash.has(k.hash)) throw new Error('duplicate key id or hash')
    const held = new HeldKey(copyRecord(k), shared)
    byId.add(held)
    byHash.add(held)
    const ids = byAccount.get(k.accountId)
    if (ids === undefined) byAccount.set(k.accountId, k.id)
    else if (typeof ids === 'string') byAccount.set(k.accountId, new Set([ids, k.id]))
    else ids.add(k.id)
  }
  const idsOf = (accountId: string): string[] => {
    const ids = byAccount.get(accountId)
    return ids === undefined ? [] : typeof ids === 'string' ? [ids] : [...ids]
  }
  return markInProcess<KeyStore>({
    async insert(k) {
      insert(k)
    },
    async get(id) {
      const k = byId.get(id)
      return k ? k.copy() : null
    },
    async getByHash(hash) {
      const k = byHash.get(hash)
      return k ? k.copy() : null
    },
    async list(accountId, { limit, cursor, kind, includeRevoked }) {
      const ids = idsOf(accountId).sort().reverse()
      const data: KeyRecord[] = []
      let nextCursor: string | null = null
      for (const id of ids) {
        if (cursor && id >= cursor) continue
        const k = byId.get(id)!.record
        if (kind && k.kind !== kind) continue
        if (!includeRevoked && k.revokedAt !== null) continue
        if (data.length === limit) {
          nextCursor = data[data.length - 1]!.id
          break
        }
        data.push(byId.get(id)!.copy())
      }
      return { data, nextCursor }
    },
    async update(id, patch) {
      const k = byId.get(id)
      if (!k) return null
      k.patch(patch, shared)
      return k.copy()
    },
    async rotate(oldId, patch, next) {
      const k = byId.get(oldId)
      if (!k) return null
      const p = rotation(k.record.revokedAt, patch, next)
      if (p instanceof ConflictError) throw p
      insert(next)
      k.patch(p, shared)
      return k.copy()
    },
    async delete(id) {
      const k = byId.get(id)
      if (!k) return false
      byId.delete(id)
      byHash.delete(k.record.hash)
      const ids = byAccount.get(k.record.accountId)
      if (ids === id) byAccount.delete(k.record.accountId)
      else if (typeof ids === 'object') ids.delete(id)
      return true
    },
    async touch(updates) {
      for (const { id, lastUsedAt } of updates) {
        const k = byId.get(id)
        // NaN (never used) compares false: the first touch sets it.
        if (k && !(k.lastUsedAt >= lastUsedAt)) k.lastUsedAt = lastUsedAt
      }
    },
  })
}

/** The memory store's counters, with what tests and operators may want to look at. */
export interface MemoryCounterStore extends CounterStore {
  /** Counters held now (expired ones included until the sweep reaches them). */
  readonly size: number
  /**
   * Drops every expired counter at once and returns how many went. Not needed for bounded
   * memory (each call sweeps a few); for tests, or a timer after a burst.
   */
  sweep(now: number): number
}

/** A counter's place (`Place`) moved to row `row`, taken with stamp `stamp`. */
function setPlace(p: Place, row: number, stamp: number): void {
  p.where = row
  p.stamp = stamp
}

/**
 * The counters on a Map of slots, through `countersFromState`: a `transact` runs to
 * completion in one synchronous call, so it is atomic by construction, and the store carries
 * the in-process fast path (no promise on the hot path). Kept flat as it grows (see
 * `counter-slots`): a counter is a row of numbers off the V8 heap, a write goes into it in
 * place, and an expiry queue, not a walk over the map, finds the counters to drop.
 */
function memoryCounters(): MemoryCounterStore {
  const slots = counterSlots()
  // The rows of a call's keys and their stamps, reused call after call (a call runs to
  // completion).
  const rows: number[] = []
  const stamps: number[] = []
  // The values given to a step, a list for each count of keys (a step reads `current.length`),
  // reused call after call as the views in it are.
  const currentOf = listsByLength<StoredCounter | undefined>()
  return syncCountersFromState<{ readonly size: number; sweep(now: number): number }>(
    {
      transact(keys, step, places) {
        const n = keys.length
        // Places are given for the first keys only (a call's own record has none).
        const placed = places === undefined ? 0 : Math.min(places.length, n)
        while (rows.length < n) {
          rows.push(-1)
          stamps.push(0)
        }
        // The rows first, then their values: the first read of each row (its stamp) is a
        // cache miss among a million counters, and in a short loop of their own the processor
        // has the next one under way while it waits for the last (a view between them, a few
        // hundred instructions, left them one after the other).
        for (let i = 0; i < n; i++) {
          // A place is checked against the row itself (its stamp), not the row's key: one
          // cache line. A key without one, or with a stale one, is looked up by name.
          const p = i < placed ? places![i]! : undefined
          let r = p === undefined ? -1 : p.where
          let s = p === undefined ? 0 : p.stamp
          if (!slots.owns(r, s)) {
            r = slots.find(keys[i]!)
            s = slots.stamp(r)
            if (p !== undefined) setPlace(p, r, s)
          }
          rows[i] = r
          stamps[i] = s
        }
        const current = currentOf(n)
        for (let i = 0; i < n; i++) current[i] = slots.view(rows[i]!, i)
        const { writes, result } = step(current)
        // A step writes its keys mostly in the order it read them: the row read goes with
        // its write, without a second lookup, and each write's key is looked for first after
        // the last one found (it was looked for from that one: every write after the first
        // compared its key with another counter's name, two strings to read).
        let j = 0
        for (let i = 0; i < writes.length; i++) {
          const w = writes[i]!
          let row = -1
          let stamp = 0
          let at = -1
          for (let k = 0; k < n; k++, j = j + 1 === n ? 0 : j + 1)
            if (keys[j] === w.key) {
              row = rows[j]!
              stamp = stamps[j]!
              at = j
              break
            }
          if (at >= 0) j = at + 1 === n ? 0 : at + 1
          const now = slots.write(w.key, w.value, row, stamp)
          // A counter made (or dropped, or its row taken anew) by this write: its place follows.
          if (at >= 0 && at < placed) {
            const s = slots.stamp(now)
            if (now !== row || s !== stamp) setPlace(places![at]!, now, s)
          }
        }
        slots.credit(keys.length)
        return result
      },
      sweep(now) {
        slots.sweepDue(now)
      },
    },
    {
      get size() {
        return slots.size
      },
      sweep(now: number) {
        return slots.sweepAll(now)
      },
    },
  )
}

function memoryUsage(maxEvents: number): UsageStore {
  // The newest `maxEvents` events in recording order, kept by field (`EventRing`): logs() scans
  // it, and a repeated id is found in its index.
  const ring = new EventRing(maxEvents)
  // Totals per account and hour, kept as events are recorded (evicted ones stay counted), so
  // a summary of whole hours reads totals, never the ring.
  const tallies = usageTallies()
  /** Adds (sign 1) or removes (sign -1) an admitted event to its hour's totals. */
  const count = (e: UsageEvent, sign: 1 | -1, place?: TallyPlace) => {
    if (!countsInSummary(e)) return
    tallies.add(e.accountId, e.time, usageCategory(e), usageKeyCategory(e), sign, e.units, place)
  }
  /** Records `events` (a repeated id once); `places[i]`, when given, is event i's tally place. */
  const record = (
    events: ReadonlyArray<UsageEvent>,
    places?: ReadonlyArray<TallyPlace | undefined>,
  ) => {
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      if (ring.has(e.id)) continue
      // The ring copies the fields: the caller may change its object afterwards.
      count(e, 1, places?.[i])
      ring.push(e)
    }
  }
  const newestFirst = (a: UsageEvent, b: UsageEvent) =>
    b.time - a.time || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0)
  const store: UsageStore = {
    async record(events) {
      record(events)
    },
    async summarize(accountId, from, to, filter): Promise<UsageSummary> {
      const out = emptySummary()
      const parts = splitUsageRange(from, to)
      if (parts.hours) {
        const [first, end] = parts.hours
        tallies.each(accountId, first, end, (category, keyCategory, requests, units) =>
          addToSummary(out, category, keyCategory, requests, units, filter),
        )
      }
      // Sub-hour edges (a range not on hour boundaries): the kept events.
      if (parts.edges.length > 0)
        for (let i = 0; i < ring.size; i++) {
          if (ring.accountIdAt(i) !== accountId) continue
          const e = ring.at(i)
          if (!countsInSummary(e)) continue
          for (const [a, b] of parts.edges)
            if (e.time >= a && e.time < b)
              addToSummary(out, usageCategory(e), usageKeyCategory(e), 1, e.units, filter)
        }
      return out
    },
    async logs(keyId, { limit, cursor }): Promise<Page<UsageEvent>> {
      const all: UsageEvent[] = []
      for (let i = 0; i < ring.size; i++) if (ring.keyIdAt(i) === keyId) all.push(ring.at(i))
      all.sort(newestFirst)
      let start = 0
      if (cursor) {
        const [t, id] = decodeLogCursor(cursor)
        while (
          start < all.length &&
          (all[start]!.time > t || (all[start]!.time === t && all[start]!.id >= id))
        )
          start++
      }
      // Events the ring made for this read: the caller's own.
      const data = all.slice(start, start + limit)
      const last = data[data.length - 1]
      const nextCursor = start + limit < all.length && last ? encodeLogCursor(last) : null
      return { data, nextCursor }
    },
    async prune(before) {
      let n = 0
      // Admitted events removed from hours that go as a whole: the rest of those hours'
      // totals are evicted events, counted as pruned too.
      let inWholeHours = 0
      for (let i = 0; i < ring.size; i++) {
        const time = ring.timeAt(i)
        if (time >= before) continue
        n++
        const e = ring.at(i)
        // An event of the hour holding `before` leaves its totals, which stay exact.
        if (time - (time % USAGE_HOUR_MS) + USAGE_HOUR_MS > before) count(e, -1)
        else if (countsInSummary(e)) inWholeHours++
      }
      if (n > 0) ring.retain((i) => ring.timeAt(i) >= before)
      n += tallies.prune(before)
      return n - inWholeHours
    },
  }
  // The out-box records with its events' places (`TallyPlace`); `record` is the contract's.
  return withPlacedRecord(store, record)
}

/** The cursor of a log page: the last event's time and id. Opaque to API clients. */
export function encodeLogCursor(e: Pick<UsageEvent, 'time' | 'id'>): string {
  return `${e.time}.${e.id}`
}

/**
 * The time and id in a log cursor.
 * @throws {InvalidRequestError} (400, naming `cursor`) when it is not one this API returned
 */
export function decodeLogCursor(cursor: string): [number, string] {
  const dot = cursor.indexOf('.')
  const time = Number(cursor.slice(0, dot))
  if (dot <= 0 || !Number.isSafeInteger(time) || dot === cursor.length - 1) {
    throw new InvalidRequestError('Invalid request: cursor: not a cursor of this list', [
      { path: 'cursor', message: 'not a cursor of this list' },
    ])
  }
  return [time, cursor.slice(dot + 1)]
}

/**
 * A copy of an account record, its fields written in one literal: the object holds all nine
 * itself. `clone`'s empty object given them one by one kept the last four in a property array
 * of its own, 128 bytes more per stored account.
 */
function copyAccount(a: AccountRecord): AccountRecord {
  return {
    id: a.id,
    tier: a.tier,
    balance: a.balance,
    carryover: a.carryover,
    periodStart: a.periodStart,
    tierExpiresAt: a.tierExpiresAt,
    billingCustomerId: a.billingCustomerId,
    metadata: clone(a.metadata),
    closedPeriods: a.closedPeriods === undefined ? undefined : clone(a.closedPeriods),
  }
}

function memoryAccounts(): AccountStore {
  const byId = new Map<string, AccountRecord>()
  /** Top-ups' idempotency records: each account's, by key. */
  const topUps = new Map<string, Map<string, { amount: number; expiresAt: number }>>()
  /**
   * When records expire (a min-heap of times, ms) and the records kept with each time: a
   * top-up drops the expired ones, whichever account they are of and whatever was kept
   * before them (a billing grant's 35 days hold back no one's 24 hours).
   */
  const expiries: number[] = []
  const expiring = new Map<number, Array<[accountId: string, key: string]>>()
  const prune = (now: number) => {
    while (expiries.length > 0 && expiries[0]! <= now) {
      const at = heapPop(expiries)
      for (const [id, key] of expiring.get(at) ?? []) {
        const records = topUps.get(id)
        // Replaced since (expired, then kept again by a later top-up): left to its own time.
        if (records === undefined || (records.get(key)?.expiresAt ?? at) !== at) continue
        records.delete(key)
        if (records.size === 0) topUps.delete(id)
      }
      expiring.delete(at)
    }
  }
  return markInProcess<AccountStore>({
    async get(id) {
      const a = byId.get(id)
      return a ? copyAccount(a) : null
    },
    async ensure(defaults) {
      let a = byId.get(defaults.id)
      if (a === undefined) {
        a = copyAccount(defaults)
        a.metadata = sharedIfEmpty(a.metadata)
        byId.set(defaults.id, a)
      }
      return copyAccount(a)
    },
    async update(id, patch, ifPeriodStart) {
      const a = byId.get(id)
      if (!a || (ifPeriodStart !== undefined && a.periodStart !== ifPeriodStart)) return null
      const { addToBalance, ...fields } = patch
      Object.assign(a, clone(fields))
      if (addToBalance !== undefined) a.balance = roundAmount(a.balance + addToBalance)
      a.metadata = sharedIfEmpty(a.metadata)
      return copyAccount(a)
    },
    async addBalance(id, amount) {
      const a = byId.get(id)
      if (!a) return null
      a.balance = roundAmount(a.balance + amount)
      return copyAccount(a)
    },
    async topUp(id, t) {
      prune(t.now)
      let records = topUps.get(id)
      const r = records?.get(t.key)
      if (r !== undefined && r.expiresAt > t.now) return { applied: false, amount: r.amount }
      const a = byId.get(id)
      if (!a) return null
      a.balance = roundAmount(a.balance + t.amount)
      if (records === undefined) {
        records = new Map()
        topUps.set(id, records)
      }
      records.set(t.key, { amount: t.amount, expiresAt: t.expiresAt })
      const at = expiring.get(t.expiresAt)
      if (at !== undefined) at.push([id, t.key])
      else {
        expiring.set(t.expiresAt, [[id, t.key]])
        heapPush(expiries, t.expiresAt)
      }
      return { applied: true, amount: t.amount }
    },
  })
}

function memorySecrets(): SecretStore {
  const byAccount = new Map<string, Map<string, ProviderKeyRecord>>()
  return {
    async put(r) {
      const m = byAccount.get(r.accountId) ?? new Map<string, ProviderKeyRecord>()
      byAccount.set(r.accountId, m)
      m.set(r.provider, clone(r))
    },
    async get(accountId, provider) {
      const r = byAccount.get(accountId)?.get(provider)
      return r ? clone(r) : null
    },
    async list(accountId) {
      return [...(byAccount.get(accountId)?.values() ?? [])]
        .sort((a, b) => (a.provider < b.provider ? -1 : 1))
        .map(clone)
    },
    async delete(accountId, provider) {
      return byAccount.get(accountId)?.delete(provider) ?? false
    },
  }
}

const memoryOptionsSchema = z.object({ maxEvents: integer(1).default(10_000) }).strict()

export interface MemoryStorageOptions {
  /**
   * Usage events kept for request logs (default 10,000): past it, the oldest are dropped
   * and summed per account and hour, so usage summaries stay whole (to the hour) while the
   * process's memory stays bounded. Retaining every event of a long-running process would
   * grow its heap, and the garbage collector's work, without end.
   */
  maxEvents?: number
}

/**
 * Storage in this process's memory: the default of `createTollbooth()`.
 *
 * @param [options.maxEvents=10000] usage events kept for logs; older ones are summed per hour
 * @throws {ConfigError} naming a bad option
 * @returns a fresh, empty {@link Storage}; give the same value to two tollbooth instances
 *   only if they must share counters.
 * @example
 * ```ts
 * const tb = createTollbooth({ secret, storage: memoryStorage() })
 * ```
 */
export function memoryStorage(
  options: MemoryStorageOptions = {},
): Storage & { counters: MemoryCounterStore } {
  const { maxEvents } = parseOptions('memoryStorage', memoryOptionsSchema, options)
  return {
    keys: memoryKeys(),
    counters: memoryCounters(),
    usage: memoryUsage(maxEvents),
    accounts: memoryAccounts(),
    secrets: memorySecrets(),
    ipBlocks: memoryIpBlocks(),
  }
}
