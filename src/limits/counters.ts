/**
 * @module limits/counters
 *
 * The counter semantics of `CounterStore`, written once and free of I/O: given the stored
 * values of the counters a call touches, at `now`, what the call answers and what it writes.
 * `storage/state-counters` runs these steps inside a backend's `transact`, which is all a
 * store for a new database has to provide; the memory store and PostgreSQL run them so.
 * Redis runs the same rules in Lua (`tollbooth/redis/scripts`), tested figure for figure
 * against this module.
 *
 * - `admitStep`: every check of an admission evaluated at `now` (`limits/rolling-window`,
 *   `limits/gcra`, `limits/hold`), all counted or none; the rebuild protocol (`Rebuild` in
 *   `storage/types`); an admission's record, and the tombstone of a cancel that came first.
 * - `settleStep`: releases, renewals of holds in flight, late additions and cancels
 *   (`limits/revert`), never refusing.
 * - `claimStep`: a marker set once until it expires.
 *
 * Each value written carries `expiresAt`, the time its state becomes the same as no state at
 * all (null: never), so a backend drops idle counters without knowing what they hold. A value
 * read with `expiresAt <= now` is taken as absent. A step changes no value it is given except
 * the ones it writes back, so a backend may pass its stored objects when its writes cannot fail
 * (an in-process Map), else fresh copies (parsed JSON).
 *
 * The states are plain JSON objects, told apart by their fields: a window `{ idx, n }`, a GCRA
 * limit `{ level, at }`, a hold counter `{ used, holds: [[id, amount, expiresAt]…] }` (each with the marks `rebuilt` and,
 * for holds, `keepUntil`), an admission's record or tombstone `{ mark: 'c' | 'x' }`, a claim
 * `{ claim: 1 }`.
 */

import type { AdmissionId, Check, CheckResult, ConsumeResult, SettleOp } from '../storage/types.js'
import { roundAmount } from './amount.js'
import { type GcraState, gcra, gcraAdd, gcraIdle } from './gcra.js'
import { addHold, dropHold, type HoldState, holdTotal, isHeld, renewHold } from './hold.js'
import { missingResult } from './rebuild.js'
import { gcraRemove, windowRemove } from './revert.js'
import { rollingWindow, type WindowState, windowAdd } from './rolling-window.js'

/** A counter's stored state: a JSON-serialisable plain object, opaque to the backend. */
export type CounterState = Record<string, unknown>

/** What a backend stores per counter key. `expiresAt` null: kept until overwritten. */
export interface StoredCounter {
  state: CounterState
  expiresAt: number | null
}

/** A write a step asks for; `value: null` deletes the key. */
export interface CounterWrite {
  key: string
  value: StoredCounter | null
}

/** What a step returns to `transact`: the writes to apply atomically, and the call's answer. */
export interface CounterStep<T> {
  writes: CounterWrite[]
  result: T
}

/** The stored values of a call's keys, in the order of its keys (undefined: absent). */
export type CurrentValues = ReadonlyArray<StoredCounter | undefined>

/** Marks kept beside the figures (see `Rebuild` in storage/types, and a hold's `keepUntil`). */
interface Marks {
  rebuilt?: true
  keepUntil?: number
}
type WindowCounter = WindowState & Marks
type HoldCounter = HoldState & Marks
type State = CounterState | undefined

/** The state of a value still live at `now`. */
export function liveState(v: StoredCounter | undefined, now: number): State {
  return v !== undefined && (v.expiresAt === null || v.expiresAt > now) ? v.state : undefined
}

const asWindow = (s: State) =>
  s !== undefined && Array.isArray(s.idx) ? (s as never as WindowCounter) : undefined
const asGcra = (s: State) =>
  s !== undefined && typeof s.level === 'number' ? (s as never as GcraState) : undefined
const asHold = (s: State) =>
  s !== undefined && typeof s.used === 'number' && Array.isArray(s.holds)
    ? (s as never as HoldCounter)
    : undefined
const markOf = (s: State): 'c' | 'x' | undefined =>
  s?.mark === 'c' || s?.mark === 'x' ? s.mark : undefined

/** When a window's last bucket leaves the window (never for all-time). */
function windowExpiry(s: WindowState, now: number, windowMs: number, bucketMs: number) {
  if (windowMs === 0) return null
  const last = s.idx[s.idx.length - 1]
  return last === undefined ? now : (last + Math.ceil(windowMs / bucketMs) + 1) * bucketMs
}

/** When the bucket has drained: the first millisecond `gcraIdle` holds (never early). */
function gcraExpiry(s: GcraState, limit: number, windowMs: number) {
  if (s.level <= 0) return s.at
  const e = s.at + Math.ceil(Math.round(s.level * windowMs) / limit)
  return gcraIdle(s, e, limit, windowMs) ? e : e + 1
}

/**
 * A hold counter is kept until its last hold expires and, with a `keepUntil`, until then (a
 * period's credits); without one, for as long as it has a settled total or was rebuilt.
 */
function holdExpiry(s: HoldCounter, now: number) {
  let end = now
  const hs = s.holds
  for (let i = 0; i < hs.length; i++) {
    const e = hs[i]![2]
    if (e > end) end = e
  }
  if (s.keepUntil !== undefined) {
    if (s.keepUntil > end) end = s.keepUntil
  } else if (s.used !== 0 || s.rebuilt) return null
  return Number.isFinite(end) ? Math.ceil(end) : null
}

/** A write of `state` until `expiresAt`; a delete when that is already past. */
function put(key: string, state: object, expiresAt: number | null, now: number): CounterWrite {
  const gone = expiresAt !== null && expiresAt <= now
  if (!reused.on) return { key, value: gone ? null : { state: state as CounterState, expiresAt } }
  let w = reused.list[reused.n]
  if (w === undefined) {
    w = {
      key: '',
      value: null,
      until: { state: EMPTY_STATE, expiresAt: 0.5 },
      kept: { state: EMPTY_STATE, expiresAt: null },
    }
    reused.list.push(w)
  }
  reused.n++
  w.key = key
  if (gone) w.value = null
  else if (expiresAt === null) {
    w.kept.state = state as CounterState
    w.value = w.kept
  } else {
    // A field that only ever holds a double takes a new one in place; one that also held
    // null would box each (16 bytes).
    w.until.state = state as CounterState
    w.until.expiresAt = expiresAt
    w.value = w.until
  }
  return w
}

/**
 * A write `put` hands out again while {@link reuseWrites} is on, with its value's objects: one
 * for a value that expires, one for a value kept until overwritten.
 */
interface ReusedWrite extends CounterWrite {
  until: { state: CounterState; expiresAt: number }
  kept: StoredCounter
}

/** The writes `put` reuses, and how many of them the call under way has taken. */
const reused: { on: boolean; list: ReusedWrite[]; n: number } = { on: false, list: [], n: 0 }
const EMPTY_STATE: CounterState = Object.freeze({})

/**
 * While on, the steps' writes are objects of this module's, handed out again by the next call:
 * for a backend that applies a step's writes before `transact` returns and keeps none of
 * them (the memory store, through `syncCountersFromState`). Four writes of two objects each
 * were about 400 bytes of garbage a request. Turned off, the writes are the caller's.
 */
export function reuseWrites(on: boolean): void {
  reused.on = on
  reused.n = 0
}

const newHold = (): HoldCounter => ({ used: 0, holds: [] })

/** Records the later of a counter's `keepUntil` and `keepUntil`. */
function keep(s: HoldCounter, keepUntil: number | undefined): void {
  if (keepUntil !== undefined && !(s.keepUntil !== undefined && s.keepUntil >= keepUntil))
    s.keepUntil = keepUntil
}

/**
 * What `evaluate` leaves beside the result it answers, read by `admitStep` before the next
 * check is evaluated (a step runs to its end synchronously: one object for every call, not
 * one a check).
 */
const evaluated: {
  /**
   * What `commit` writes once every check passed: a window's or GCRA limit's next state, or
   * the hold counter to add the hold to (undefined: a new one).
   */
  next: object | undefined
  /** Written whatever the outcome: the check rebuilt its counter. */
  seeded: CounterWrite | null
} = { next: undefined, seeded: null }

/** `admitStep`'s next states, one a check (see there). */
const nextStates: Array<object | undefined> = []

/** The result of one check evaluated, with `next` and `seeded` left in {@link evaluated}. */
function result(
  r: CheckResult,
  next: object | undefined,
  seeded: CounterWrite | null,
): CheckResult {
  evaluated.next = next
  evaluated.seeded = seeded
  return r
}

/** Evaluates one check against a counter's state; changes nothing it is given. */
function evaluate(check: Check, state: State, now: number): CheckResult {
  switch (check.type) {
    case 'window': {
      const { key, limit, windowMs, bucketMs, cost } = check
      let s: WindowState | undefined = asWindow(state)
      const rebuilt = (s as WindowCounter | undefined)?.rebuilt === true
      const r = check.rebuild
      const seeding = r !== undefined && !rebuilt
      if (seeding) {
        if (r.base === undefined) return result(missingResult(limit), undefined, null)
        // The larger of the two (see the hold's case below).
        const had = rollingWindow(s, now, Infinity, windowMs, bucketMs, 0).used
        s = windowAdd(s, now, windowMs, bucketMs, Math.max(0, r.base - had))
      }
      const v = rollingWindow(s, now, limit, windowMs, bucketMs, cost)
      const next = v.state as WindowCounter
      if (rebuilt || seeding) next.rebuilt = true
      // Rebuilt, the counter is written whatever the admission's outcome, without this
      // request's cost (counted only when every check passes).
      let seeded: CounterWrite | null = null
      if (seeding) {
        const w = s as WindowCounter
        w.rebuilt = true
        seeded = put(key, w, windowExpiry(w, now, windowMs, bucketMs), now)
      }
      return result(
        {
          allowed: v.allowed,
          limit,
          used: v.used,
          remaining: v.remaining,
          resetMs: v.resetMs,
          retryAfterMs: v.retryAfterMs,
        },
        next,
        seeded,
      )
    }
    case 'gcra': {
      const { limit, windowMs, cost } = check
      const v = gcra(asGcra(state), now, limit, windowMs, cost)
      return result(
        {
          allowed: v.allowed,
          limit,
          used: limit - v.remaining,
          remaining: v.remaining,
          resetMs: v.resetMs,
          retryAfterMs: v.retryAfterMs,
        },
        v.state,
        null,
      )
    }
    case 'hold': {
      const { key, limit, amount } = check
      let s = asHold(state)
      let seeded: CounterWrite | null = null
      const r = check.rebuild
      if (r !== undefined && s?.rebuilt !== true) {
        if (r.base === undefined) return result(missingResult(limit), undefined, null)
        // The larger of the two: an unmarked counter may hold settles made since the loss
        // (then mostly in the base too), or be a whole count kept from before rebuilds. A
        // rebuilt counter is written whatever the admission's outcome.
        s ??= newHold()
        s.used = Math.max(s.used, r.base)
        s.rebuilt = true
        keep(s, check.keepUntil)
        seeded = put(key, s, holdExpiry(s, now), now)
      }
      // Sums and differences of amounts on the amount grid (`limits/amount`), as in `hold()`.
      const total = holdTotal(s, now)
      const after = roundAmount(total + amount)
      const allowed = after <= limit
      const used = allowed ? after : total
      return result(
        {
          allowed,
          limit,
          used,
          remaining: Math.max(0, roundAmount(limit - used)),
          resetMs: 0,
          retryAfterMs: allowed ? 0 : 1000,
        },
        s,
        seeded,
      )
    }
  }
}

/** The write of a check that passed, once every check of its admission passed. */
function commit(check: Check, next: object | undefined, now: number): CounterWrite {
  switch (check.type) {
    case 'window': {
      const s = next as WindowState
      return put(check.key, s, windowExpiry(s, now, check.windowMs, check.bucketMs), now)
    }
    case 'gcra': {
      const s = next as GcraState
      return put(check.key, s, gcraExpiry(s, check.limit, check.windowMs), now)
    }
    case 'hold': {
      const h = (next as HoldCounter | undefined) ?? newHold()
      addHold(h, now, check.holdId, check.amount, check.ttlMs)
      keep(h, check.keepUntil)
      return put(check.key, h, holdExpiry(h, now), now)
    }
  }
}

/** The answer to an admission a cancel came before: nothing counted. */
export function cancelled(checks: ReadonlyArray<Check>): ConsumeResult {
  return {
    allowed: false,
    results: checks.map(
      (c): CheckResult => ({
        allowed: false,
        limit: c.limit,
        used: 0,
        remaining: 0,
        resetMs: 0,
        retryAfterMs: 1000,
      }),
    ),
  }
}

const ADMITTED: CounterState = Object.freeze({ mark: 'c' })
const CANCELLED: CounterState = Object.freeze({ mark: 'x' })
const CLAIMED: CounterState = Object.freeze({ claim: 1 })

/**
 * The keys an admission reads, in the order `admitStep` expects its values; in a list of
 * `into(n)` when given (one of the caller's, of that length), else a new one.
 */
export function admitKeys(
  checks: ReadonlyArray<Check>,
  admission?: AdmissionId,
  into?: (n: number) => string[],
): string[] {
  const n = checks.length + (admission ? 1 : 0)
  const keys: string[] = into === undefined ? new Array(n) : into(n)
  for (let i = 0; i < checks.length; i++) keys[i] = checks[i]!.key
  if (admission) keys[checks.length] = admission.key
  return keys
}

/**
 * `CounterStore.consume` as a step over the values of `admitKeys(checks, admission)`: every
 * check evaluated at `now`, all counted only when all pass (see `storage/types`).
 */
export function admitStep(
  checks: ReadonlyArray<Check>,
  current: CurrentValues,
  now: number,
  admission?: AdmissionId,
): CounterStep<ConsumeResult> {
  if (admission && markOf(liveState(current[checks.length], now)) === 'x')
    return { writes: [], result: cancelled(checks) }
  const results: CheckResult[] = new Array(checks.length)
  // The next states, kept for `commit` in a list of this module's (a step runs to its end
  // synchronously), emptied before the step returns.
  const next = nextStates
  let seeded: CounterWrite[] | null = null
  let allowed = true
  for (let i = 0; i < checks.length; i++) {
    const r = evaluate(checks[i]!, liveState(current[i], now), now)
    results[i] = r
    next[i] = evaluated.next
    if (!r.allowed) allowed = false
    if (evaluated.seeded) {
      seeded ??= []
      seeded.push(evaluated.seeded)
    }
  }
  evaluated.next = undefined
  evaluated.seeded = null
  let writes: CounterWrite[] = seeded ?? []
  if (allowed) {
    // An array of its length (one that grows by push makes room for 17 at its first push).
    const n = checks.length
    writes = new Array<CounterWrite>(admission ? n + 1 : n)
    for (let i = 0; i < n; i++) writes[i] = commit(checks[i]!, next[i], now)
    // The record only with the counts: a refused admission (a `missing` one included) writes
    // none, so the same id may be consumed again after a rebuild.
    if (admission) writes[n] = put(admission.key, ADMITTED, Math.ceil(now + admission.ttlMs), now)
  }
  for (let i = 0; i < checks.length; i++) next[i] = undefined
  return { writes, result: { allowed, results } }
}

/** The keys a settle reads: each op's counter, and a cancel's record and checks (`into`: as `admitKeys`'s). */
export function settleKeys(ops: ReadonlyArray<SettleOp>, into?: (n: number) => string[]): string[] {
  // Indexed loops: a `for…of` here left an iterator and its results a call.
  let n = ops.length
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!
    if (op.type === 'cancel') n += op.checks.length
    else if (op.type === 'release' && op.record !== undefined) n++
  }
  const keys = into === undefined ? new Array<string>(n) : into(n)
  let k = 0
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!
    if (op.type === 'add') keys[k++] = op.check.key
    else {
      keys[k++] = op.key
      if (op.type === 'cancel')
        for (let j = 0; j < op.checks.length; j++) keys[k++] = op.checks[j]!.key
      else if (op.type === 'release' && op.record !== undefined) keys[k++] = op.record.key
    }
  }
  return keys
}

/** One release or add applied to a state; null when it changes nothing. */
function applyOp(
  op: Exclude<SettleOp, { type: 'cancel' }>,
  state: State,
  now: number,
): CounterWrite | null {
  if (op.type === 'release') {
    const s = asHold(state)
    // A retried release whose hold is gone changes nothing (no empty counter is written).
    if (op.ifHeld && op.record === undefined && !isHeld(s, now, op.holdId)) return null
    const h = s ?? newHold()
    dropHold(h, now, op.holdId, op.charge)
    keep(h, op.keepUntil)
    return put(op.key, h, holdExpiry(h, now), now)
  }
  if (op.type === 'renew') {
    // Only a hold still there (never one its settle released meanwhile).
    const s = asHold(state)
    if (!s || !renewHold(s, now, op.holdId, op.ttlMs)) return null
    keep(s, op.keepUntil)
    return put(op.key, s, holdExpiry(s, now), now)
  }
  const k = op.check
  if (k.type === 'window') {
    const before = asWindow(state)
    const s = windowAdd(before, now, k.windowMs, k.bucketMs, k.cost) as WindowCounter
    if (before?.rebuilt) s.rebuilt = true
    return put(k.key, s, windowExpiry(s, now, k.windowMs, k.bucketMs), now)
  }
  const s = gcraAdd(asGcra(state), now, k.limit, k.windowMs, k.cost)
  return put(k.key, s, gcraExpiry(s, k.limit, k.windowMs), now)
}

/**
 * One check of a cancelled admission taken back (see `SettleOp` `cancel`); the counter's marks
 * stay (rebuilt, keepUntil): a cancel takes back counts, not them. Null: nothing to change.
 */
function revert(check: Check, state: State, now: number, at: number): CounterWrite | null {
  switch (check.type) {
    case 'hold': {
      const s = asHold(state)
      if (!s || !isHeld(s, now, check.holdId)) return null
      dropHold(s, now, check.holdId, 0)
      return put(check.key, s, holdExpiry(s, now), now)
    }
    case 'window': {
      const { windowMs, bucketMs, cost } = check
      const before = asWindow(state)
      if (!before) return null
      // A count whose bucket has left the window at `now` is gone already: taking it from a
      // later bucket would take back another admission's count.
      if (
        windowMs !== 0 &&
        Math.floor(at / bucketMs) < Math.floor(now / bucketMs) - Math.ceil(windowMs / bucketMs)
      )
        return null
      const s = windowRemove(before, at, windowMs, bucketMs, cost) as WindowCounter
      if (before.rebuilt) s.rebuilt = true
      return put(check.key, s, windowExpiry(s, now, windowMs, bucketMs), now)
    }
    case 'gcra': {
      const { limit, windowMs, cost } = check
      const s = gcraRemove(asGcra(state), now, at, limit, windowMs, cost)
      return s ? put(check.key, s, gcraExpiry(s, limit, windowMs), now) : null
    }
  }
}

/**
 * `CounterStore.settle` as a step over the values of `settleKeys(ops)`: the ops applied in
 * order, each seeing the writes of the ones before it; never refuses.
 */
export function settleStep(
  ops: ReadonlyArray<SettleOp>,
  current: CurrentValues,
  now: number,
): CounterStep<void> {
  // At most one write per key, the latest; a settle has a few ops, so a list searched in
  // order is cheaper than a Map. At most one per key read: an array of that length, cut to
  // the writes made (one that grows by push makes room for 17 at its first push).
  const w: Writes = { list: new Array<CounterWrite>(current.length), n: 0 }
  let i = 0
  for (let o = 0; o < ops.length; o++) {
    const op = ops[o]!
    if (op.type === 'cancel') {
      const m = markOf(latest(w, op.key, current[i], now))
      const first = i + 1
      i += 1 + op.checks.length
      if (m === 'x') continue
      set(w, put(op.key, CANCELLED, Math.ceil(now + op.ttlMs), now))
      if (m === 'c')
        for (let j = 0; j < op.checks.length; j++) {
          const c = op.checks[j]!
          set(w, revert(c, latest(w, c.key, current[first + j], now), now, op.at))
        }
    } else if (op.type === 'release' && op.record !== undefined) {
      // Once per record (see `SettleOp`): its tombstone says a release of it has landed.
      const r = op.record
      const m = markOf(latest(w, r.key, current[i + 1], now))
      if (m !== 'x') {
        set(w, put(r.key, CANCELLED, Math.ceil(now + r.ttlMs), now))
        set(w, applyOp(op, latest(w, op.key, current[i], now), now))
      }
      i += 2
    } else {
      const key = op.type === 'add' ? op.check.key : op.key
      set(w, applyOp(op, latest(w, key, current[i], now), now))
      i++
    }
  }
  // Cut by `pop`, not a store to `length` (a call into the runtime: see `prune` in `hold`).
  while (w.list.length > w.n) w.list.pop()
  return { writes: w.list, result: undefined }
}

/** A settle's writes so far: the first `n` of `list`. */
interface Writes {
  list: CounterWrite[]
  n: number
}

/** The state of `key`: its latest write in `w`, else its value as read. */
function latest(w: Writes, key: string, read: StoredCounter | undefined, now: number): State {
  for (let k = 0; k < w.n; k++) {
    const x = w.list[k]!
    if (x.key === key) return x.value?.state
  }
  return liveState(read, now)
}

/** Adds `x` to `w`, in place of an earlier write of its key. */
function set(w: Writes, x: CounterWrite | null): void {
  if (!x) return
  for (let k = 0; k < w.n; k++)
    if (w.list[k]!.key === x.key) {
      w.list[k] = x
      return
    }
  w.list[w.n++] = x
}

/** `CounterStore.held` as a step over the value of `key`. */
export function heldStep(current: CurrentValues, now: number): CounterStep<number> {
  return { writes: [], result: holdTotal(asHold(liveState(current[0], now)), now) }
}

/** `CounterStore.claim` as a step over the value of `key`: true when this call set it. */
export function claimStep(
  key: string,
  ttlMs: number,
  current: CurrentValues,
  now: number,
): CounterStep<boolean> {
  if (liveState(current[0], now) !== undefined) return { writes: [], result: false }
  return { writes: [put(key, CLAIMED, Math.ceil(now + ttlMs), now)], result: true }
}

/** `CounterStore.claimed` as a step over the value of `key`. */
export function claimedStep(current: CurrentValues, now: number): CounterStep<boolean> {
  return { writes: [], result: liveState(current[0], now) !== undefined }
}

/** The algorithm a state belongs to (null: a record, a tombstone or a claim), for a backend's own bookkeeping. */
export function counterKind(state: CounterState): 'window' | 'gcra' | 'hold' | null {
  return asWindow(state) ? 'window' : asGcra(state) ? 'gcra' : asHold(state) ? 'hold' : null
}
