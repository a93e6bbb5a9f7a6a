/**
 * @module storage/state-counters
 *
 * A whole `CounterStore` from one atomic primitive: `transact(keys, step)`. The counting rules
 * are `limits/counters`; a backend only reads the values of some keys, runs the step, and
 * applies its writes, atomically with respect to every other `transact` on any of those keys
 * (row locks, `BEGIN IMMEDIATE`, a mutex). The memory store and PostgreSQL are built so;
 * `docs/storage.md` says what a backend MUST do.
 */

import { withAccessors } from '../fast-object.js'
import {
  admitKeys,
  admitStep,
  type CounterStep,
  type CurrentValues,
  claimedStep,
  claimStep,
  heldStep,
  reuseWrites,
  settleKeys,
  settleStep,
} from '../limits/counters.js'
import { markInProcess } from './in-process.js'
import type { AdmissionId, Check, ConsumeResult, CounterStore, SettleOp } from './types.js'

/**
 * The storage a `countersFromState` store runs on. Every value is a `StoredCounter`: a plain
 * JSON object and the time it expires (null: never).
 */
export interface CounterBackend {
  /**
   * One atomic step over `keys` (they may repeat): reads their stored values (undefined when
   * absent; it MAY return expired ones, the step treats a value whose `expiresAt <= now` as
   * absent), calls `step` once, synchronously, with them in the order of `keys`, applies the
   * `writes` it returns (a `value` of null deletes the key) and commits, all atomically with
   * respect to every other `transact` on any of these keys; then answers the step's `result`.
   * A step changes no value it is given except the ones it writes back: a backend whose writes
   * cannot fail may pass its stored objects, any other MUST pass copies (e.g. parsed JSON).
   * With no writes, nothing needs to be committed.
   */
  transact<T>(
    keys: readonly string[],
    step: (current: CurrentValues) => CounterStep<T>,
  ): Promise<T> | T
  /**
   * Optional: drops values whose `expiresAt <= now`. Called with the clock of every call,
   * before it and without waiting for it; the backend decides how much to do at a time (a few
   * entries, or a whole prune every so many calls) and handles its own errors.
   */
  sweep?(now: number): void | Promise<void>
  /** As `CounterStore.concurrency`: how many calls the backend serves at once. */
  readonly concurrency?: number
  /** As `CounterStore.durable`: the values survive a restart, as the usage does. */
  readonly durable?: true
}

/**
 * Where an in-process backend last found a counter (its row; -1: not yet), kept by whoever
 * holds the counter's name for long: a key's compiled limit, an account's credit template.
 * Among a million counters, finding one by its name is several cache misses (the name's hash,
 * the map's bucket and entry); the row it names is checked before it is trusted, by `stamp`
 * (which counter had the row then; 0: none), so a stale place (a counter dropped and its row
 * reused) costs one lookup, never a wrong counter.
 */
export interface Place {
  where: number
  stamp: number
}

/** A backend that may take the places of its keys (the memory store's; others ignore them). */
interface PlacedBackend extends CounterBackend {
  transact<T>(
    keys: readonly string[],
    step: (current: CurrentValues) => CounterStep<T>,
    places?: ReadonlyArray<Place>,
  ): Promise<T> | T
}

/** The calls of a store on a backend, answered as the backend answers (a value or a promise). */
interface CounterCalls {
  consume(
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
    places?: ReadonlyArray<Place>,
  ): ConsumeResult | Promise<ConsumeResult>
  settle(
    ops: ReadonlyArray<SettleOp>,
    now: number,
    places?: ReadonlyArray<Place>,
  ): void | Promise<void>
  claim(key: string, ttlMs: number, now: number): boolean | Promise<boolean>
}

/** The in-process fast path: a store whose backend answers without a promise. */
const SYNC = Symbol('tollbooth.syncCounters')

/** What `syncCounters` finds on a store built on a synchronous backend. */
export interface SyncCounters {
  /** `places[i]`, when given, is where the counter of `checks[i]` was found last (`Place`). */
  consume(
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
    places?: ReadonlyArray<Place>,
  ): ConsumeResult
  /** `places[i]`, when given, is where the counter of `ops[i]` (a release) was found last. */
  settle(ops: ReadonlyArray<SettleOp>, now: number, places?: ReadonlyArray<Place>): void
  claim(key: string, ttlMs: number, now: number): boolean
}

/**
 * The counters' calls without a promise, when the store runs in this process (the memory
 * store): the hot path then decides a request with no asynchronous step. Undefined for any
 * other store, and for a copy of a store (`{ ...store }` does not carry it).
 */
export function syncCounters(store: CounterStore): SyncCounters | undefined {
  return (store as { [SYNC]?: SyncCounters })[SYNC]
}

function calls(backend: PlacedBackend): CounterCalls {
  const sweep = backend.sweep
    ? (now: number) => {
        const p = backend.sweep!(now)
        if (p) p.catch(() => {})
      }
    : (_now: number) => {}
  return {
    consume(checks, now, admission, places) {
      sweep(now)
      if (checks.length === 0) return { allowed: true, results: [] }
      return backend.transact(
        admitKeys(checks, admission),
        (current) => admitStep(checks, current, now, admission),
        places,
      )
    },
    settle(ops, now, places) {
      sweep(now)
      if (ops.length === 0) return
      return backend.transact(settleKeys(ops), (current) => settleStep(ops, current, now), places)
    },
    claim(key, ttlMs, now) {
      sweep(now)
      return backend.transact([key], (current) => claimStep(key, ttlMs, current, now))
    },
  }
}

function store(backend: CounterBackend, c: CounterCalls): CounterStore {
  const s: CounterStore = {
    async consume(checks, now, admission) {
      return c.consume(checks, now, admission)
    },
    async settle(ops, now) {
      await c.settle(ops, now)
    },
    async held(key, now) {
      return backend.transact([key], (current) => heldStep(current, now))
    },
    async claim(key, ttlMs, now) {
      return c.claim(key, ttlMs, now)
    },
    async claimed(key, now) {
      return backend.transact([key], (current) => claimedStep(current, now))
    },
    async unclaim(key) {
      await backend.transact([key], () => ({ writes: [{ key, value: null }], result: undefined }))
    },
  }
  if (backend.concurrency !== undefined)
    (s as { concurrency?: number }).concurrency = backend.concurrency
  if (backend.durable) (s as { durable?: true }).durable = true
  return s
}

/**
 * A full `CounterStore` (consume, settle, held, claim) on a backend's `transact`: the counting
 * rules of `limits/counters`, so a store for a new database implements `transact` and passes
 * `describeStorageConformance` (see `docs/storage.md`).
 *
 * @example
 * ```ts
 * const values = new Map<string, StoredCounter>()
 * const counters = countersFromState({
 *   transact(keys, step) {
 *     const { writes, result } = step(keys.map((k) => values.get(k)))
 *     for (const w of writes) w.value ? values.set(w.key, w.value) : values.delete(w.key)
 *     return result
 *   },
 * })
 * ```
 */
export function countersFromState(backend: CounterBackend): CounterStore {
  return store(backend, calls(backend))
}

/**
 * `calls` for a synchronous backend, whose admissions and settles pass one step function made
 * once, with their arguments beside it: the backend runs the step before `transact` returns,
 * so one call's arguments never meet another's (a closure per call was ~100 bytes of garbage
 * on every admission and every settle).
 */
function syncCalls(backend: SyncCounterBackend): SyncCounters {
  const c = calls(backend) as SyncCounters
  const sweep = backend.sweep ? (now: number) => backend.sweep!(now) : undefined
  let checks: ReadonlyArray<Check> = []
  let ops: ReadonlyArray<SettleOp> = []
  let at = 0
  let admission: AdmissionId | undefined
  const admit = (current: CurrentValues) => admitStep(checks, current, at, admission)
  const settle = (current: CurrentValues) => settleStep(ops, current, at)
  // A call's keys in a list of its length, reused call after call (the backend reads them
  // during the call only), as the steps' writes are (`reuseWrites`).
  const keysOf = listsByLength<string>()
  return {
    consume(cs, now, ad, places) {
      sweep?.(now)
      if (cs.length === 0) return { allowed: true, results: [] }
      checks = cs
      at = now
      admission = ad
      reuseWrites(true)
      try {
        return backend.transact(admitKeys(cs, ad, keysOf), admit, places)
      } finally {
        reuseWrites(false)
        checks = []
        admission = undefined
      }
    },
    settle(os, now, places) {
      sweep?.(now)
      if (os.length === 0) return
      ops = os
      at = now
      reuseWrites(true)
      try {
        backend.transact(settleKeys(os, keysOf), settle, places)
      } finally {
        reuseWrites(false)
        ops = []
      }
    },
    claim: c.claim,
  }
}

/**
 * Lists of each length, made once and handed out again call after call (the function returned
 * answers the list of length n, so a reader of `length` sees the call's own): for what a
 * synchronous call fills and reads before it returns.
 */
export function listsByLength<T>(): (n: number) => T[] {
  const lists: T[][] = []
  return (n) => {
    while (lists.length <= n) lists.push(new Array<T>(lists.length))
    return lists[n]!
  }
}

/**
 * A synchronous backend: every `transact` answers without a promise, having applied the
 * step's writes, and keeps none of the write objects (the next call's step reuses them:
 * `reuseWrites`) nor the list of keys.
 */
export interface SyncCounterBackend extends CounterBackend {
  /**
   * As `CounterBackend.transact`; `places[i]` (when given, for some of the first keys) is
   * where `keys[i]` was found last: the backend MAY use it once it has checked it, and
   * updates it (`Place`).
   */
  transact<T>(
    keys: readonly string[],
    step: (current: CurrentValues) => CounterStep<T>,
    places?: ReadonlyArray<Place>,
  ): T
  sweep?(now: number): void
}

/**
 * `countersFromState` for a backend in this process that answers without a promise; the store
 * carries the fast path `syncCounters` finds.
 */
export function syncCountersFromState<S extends object = object>(
  backend: SyncCounterBackend,
  extra?: S,
): CounterStore & S {
  const c = syncCalls(backend)
  const s = store(backend, c) as CounterStore & S
  if (extra) withAccessors(s, extra)
  // Not enumerable: a copy of the store (`{ ...store, consume }`) does not carry the fast path.
  Object.defineProperty(s, SYNC, { value: c, enumerable: false })
  return markInProcess(s)
}
