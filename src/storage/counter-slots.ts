/**
 * @module storage/counter-slots
 *
 * Where the memory store keeps its counters: a row of eight numbers per counter key in one
 * `Float64Array`, an index from each key's hash to its row (`slot-index`, off the heap too),
 * and a queue of when they expire. Laid out so a request costs about the same among a million
 * keys as among a thousand (`bench/memory-scale.ts`):
 *
 * - **Off the V8 heap.** A typed array's numbers are not objects: the garbage collector neither
 *   walks nor copies them, and a write allocates nothing. A counter kept as objects (its slot,
 *   its state, a window's two arrays: about 290 bytes in five objects) made every scavenge
 *   slower among a million keys, whose cost grows with the old generation's size, and each
 *   read several cache misses (bench/NOTES.md, session 14: the counters kept as objects cost
 *   about a third of a million-key request). What stays on the heap is the row's key and,
 *   for the few counters that need them, the lists a row cannot hold: the holds of requests
 *   in flight, a window of more than two buckets, a state of another shape.
 * - **Swept from a queue.** Each row waits in one bucket (a second) of an expiry queue, a
 *   min-heap of buckets with their rows; the sweep reads only the rows of buckets whose time
 *   came, and drops each one a minute after it expired ({@link DROP_AFTER_MS}) or queues it
 *   again at its current expiry. A write queues its row
 *   only when it is in no bucket or in a later one. A dropped row is reused by the next new
 *   counter; the array of rows grows by doubling and does not shrink (its size follows the
 *   most counters held at once).
 *
 * The counting rules stay in `limits/counters`: a read hands the steps a fresh
 * `StoredCounter` made from the row (short-lived objects, which a scavenge frees at no cost),
 * and a write copies the step's figures back into the row. A hold list is handed over as held
 * (the steps change it in place and write it back), as before.
 */

import { withAccessors } from '../fast-object.js'
import { type CounterState, counterKind, type StoredCounter } from '../limits/counters.js'
import { hashText, randomSeed, SlotIndex } from '../slot-index.js'
import { heapPop, heapPush } from './min-heap.js'
import { doubled } from './typed-arrays.js'

/** The span of one bucket of the expiry queue (ms). */
const BUCKET_MS = 1000

/**
 * How long an expired counter keeps its row before the sweep drops it. A counter that expires
 * between a key's requests (a rate limit whose bucket drains in less than the gap) then finds
 * its row again: among a million keys, dropping a row and making it anew cost two updates of
 * the names' map, each a few cache misses (bench/NOTES.md, session 15). An expired value reads
 * as absent all the same (the steps go by `expiresAt`); `sweepAll` does not wait.
 */
const DROP_AFTER_MS = 60_000

/**
 * Queue entries examined per key of each call, a few at a time rather than a whole bucket
 * at once (a million counters expiring in the same second must not stall one request).
 * More than a call can queue, so the sweep keeps ahead of the expiries.
 */
const SWEEP_PER_KEY = 2

/** `due` of a row in no bucket: above every bucket (2^30 - 1, 34 years of seconds). */
const NONE = 0x3fffffff

/** Buckets (seconds) between the queue's bucket 0 and the first expiry it holds. */
const ORIGIN_MARGIN = 2 ** 24

/**
 * A row: eight numbers (64 bytes).
 *
 * - (the first number) two 32-bit integers (read through an `Int32Array` over the same bytes): `TAG`, the
 *   state's kind (0: a free row) plus its marks ({@link REBUILT}, {@link KEEP}, {@link LIST}),
 *   and `DUE`, its bucket of the expiry queue.
 * - `EXPIRES`: when it expires (Infinity: never).
 * - `STAMP`: which counter holds the row (see {@link nextStamp}; 0: none).
 * - `A`, `B`: a GCRA limit's `level` and `at`; a hold counter's `used` and `keepUntil`; a
 *   window's number of buckets in `A`, and the buckets themselves from `B` on (index, count,
 *   index, count) or, past two, in two arrays beside the row.
 *
 * What a request reads of a counter it has a place for (its stamp, tag, expiry and figures)
 * lies in the first 40 bytes: one cache line, where the array's data starts 16 bytes into a
 * page (as a large one does), or is aligned.
 */
const STRIDE = 8
const EXPIRES = 1
const STAMP = 2
const A = 3
const B = 4
/** `TAG` and `DUE`, in the `Int32Array` over the rows: row r's are at `2 * r * STRIDE + …`. */
const TAG = 0
const DUE = 1
/** Buckets of a window held in the row itself. */
const INLINE_BUCKETS = 2

const FREE = 0
const GCRA = 1
const WINDOW = 2
const HOLD = 3
/** A state of another shape: the object beside the row. */
const OBJECT = 4
/** A claim (`{ claim: 1 }`), an admission's record (`{ mark: 'c' }`) or tombstone (`'x'`). */
const CLAIM = 5
const COUNTED = 6
const CANCELLED = 7
const KIND = 7
const REBUILT = 8
const KEEP = 16
/**
 * Something is beside the row (`beside[r]`): a hold list, a long window, a state of another
 * shape. A row without it is read and written without touching `beside`, whose element for a
 * row is a cache line of its own among a million counters.
 */
const LIST = 32

/**
 * The stamp of the next row taken, in every store of this process: a (row, stamp) pair names
 * one counter, exactly, as long as the row holds it, so a place (`Place`) is checked against
 * the row itself, where the row's key was a second cache line to read (`keyOf`, an array of a
 * million pointers). Shared by every store, so a place kept from another store's counter
 * never matches. Exact up to 2^53 rows taken; a place holds it as a small integer up to 2^31.
 */
let nextStamp = 1

type Numbers = number[]
type Holds = Array<[id: string, amount: number, expiresAt: number]>

export interface CounterSlots {
  readonly size: number
  /** The row of `key`, or -1: what `read` and `write` take. */
  find(key: string): number
  /** The stamp of the counter in row `row` (0: none, or `row` is -1): see {@link nextStamp}. */
  stamp(row: number): number
  /**
   * True when row `row` still holds the counter it held with `stamp` (a place remembered from
   * an earlier `find` or `write` with the row's `stamp` then).
   */
  owns(row: number, stamp: number): boolean
  /** The value in row `row` (-1: none), as a new object the caller may keep or change. */
  read(row: number): StoredCounter | undefined
  /**
   * As `read`, in the object kept for place `i` of a call (0, 1…): the values of one step,
   * valid until the next `view` at `i` (a step keeps none of them). Its state is new; a
   * never-expiring value has `expiresAt` Infinity (as null, never `<= now`).
   */
  view(row: number, i: number): StoredCounter | undefined
  /** `read(find(key))`. */
  get(key: string): StoredCounter | undefined
  /**
   * Applies a step's write: `value` null deletes. `row` is what `find(key)` answered before the
   * step (saves a second lookup; a row freed since is looked up again), with its `stamp` then
   * when the caller has it (checked instead of the row's key, which is a cache line more).
   * Returns the key's row now (-1: deleted).
   */
  write(key: string, value: StoredCounter | null, row: number, stamp?: number): number
  /** A call touched `keys` counters: the sweep may examine a few queue entries more. */
  credit(keys: number): void
  /** Drops a few counters whose time came (as many as the calls since the last earned). */
  sweepDue(now: number): void
  /** Drops every expired counter; returns how many went. */
  sweepAll(now: number): number
  /** Bytes of rows held off the V8 heap (free rows included). */
  readonly externalBytes: number
}

export function counterSlots(): CounterSlots {
  let rows = new Float64Array(1024 * STRIDE)
  // The same bytes as 32-bit integers, for each row's `TAG` and `DUE` (index 2 * r * STRIDE).
  let meta = new Int32Array(rows.buffer)
  // Row → key (for a drop by the sweep), row → what a row cannot hold (see the module's doc).
  const keyOf: string[] = []
  // An array, not a Map: a hold counter's list comes and goes with every request in flight,
  // and a Map's entry added and deleted each time rebuilt its table (bench/NOTES.md, session 19).
  const beside: unknown[] = []
  // Rows by their key's hash (confirmed by `keyOf`), off the heap: a Map of every counter's
  // name was about 60 bytes of table a key among a million (bench/NOTES.md, session 19).
  const index = new SlotIndex(rows.length / STRIDE)
  const seed = randomSeed()
  let size = 0
  const free: number[] = []
  let used = 0

  const buckets = new Map<number, number[]>()
  const heap: number[] = []
  // Bucket numbers count from `origin` (before the first expiry queued): small integers.
  let origin = Number.NaN
  // The bucket being drained, taken off the queue: its rows, and how far the sweep got.
  let draining: number[] | null = null
  let drainingBucket = 0
  let next = 0
  let budget = 0

  const allocate = (key: string): number => {
    let r = free.pop()
    if (r === undefined) {
      r = used++
      if (used * STRIDE > rows.length) {
        rows = doubled(rows)
        meta = new Int32Array(rows.buffer)
        index.grow(rows.length / STRIDE)
      }
      // Kept as long as the rows taken, without holes (an element written past the end of an
      // array may turn it into a dictionary). A row dropped has cleared its element already.
      beside[r] = undefined
    }
    keyOf[r] = key
    meta[2 * r * STRIDE + DUE] = NONE
    rows[r * STRIDE + STAMP] = nextStamp++
    index.add(r, hashText(seed, key))
    size++
    return r
  }

  const drop = (r: number) => {
    const m = 2 * r * STRIDE
    const tag = meta[m + TAG]!
    if (tag === FREE) return
    meta[m + TAG] = FREE
    if (tag & LIST) beside[r] = undefined
    rows[r * STRIDE + STAMP] = 0
    index.remove(r)
    size--
    keyOf[r] = ''
    // Its queue entry stays, and is passed over when its bucket comes (DUE is NONE).
    meta[m + DUE] = NONE
    free.push(r)
  }

  const queue = (r: number) => {
    const o = r * STRIDE
    const m = 2 * o
    const expiresAt = rows[o + EXPIRES]!
    if (expiresAt === Infinity) return
    const abs = Math.ceil((expiresAt + DROP_AFTER_MS) / BUCKET_MS)
    // Bucket 0 about 194 days before the first expiry queued: bucket numbers stay below NONE
    // for 33 years on. One earlier still (a clock set back) goes in bucket 0, due at once.
    if (Number.isNaN(origin)) origin = abs - ORIGIN_MARGIN
    const b = Math.min(Math.max(abs - origin, 0), NONE - 1)
    // Waiting in this bucket or an earlier one: it is looked at then, and queued again.
    if (meta[m + DUE]! <= b) return
    meta[m + DUE] = b
    let list = buckets.get(b)
    if (list === undefined) {
      list = []
      buckets.set(b, list)
      heapPush(heap, b)
    }
    list.push(r)
  }

  /** Writes `state` into row `r` (its tag, figures and what goes beside it). */
  const store = (r: number, state: CounterState) => {
    const o = r * STRIDE
    const kind = counterKind(state)
    const before = meta[2 * o + TAG]!
    const was = before & KIND
    let tag = OBJECT
    let extra: unknown
    if (kind === 'gcra') {
      tag = GCRA
      rows[o + A] = state.level as number
      rows[o + B] = state.at as number
    } else if (kind === 'window') {
      tag = WINDOW
      const idx = state.idx as Numbers
      const n = state.n as Numbers
      const m = idx.length
      rows[o + A] = m
      if (m <= INLINE_BUCKETS)
        for (let i = 0; i < m; i++) {
          rows[o + B + 2 * i] = idx[i]!
          rows[o + B + 2 * i + 1] = n[i]!
        }
      else {
        // Kept beside the row in arrays of their length (one grown by push has room for 17).
        const held = was === WINDOW && before & LIST ? (beside[r] as [Numbers, Numbers]) : undefined
        extra =
          held !== undefined && held[0].length === m
            ? copyInto(held, idx, n)
            : [idx.slice(), n.slice()]
      }
    } else if (kind === 'hold') {
      tag = HOLD
      rows[o + A] = state.used as number
      const holds = state.holds as Holds
      if (holds.length > 0) extra = holds
    } else {
      const fixed = fixedKind(state)
      if (fixed === undefined) extra = state
      else tag = fixed
    }
    if (state.rebuilt === true) tag |= REBUILT
    if (kind === 'hold' && state.keepUntil !== undefined) {
      tag |= KEEP
      rows[o + B] = state.keepUntil as number
    }
    if (extra !== undefined) {
      tag |= LIST
      beside[r] = extra
    } else if (before & LIST) beside[r] = undefined
    meta[2 * o + TAG] = tag
  }

  /**
   * The state in row `r`: a new object, or with `pool`, that place's objects filled anew (a
   * window's lists too, while inline). A step changes no state it is given except the ones it
   * writes back, and `write` copies what it is given into the row (a hold's list is the one
   * kept beside it): nothing holds a pooled state once its call returns.
   */
  const stateOf = (r: number, pool?: StatePool): CounterState => {
    const o = r * STRIDE
    const tag = meta[2 * o + TAG]!
    let state: CounterState
    switch (tag & KIND) {
      case GCRA:
        if (pool === undefined) state = { level: rows[o + A]!, at: rows[o + B]! }
        else {
          const g = pool.gcra
          g.level = rows[o + A]!
          g.at = rows[o + B]!
          g.rebuilt = tag & REBUILT ? true : undefined
          return g
        }
        break
      case WINDOW: {
        const m = rows[o + A]!
        let idx: Numbers
        let n: Numbers
        if (m <= INLINE_BUCKETS) {
          idx = pool === undefined ? new Array(m) : pool.idx[m]!
          n = pool === undefined ? new Array(m) : pool.n[m]!
          for (let i = 0; i < m; i++) {
            idx[i] = rows[o + B + 2 * i]!
            n[i] = rows[o + B + 2 * i + 1]!
          }
        } else {
          // Copies: the steps do not change a window they are given, but its caller may.
          const held = beside[r] as [Numbers, Numbers]
          idx = held[0].slice()
          n = held[1].slice()
        }
        if (pool !== undefined) {
          const w = pool.window
          w.idx = idx
          w.n = n
          w.rebuilt = tag & REBUILT ? true : undefined
          return w
        }
        state = { idx, n }
        break
      }
      case HOLD: {
        if (pool !== undefined) {
          // No list: the shared empty one (a step adds a hold by a new list, never in place).
          const h = pool.hold
          h.used = rows[o + A]!
          h.holds = tag & LIST ? (beside[r] as Holds) : NO_HOLDS
          h.keepUntil = tag & KEEP ? rows[o + B]! : undefined
          h.rebuilt = tag & REBUILT ? true : undefined
          return h
        }
        state = { used: rows[o + A]!, holds: tag & LIST ? (beside[r] as Holds) : [] }
        if (tag & KEEP) state.keepUntil = rows[o + B]!
        break
      }
      case CLAIM:
        return CLAIMED
      case COUNTED:
        return ADMITTED
      case CANCELLED:
        return TOMBSTONE
      default:
        return beside[r] as CounterState
    }
    if (tag & REBUILT) state.rebuilt = true
    return state
  }

  const read = (r: number): StoredCounter | undefined => {
    if (r < 0) return undefined
    const expiresAt = rows[r * STRIDE + EXPIRES]!
    return { state: stateOf(r), expiresAt: expiresAt === Infinity ? null : expiresAt }
  }

  // The objects `view` fills: one per place of a call, reused call after call (a call reads
  // a few counters; four new objects each was an eighth of a request's garbage), and the
  // states in them (as many again).
  const views: StoredCounter[] = []
  const pools: StatePool[] = []
  const view = (r: number, i: number): StoredCounter | undefined => {
    if (r < 0) return undefined
    let v = views[i]
    if (v === undefined) {
      v = { state: EMPTY, expiresAt: 0.5 }
      views[i] = v
      pools[i] = statePool()
    }
    v.state = stateOf(r, pools[i])
    v.expiresAt = rows[r * STRIDE + EXPIRES]!
    return v
  }

  const find = (key: string): number => {
    const h = hashText(seed, key)
    for (let at = index.first(h); at >= 0; at = index.next(h, at)) {
      const r = index.slotAt(at)
      if (keyOf[r] === key) return r
    }
    return -1
  }
  const holds = (row: number, key: string) => row >= 0 && keyOf[row] === key
  // Floored: an element of a Float64Array read by unoptimized code is a number object even when
  // integral, and one such value stored in a place makes that field a boxed double (16 bytes
  // more) in every object of its shape; `Math.floor` answers a small integer where it can.
  const stamp = (row: number) => (row >= 0 ? Math.floor(rows[row * STRIDE + STAMP]!) : 0)
  // A stamp is never 0 on a row held: a free row's (0) matches no place.
  const owns = (row: number, s: number) => row >= 0 && s !== 0 && rows[row * STRIDE + STAMP] === s

  // Its getters apart, so it keeps fast properties (`fast-object`).
  const methods: Omit<CounterSlots, 'size' | 'externalBytes'> = {
    find,
    stamp,
    owns,
    read,
    view,
    get: (key) => read(find(key)),
    write(key, value, row, s) {
      const r = (s === undefined ? holds(row, key) : owns(row, s)) ? row : find(key)
      if (value === null) {
        if (r >= 0) drop(r)
        return -1
      }
      const at = r >= 0 ? r : allocate(key)
      rows[at * STRIDE + EXPIRES] = value.expiresAt ?? Infinity
      store(at, value.state)
      queue(at)
      return at
    },
    credit(keys) {
      budget += SWEEP_PER_KEY * keys + 1
    },
    sweepDue(now) {
      while (budget > 0) {
        if (draining === null) {
          if (heap.length === 0 || (heap[0]! + origin) * BUCKET_MS > now) {
            // Nothing due: no credit saved up for a burst later.
            budget = 0
            return
          }
          drainingBucket = heapPop(heap)
          draining = buckets.get(drainingBucket)!
          buckets.delete(drainingBucket)
          next = 0
        }
        if (next === draining.length) {
          draining = null
          continue
        }
        const r = draining[next++]!
        budget--
        const o = r * STRIDE
        // Dropped, or queued again in an earlier bucket since.
        if (meta[2 * o + DUE] !== drainingBucket) continue
        meta[2 * o + DUE] = NONE
        if (rows[o + EXPIRES]! + DROP_AFTER_MS <= now) drop(r)
        else queue(r)
      }
    },
    sweepAll(now) {
      const before = size
      for (let r = 0; r < used; r++)
        if (meta[2 * r * STRIDE + TAG] !== FREE && rows[r * STRIDE + EXPIRES]! <= now) drop(r)
      return before - size
    },
  }
  return withAccessors(methods, {
    get size() {
      return size
    },
    get externalBytes() {
      return rows.byteLength
    },
  })
}

/**
 * The tag of a claim, a record or a tombstone, states without figures (written by
 * `limits/counters` as shared frozen objects, as these are): a row holds them by its tag alone.
 */
function fixedKind(state: CounterState): number | undefined {
  const keys = Object.keys(state)
  if (keys.length !== 1) return undefined
  if (state.claim === 1) return CLAIM
  if (state.mark === 'c') return COUNTED
  if (state.mark === 'x') return CANCELLED
  return undefined
}
const CLAIMED: CounterState = Object.freeze({ claim: 1 })
const ADMITTED: CounterState = Object.freeze({ mark: 'c' })
const TOMBSTONE: CounterState = Object.freeze({ mark: 'x' })

/**
 * The states one place of a call is given in (see `stateOf`), with every field a step may set
 * present from the start (undefined: unset), so each keeps one shape.
 */
interface StatePool {
  gcra: { level: number; at: number; rebuilt: true | undefined }
  window: { idx: Numbers; n: Numbers; rebuilt: true | undefined }
  hold: { used: number; holds: Holds; keepUntil: number | undefined; rebuilt: true | undefined }
  /** A window's lists of 0 to `INLINE_BUCKETS` buckets. */
  idx: Numbers[]
  n: Numbers[]
}

function statePool(): StatePool {
  const lists = () =>
    Array.from({ length: INLINE_BUCKETS + 1 }, (_, m) => new Array<number>(m).fill(0.5))
  return {
    gcra: { level: 0.5, at: 0.5, rebuilt: undefined },
    window: { idx: [], n: [], rebuilt: undefined },
    hold: { used: 0.5, holds: [], keepUntil: undefined, rebuilt: undefined },
    idx: lists(),
    n: lists(),
  }
}

/** A hold counter's list when it has none (frozen: `addHold` makes a new list to add to). */
const NO_HOLDS = Object.freeze([]) as unknown as Holds

/** The state a view holds before its first fill. */
const EMPTY: CounterState = Object.freeze({})

/** `held` with the figures of `idx` and `n` (arrays of the same length) copied in. */
function copyInto(held: [Numbers, Numbers], idx: Numbers, n: Numbers): [Numbers, Numbers] {
  for (let i = 0; i < idx.length; i++) {
    held[0][i] = idx[i]!
    held[1][i] = n[i]!
  }
  return held
}
