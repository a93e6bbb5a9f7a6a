/**
 * @module storage/memory
 *
 * The embedded default storage: everything in this process's memory, lost on exit. Right for
 * tests, demos and a single instance; several instances need `tollbooth/redis` or
 * `tollbooth/postgres`, since each process would count on its own.
 *
 * Counters run the `limits/` algorithms synchronously, so every `consume` is atomic by
 * construction (JavaScript runs it to completion). Idle counters are swept a few per call,
 * so memory stays proportional to the keys active within their longest window (about 500
 * bytes per active key with four limits, measured by `test/limits/memory-per-key.ts`).
 */

import { z } from 'zod'
import { InvalidRequestError } from '../errors.js'
import { type GcraState, gcra, gcraAdd, gcraIdle } from '../limits/gcra.js'
import { missingResult } from '../limits/rebuild.js'
import { gcraRemove, windowRemove } from '../limits/revert.js'
import { rollingWindow, type WindowState, windowAdd } from '../limits/rolling-window.js'
import {
  addToSummary,
  countsInSummary,
  splitUsageRange,
  USAGE_HOUR_MS,
  usageCategory,
} from '../metering/usage-buckets.js'
import { integer, parseOptions } from '../options.js'
import { memoryIpBlocks } from './memory-ip-blocks.js'
import type {
  AccountRecord,
  AccountStore,
  AdmissionId,
  Check,
  CheckResult,
  ConsumeResult,
  CounterStore,
  KeyRecord,
  KeyStore,
  Page,
  ProviderKeyRecord,
  SecretStore,
  SettleOp,
  Storage,
  UsageEvent,
  UsageStore,
  UsageSummary,
} from './types.js'

const clone = <T>(v: T): T => structuredClone(v)

/**
 * Counters examined for idleness per check of each call. Sweeping a few entries per call,
 * rather than the whole map every N calls, keeps every call O(checks): a full pass over a
 * million counters took one unlucky request 228 ms. Examining more entries than a call can
 * create keeps the pass ahead of the growth, so an idle counter goes within one pass.
 */
const SWEEP_PER_CHECK = 2

function memoryKeys(): KeyStore {
  const byId = new Map<string, KeyRecord>()
  const byHash = new Map<string, string>()
  const byAccount = new Map<string, Set<string>>()
  const insert = (k: KeyRecord) => {
    if (byId.has(k.id) || byHash.has(k.hash)) throw new Error('duplicate key id or hash')
    byId.set(k.id, clone(k))
    byHash.set(k.hash, k.id)
    const set = byAccount.get(k.accountId) ?? new Set<string>()
    byAccount.set(k.accountId, set)
    set.add(k.id)
  }
  return {
    inProcess: true,
    async insert(k) {
      insert(k)
    },
    async get(id) {
      const k = byId.get(id)
      return k ? clone(k) : null
    },
    async getByHash(hash) {
      const id = byHash.get(hash)
      const k = id === undefined ? undefined : byId.get(id)
      return k ? clone(k) : null
    },
    async list(accountId, { limit, cursor, kind, includeRevoked }) {
      const ids = [...(byAccount.get(accountId) ?? [])].sort().reverse()
      const data: KeyRecord[] = []
      let nextCursor: string | null = null
      for (const id of ids) {
        if (cursor && id >= cursor) continue
        const k = byId.get(id)!
        if (kind && k.kind !== kind) continue
        if (!includeRevoked && k.revokedAt !== null) continue
        if (data.length === limit) {
          nextCursor = data[data.length - 1]!.id
          break
        }
        data.push(clone(k))
      }
      return { data, nextCursor }
    },
    async update(id, patch) {
      const k = byId.get(id)
      if (!k) return null
      Object.assign(k, clone(patch))
      return clone(k)
    },
    async rotate(oldId, patch, next) {
      const k = byId.get(oldId)
      if (!k) return null
      insert(next)
      Object.assign(k, clone(patch))
      return clone(k)
    },
    async delete(id) {
      const k = byId.get(id)
      if (!k) return false
      byId.delete(id)
      byHash.delete(k.hash)
      byAccount.get(k.accountId)?.delete(id)
      return true
    },
    async touch(updates) {
      for (const { id, lastUsedAt } of updates) {
        const k = byId.get(id)
        if (k && (k.lastUsedAt === null || k.lastUsedAt < lastUsedAt)) k.lastUsedAt = lastUsedAt
      }
    },
  }
}

type Counter =
  | {
      type: 'window'
      state: WindowState
      windowMs: number
      bucketMs: number
      /** Rebuilt from the durable usage (see `Rebuild` in storage/types). */
      rebuilt?: true
    }
  | GcraCounter
  | HoldCounter
  | Mark

/** An admission's record (`c`: committed) or a cancel's tombstone (`x`), kept until `expiresAt`. */
interface Mark {
  type: 'mark'
  state: 'c' | 'x'
  expiresAt: number
}

/**
 * A GCRA counter is its own state (`level`, `at`): one object per counter, the smallest the
 * store keeps (an `Idempotency-Key` is one, for 24 hours).
 */
interface GcraCounter extends GcraState {
  type: 'gcra'
  limit: number
  windowMs: number
}

const gcraCounter = (s: GcraState, limit: number, windowMs: number): GcraCounter => ({
  type: 'gcra',
  level: s.level,
  at: s.at,
  limit,
  windowMs,
})

/**
 * A hold counter kept mutable, for speed: the same figures as `limits/hold` (a hold is live
 * while `expiresAt > now`), but adding and releasing a hold touch one Map entry instead of
 * copying every hold of the counter. `held` is the sum of the holds in the Map; expired ones
 * are dropped whenever `now` reaches `nextExpiry` (the earliest expiry in the Map, or earlier).
 */
interface HoldCounter {
  type: 'hold'
  used: number
  holds: Map<string, [amount: number, expiresAt: number]>
  held: number
  nextExpiry: number
  /** The latest `keepUntil` given (-Infinity: none, kept while `used` is not 0). */
  keepUntil: number
  rebuilt: boolean
}

function newHold(): HoldCounter {
  return {
    type: 'hold',
    used: 0,
    holds: new Map(),
    held: 0,
    nextExpiry: Infinity,
    keepUntil: -Infinity,
    rebuilt: false,
  }
}

/** Records a check's or release's `keepUntil` (the latest one wins). */
function keep(c: HoldCounter, keepUntil: number | undefined): void {
  if (keepUntil !== undefined && keepUntil > c.keepUntil) c.keepUntil = keepUntil
}

/** Drops live hold `id`; false when it was not there. */
function dropHold(h: HoldCounter, now: number, id: string): boolean {
  pruneHolds(h, now)
  const held = h.holds.get(id)
  if (!held) return false
  h.holds.delete(id)
  // Recount from zero when empty, so float amounts leave no drift behind.
  h.held = h.holds.size === 0 ? 0 : h.held - held[0]
  return true
}

/** The answer to an admission a cancel came before: nothing counted. */
function cancelled(checks: ReadonlyArray<Check>): ConsumeResult {
  return {
    allowed: false,
    results: checks.map((c) => ({
      allowed: false,
      limit: c.limit,
      used: 0,
      remaining: 0,
      resetMs: 0,
      retryAfterMs: 1000,
    })),
  }
}

/** Drops expired holds (they count for nothing either way, so this is safe before a refusal). */
function pruneHolds(c: HoldCounter, now: number): void {
  if (now < c.nextExpiry) return
  let held = 0
  let next = Infinity
  for (const [id, h] of c.holds) {
    if (h[1] <= now) c.holds.delete(id)
    else {
      held += h[0]
      if (h[1] < next) next = h[1]
    }
  }
  c.held = held
  c.nextExpiry = next
}

function idle(c: Counter, now: number): boolean {
  switch (c.type) {
    case 'window':
      return (
        c.windowMs !== 0 &&
        (c.state.idx.length === 0 ||
          c.state.idx[c.state.idx.length - 1]! <
            Math.floor(now / c.bucketMs) - Math.ceil(c.windowMs / c.bucketMs))
      )
    case 'gcra':
      return gcraIdle(c, now, c.limit, c.windowMs)
    case 'hold':
      pruneHolds(c, now)
      if (c.holds.size > 0) return false
      // Past its keepUntil a settled total no longer matters (a past period's credits).
      return c.keepUntil === -Infinity ? c.used === 0 && !c.rebuilt : now >= c.keepUntil
    case 'mark':
      return c.expiresAt <= now
  }
}

/** Evaluates one check against a counter without storing anything. */
function evaluate(
  check: Check,
  c: Counter | undefined,
  now: number,
): { result: CheckResult; next: Counter; seeded: boolean } {
  switch (check.type) {
    case 'window': {
      let state = c?.type === 'window' ? c.state : undefined
      const rebuilt = c?.type === 'window' && c.rebuilt === true
      const r = check.rebuild
      if (r && !rebuilt) {
        if (r.base === undefined) {
          const none = { idx: [], n: [] }
          return {
            result: missingResult(check.limit),
            next: {
              type: 'window',
              state: none,
              windowMs: check.windowMs,
              bucketMs: check.bucketMs,
            },
            seeded: false,
          }
        }
        // The larger of the two (see the hold's case below).
        const had = rollingWindow(state, now, Infinity, check.windowMs, check.bucketMs, 0).used
        state = windowAdd(state, now, check.windowMs, check.bucketMs, Math.max(0, r.base - had))
      }
      const v = rollingWindow(state, now, check.limit, check.windowMs, check.bucketMs, check.cost)
      return {
        result: {
          allowed: v.allowed,
          limit: check.limit,
          used: v.used,
          remaining: v.remaining,
          resetMs: v.resetMs,
          retryAfterMs: v.retryAfterMs,
        },
        next: {
          type: 'window',
          // Refused, it is the state before this request (the rebuilt count included).
          state: v.state,
          windowMs: check.windowMs,
          bucketMs: check.bucketMs,
          ...(r || rebuilt ? { rebuilt: true as const } : {}),
        },
        seeded: r !== undefined && !rebuilt,
      }
    }
    case 'gcra': {
      const v = gcra(
        c?.type === 'gcra' ? c : undefined,
        now,
        check.limit,
        check.windowMs,
        check.cost,
      )
      return {
        result: {
          allowed: v.allowed,
          limit: check.limit,
          used: check.limit - v.remaining,
          remaining: v.remaining,
          resetMs: v.resetMs,
          retryAfterMs: v.retryAfterMs,
        },
        next: gcraCounter(v.state, check.limit, check.windowMs),
        seeded: false,
      }
    }
    case 'hold': {
      // Evaluated in place: see consume(), which adds the hold only once every check passed.
      const h = c?.type === 'hold' ? c : newHold()
      let seeded = false
      if (check.rebuild && !h.rebuilt) {
        if (check.rebuild.base === undefined)
          return { result: missingResult(check.limit), next: h, seeded: false }
        // The larger of the two: an unmarked counter may hold settles made since the loss
        // (then mostly in the base too), or be a whole count kept from before rebuilds.
        h.used = Math.max(h.used, check.rebuild.base)
        h.rebuilt = true
        seeded = true
      }
      keep(h, check.keepUntil)
      pruneHolds(h, now)
      const total = h.used + h.held
      const allowed = total + check.amount <= check.limit
      const used = allowed ? total + check.amount : total
      return {
        result: {
          allowed,
          limit: check.limit,
          used,
          remaining: Math.max(0, check.limit - used),
          resetMs: 0,
          retryAfterMs: allowed ? 0 : 1000,
        },
        next: h,
        seeded,
      }
    }
  }
}

/** The memory store's counters, with what tests and operators may want to look at. */
export interface MemoryCounterStore extends CounterStore {
  /** Counters held now (idle ones included until the sweep reaches them). */
  readonly size: number
  /**
   * Drops every idle counter at once and returns how many went. Not needed for bounded
   * memory (each `consume` and `settle` sweeps a few); for tests, or a timer after a burst.
   */
  sweep(now: number): number
}

function memoryCounters(): MemoryCounterStore {
  const counters = new Map<string, Counter>()
  // A Map iterator visits entries added after it was made and tolerates deletes, so one
  // cursor walks the map round and round, a few entries per call.
  let cursor: MapIterator<[string, Counter]> | null = null
  const sweep = (now: number, budget: number) => {
    for (let i = 0; i < budget; i++) {
      cursor ??= counters.entries()
      const n = cursor.next()
      if (n.done) {
        cursor = null
        return
      }
      if (idle(n.value[1], now)) counters.delete(n.value[0])
    }
  }
  /** The live record or tombstone of an admission, if any. */
  const markOf = (key: string, now: number): Mark | undefined => {
    const m = counters.get(key)
    return m?.type === 'mark' && m.expiresAt > now ? m : undefined
  }
  function consumeSync(
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
  ): ConsumeResult {
    sweep(now, SWEEP_PER_CHECK * checks.length + 1)
    if (admission && markOf(admission.key, now)?.state === 'x') return cancelled(checks)
    const results: CheckResult[] = []
    const next: Counter[] = []
    let allowed = true
    for (const check of checks) {
      const e = evaluate(check, counters.get(check.key), now)
      results.push(e.result)
      next.push(e.next)
      if (!e.result.allowed) allowed = false
      // A rebuilt counter is stored whatever the admission's outcome.
      if (e.seeded) counters.set(check.key, e.next)
    }
    if (allowed) {
      for (let i = 0; i < checks.length; i++) {
        const check = checks[i]!
        const n = next[i]!
        if (n.type === 'hold' && check.type === 'hold') {
          const expiresAt = now + check.ttlMs
          const prev = n.holds.get(check.holdId)
          if (prev) n.held -= prev[0]
          n.holds.set(check.holdId, [check.amount, expiresAt])
          n.held += check.amount
          if (expiresAt < n.nextExpiry) n.nextExpiry = expiresAt
        }
        counters.set(check.key, n)
      }
      if (admission)
        counters.set(admission.key, { type: 'mark', state: 'c', expiresAt: now + admission.ttlMs })
    }
    return { allowed, results }
  }
  /** Undoes a recorded admission (see `SettleOp` `cancel`), or leaves a tombstone first. */
  function cancel(op: Extract<SettleOp, { type: 'cancel' }>, now: number): void {
    const m = markOf(op.key, now)
    if (m?.state === 'x') return
    counters.set(op.key, { type: 'mark', state: 'x', expiresAt: now + op.ttlMs })
    if (!m) return
    for (const check of op.checks) {
      const c = counters.get(check.key)
      if (check.type === 'hold') {
        if (c?.type === 'hold') dropHold(c, now, check.holdId)
      } else if (check.type === 'window') {
        if (c?.type === 'window') {
          const state = windowRemove(c.state, op.at, check.windowMs, check.bucketMs, check.cost)
          if (state) c.state = state
        }
      } else if (c?.type === 'gcra') {
        const state = gcraRemove(c, now, op.at, check.limit, check.windowMs, check.cost)
        if (state) {
          c.level = state.level
          c.at = state.at
        }
      }
    }
  }
  function settleSync(ops: ReadonlyArray<SettleOp>, now: number): void {
    sweep(now, SWEEP_PER_CHECK * ops.length + 1)
    for (const op of ops) {
      if (op.type === 'release') {
        const c = counters.get(op.key)
        const h = c?.type === 'hold' ? c : newHold()
        if (!dropHold(h, now, op.holdId) && op.ifHeld) continue
        keep(h, op.keepUntil)
        h.used += op.charge
        counters.set(op.key, h)
      } else if (op.type === 'cancel') {
        cancel(op, now)
      } else if (op.check.type === 'window') {
        const { key, windowMs, bucketMs, cost } = op.check
        const c = counters.get(key)
        counters.set(key, {
          type: 'window',
          state: windowAdd(
            c?.type === 'window' ? c.state : undefined,
            now,
            windowMs,
            bucketMs,
            cost,
          ),
          windowMs,
          bucketMs,
          ...(c?.type === 'window' && c.rebuilt ? { rebuilt: true as const } : {}),
        })
      } else {
        const { key, limit, windowMs, cost } = op.check
        const c = counters.get(key)
        const s = gcraAdd(c?.type === 'gcra' ? c : undefined, now, limit, windowMs, cost)
        counters.set(key, gcraCounter(s, limit, windowMs))
      }
    }
  }
  return {
    inProcess: true,
    get size() {
      return counters.size
    },
    sweep(now) {
      const before = counters.size
      for (const [k, c] of counters) if (idle(c, now)) counters.delete(k)
      return before - counters.size
    },
    consumeSync,
    settleSync,
    async consume(checks, now, admission) {
      return consumeSync(checks, now, admission)
    },
    async settle(ops, now) {
      settleSync(ops, now)
    },
    async held(key, now) {
      const c = counters.get(key)
      if (c?.type !== 'hold') return 0
      if (idle(c, now)) {
        counters.delete(key)
        return 0
      }
      return c.used + c.held
    },
  }
}

/** A stored copy of an event: a literal, not a spread (V8's slow path on Node 20). */
function copyEvent(e: UsageEvent): UsageEvent {
  return {
    id: e.id,
    requestId: e.requestId,
    keyId: e.keyId,
    accountId: e.accountId,
    time: e.time,
    units: e.units,
    overage: e.overage,
    tokens: e.tokens,
    category: e.category,
    status: e.status,
    durationMs: e.durationMs,
    ttfbMs: e.ttfbMs,
    code: e.code,
    ip: e.ip,
    method: e.method,
    path: e.path,
    bypassed: e.bypassed,
    provider: e.provider,
  }
}

/** An account's admitted requests and units of one hour, per category: [requests, units]. */
type Tally = Map<string, [number, number]>

function memoryUsage(maxEvents: number): UsageStore {
  const ids = new Set<string>()
  // The newest `maxEvents` events in recording order, as one ring: it grows by push until
  // full, then each new event takes the oldest one's slot (at `head`). logs() scans it.
  let ring: UsageEvent[] = []
  let head = 0
  // Totals per account and hour, kept as events are recorded (evicted ones stay counted), so
  // a summary of whole hours reads totals, never the ring.
  const tallies = new Map<string, Map<number, Tally>>()
  // Events come mostly of one account and hour in a row: the last tally found.
  let last: { accountId: string; hour: number; tally: Tally } | null = null
  const tallyOf = (e: UsageEvent): Tally => {
    const hour = e.time - (e.time % USAGE_HOUR_MS)
    if (last !== null && last.accountId === e.accountId && last.hour === hour) return last.tally
    let hours = tallies.get(e.accountId)
    if (!hours) {
      hours = new Map()
      tallies.set(e.accountId, hours)
    }
    let t = hours.get(hour)
    if (!t) {
      t = new Map()
      hours.set(hour, t)
    }
    last = { accountId: e.accountId, hour, tally: t }
    return t
  }
  /** Adds (sign 1) or removes (sign -1) an admitted event to its hour's totals. */
  const count = (e: UsageEvent, sign: 1 | -1) => {
    if (!countsInSummary(e)) return
    const t = tallyOf(e)
    const cat = usageCategory(e)
    const c = t.get(cat)
    if (c) {
      c[0] += sign
      c[1] += sign * e.units
      if (c[0] === 0) t.delete(cat)
    } else if (sign === 1) t.set(cat, [1, e.units])
  }
  /** The stored events, oldest first (a copy of the ring's order). */
  const inOrder = (): UsageEvent[] =>
    head === 0 ? ring.slice() : ring.slice(head).concat(ring.slice(0, head))
  const newestFirst = (a: UsageEvent, b: UsageEvent) =>
    b.time - a.time || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0)
  return {
    async record(events) {
      for (const e of events) {
        if (ids.has(e.id)) continue
        // Events are flat records: a copy keeps the caller from changing stored ones.
        const copy = copyEvent(e)
        ids.add(e.id)
        count(copy, 1)
        if (ring.length < maxEvents) ring.push(copy)
        else {
          ids.delete(ring[head]!.id)
          ring[head] = copy
          head = head + 1 === ring.length ? 0 : head + 1
        }
      }
    },
    async summarize(accountId, from, to): Promise<UsageSummary> {
      const out: UsageSummary = { requests: 0, units: 0, byCategory: {} }
      const parts = splitUsageRange(from, to)
      const hours = tallies.get(accountId)
      if (hours && parts.hours) {
        const [first, end] = parts.hours
        const add = (t: Tally) => {
          for (const [cat, [requests, units]] of t) addToSummary(out, cat, requests, units)
        }
        // Whichever is shorter: the hours of the range, or the hours the account has.
        if ((end - first) / USAGE_HOUR_MS <= hours.size)
          for (let h = first; h < end; h += USAGE_HOUR_MS) {
            const t = hours.get(h)
            if (t) add(t)
          }
        else for (const [h, t] of hours) if (h >= first && h < end) add(t)
      }
      // Sub-hour edges (a range not on hour boundaries): the kept events.
      if (parts.edges.length > 0)
        for (const e of ring) {
          if (e.accountId !== accountId || !countsInSummary(e)) continue
          for (const [a, b] of parts.edges)
            if (e.time >= a && e.time < b) addToSummary(out, usageCategory(e), 1, e.units)
        }
      return out
    },
    async logs(keyId, { limit, cursor }): Promise<Page<UsageEvent>> {
      const all = ring.filter((e) => e.keyId === keyId).sort(newestFirst)
      let start = 0
      if (cursor) {
        const [t, id] = decodeLogCursor(cursor)
        while (
          start < all.length &&
          (all[start]!.time > t || (all[start]!.time === t && all[start]!.id >= id))
        )
          start++
      }
      const data = all.slice(start, start + limit).map(clone)
      const last = data[data.length - 1]
      const nextCursor = start + limit < all.length && last ? encodeLogCursor(last) : null
      return { data, nextCursor }
    },
    async prune(before) {
      const kept = inOrder().filter((e) => e.time >= before)
      let n = ring.length - kept.length
      // Admitted events removed from hours that go as a whole: the rest of those hours'
      // totals are evicted events, counted as pruned too.
      let inWholeHours = 0
      if (n > 0) {
        for (const e of ring)
          if (e.time < before) {
            ids.delete(e.id)
            // An event of the hour holding `before` leaves its totals, which stay exact.
            if (e.time - (e.time % USAGE_HOUR_MS) + USAGE_HOUR_MS > before) count(e, -1)
            else if (countsInSummary(e)) inWholeHours++
          }
        ring = kept
        head = 0
      }
      last = null
      for (const [account, hours] of tallies) {
        for (const [hour, t] of hours) {
          if (hour + USAGE_HOUR_MS > before) continue
          hours.delete(hour)
          for (const [r] of t.values()) n += r
        }
        if (hours.size === 0) tallies.delete(account)
      }
      return n - inWholeHours
    },
  }
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

function memoryAccounts(): AccountStore {
  const byId = new Map<string, AccountRecord>()
  return {
    inProcess: true,
    async get(id) {
      const a = byId.get(id)
      return a ? clone(a) : null
    },
    async ensure(defaults) {
      const a = byId.get(defaults.id) ?? clone(defaults)
      byId.set(defaults.id, a)
      return clone(a)
    },
    async update(id, patch, ifPeriodStart) {
      const a = byId.get(id)
      if (!a || (ifPeriodStart !== undefined && a.periodStart !== ifPeriodStart)) return null
      Object.assign(a, clone(patch))
      return clone(a)
    },
    async addBalance(id, amount) {
      const a = byId.get(id)
      if (!a) return null
      a.balance += amount
      return clone(a)
    },
  }
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
