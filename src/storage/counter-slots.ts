/**
 * @module storage/counter-slots
 *
 * Where the memory store keeps its counters: one slot per counter key, and a queue of when
 * they expire. Laid out so a request costs about the same among a million keys as among a
 * thousand (`bench/memory-scale.ts`). Two things made it grow with the store:
 *
 * - Every write stored new objects (the step's state and a `StoredCounter` around it). Among
 *   a thousand keys a counter is written again before the young generation is collected, and
 *   the old objects die young; among a million, each one was copied by the scavenger,
 *   promoted, and collected later by a mark-compact of the whole heap. A write now goes into
 *   the key's slot: the figures are copied into the state it holds (a window's buckets, a
 *   GCRA limit's level, a hold list) and the expiry into a number field, so the step's new
 *   objects die young. A state of another shape (a record, a claim) is stored as given.
 * - The sweep walked the map a few entries per call and read each entry's value: among a
 *   million counters, each read was a cache miss. Now each slot waits in one bucket (a
 *   second) of an expiry queue, a min-heap of buckets with their keys; the sweep reads only
 *   the slots of buckets whose time came, and drops each one or queues it again at its
 *   current expiry. A write queues its slot only when it is in no bucket or in a later one.
 *
 * The counting rules stay in `limits/counters`: a slot is a `StoredCounter` (its `expiresAt`
 * Infinity for never), handed to the steps as read.
 */

import { type CounterState, counterKind, type StoredCounter } from '../limits/counters.js'

/** The span of one bucket of the expiry queue (ms). */
const BUCKET_MS = 1000

/**
 * Queue entries examined per key of each call, a few at a time rather than a whole bucket
 * at once (a million counters expiring in the same second must not stall one request).
 * More than a call can queue, so the sweep keeps ahead of the expiries.
 */
const SWEEP_PER_KEY = 2

/** One counter: its state, kept in place, and when it expires. */
export class CounterSlot implements StoredCounter {
  /**
   * The bucket of the expiry queue this slot waits in, counted from the queue's bucket 0: a
   * small integer, held in the object without a box of its own. NONE: in no bucket.
   */
  due = NONE
  /** Deleted from the store: a later write of its key makes a new slot. */
  gone = false
  constructor(
    public state: CounterState,
    /** Infinity: never (a `StoredCounter`'s null), so the field holds a double in place. */
    public expiresAt: number,
  ) {}
}

/** `due` of a slot in no bucket: above every bucket (2^30 - 1, 34 years of seconds). */
const NONE = 0x3fffffff

/** Buckets (seconds) between the queue's bucket 0 and the first expiry it holds. */
const ORIGIN_MARGIN = 2 ** 24

type Numbers = unknown[]

/**
 * The array to keep for `from`'s elements, given the one held: `to` refilled in place when it
 * is as long or longer, or empty, else an exact copy. An array that grows by `push` takes room
 * for 17 elements at its first push (V8), so a window of one bucket held 2 × 184 bytes; a copy
 * by `slice` holds just its elements (`test/storage/retained-size.test.ts`). An empty one is
 * filled in place: a credit hold list goes 1 → 0 → 1 with every request, and refilled in the
 * room it kept (or that V8 took back when it was emptied) it leaves no new array in the
 * young generation for each request, pointed at from the old one and copied by the next
 * scavenge.
 */
function refillArray(to: Numbers, from: Numbers): Numbers {
  if (to === from) return to
  const n = from.length
  if (n > to.length && to.length > 0) return from.slice()
  const m = Math.min(n, to.length)
  for (let i = 0; i < m; i++) to[i] = from[i]
  if (to.length > n) to.length = n
  for (let i = m; i < n; i++) to.push(from[i])
  return to
}

/** A state to store as new: its arrays copied to their exact length (see `refillArray`). */
function exact(state: CounterState): CounterState {
  switch (counterKind(state)) {
    case 'window':
      state.idx = (state.idx as Numbers).slice()
      state.n = (state.n as Numbers).slice()
      break
    case 'hold':
      state.holds = (state.holds as Numbers).slice()
      break
  }
  return state
}

/**
 * The state to keep after a write of `next` over `held`: `held` with the figures of `next`
 * copied in when both are of one kind with the same marks, else `next` itself.
 */
function refill(held: CounterState, next: CounterState): CounterState {
  const kind = counterKind(next)
  if (
    kind === null ||
    kind !== counterKind(held) ||
    held.rebuilt !== next.rebuilt ||
    (held.keepUntil === undefined) !== (next.keepUntil === undefined)
  )
    return exact(next)
  switch (kind) {
    case 'gcra':
      held.level = next.level
      held.at = next.at
      break
    case 'window':
      held.idx = refillArray(held.idx as Numbers, next.idx as Numbers)
      held.n = refillArray(held.n as Numbers, next.n as Numbers)
      break
    case 'hold':
      held.used = next.used
      held.holds = refillArray(held.holds as Numbers, next.holds as Numbers)
      break
  }
  if (next.keepUntil !== undefined) held.keepUntil = next.keepUntil
  return held
}

/** A min-heap of bucket numbers. */
function heapPush(heap: number[], x: number): void {
  let i = heap.length
  heap.push(x)
  while (i > 0) {
    const p = (i - 1) >> 1
    if (heap[p]! <= x) break
    heap[i] = heap[p]!
    i = p
  }
  heap[i] = x
}

function heapPop(heap: number[]): number {
  const top = heap[0]!
  const last = heap.pop()!
  const n = heap.length
  if (n > 0) {
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const c = l + 1 < n && heap[l + 1]! < heap[l]! ? l + 1 : l
      if (heap[c]! >= last) break
      heap[i] = heap[c]!
      i = c
    }
    heap[i] = last
  }
  return top
}

export interface CounterSlots {
  readonly size: number
  get(key: string): CounterSlot | undefined
  /**
   * Applies a step's write: `value` null deletes. `read` is the slot `get(key)` answered
   * before the step (saves a second lookup).
   */
  write(key: string, value: StoredCounter | null, read: CounterSlot | undefined): void
  /** A call touched `keys` counters: the sweep may examine a few queue entries more. */
  credit(keys: number): void
  /** Drops a few counters whose time came (as many as the calls since the last earned). */
  sweepDue(now: number): void
  /** Drops every expired counter; returns how many went. */
  sweepAll(now: number): number
}

export function counterSlots(): CounterSlots {
  const slots = new Map<string, CounterSlot>()
  const buckets = new Map<number, string[]>()
  const heap: number[] = []
  // Bucket numbers count from `origin` (before the first expiry queued): small integers.
  let origin = Number.NaN
  // The bucket being drained, taken off the queue: its keys, and how far the sweep got.
  let draining: string[] | null = null
  let drainingBucket = 0
  let next = 0
  let budget = 0

  const queue = (key: string, s: CounterSlot) => {
    if (s.expiresAt === Infinity) return
    const abs = Math.ceil(s.expiresAt / BUCKET_MS)
    // Bucket 0 about 194 days before the first expiry queued: bucket numbers stay below NONE
    // for 33 years on. One earlier still (a clock set back) goes in bucket 0, due at once.
    if (Number.isNaN(origin)) origin = abs - ORIGIN_MARGIN
    const b = Math.min(Math.max(abs - origin, 0), NONE - 1)
    // Waiting in this bucket or an earlier one: it is looked at then, and queued again.
    if (s.due <= b) return
    s.due = b
    let list = buckets.get(b)
    if (list === undefined) {
      list = []
      buckets.set(b, list)
      heapPush(heap, b)
    }
    list.push(key)
  }

  const drop = (key: string, s: CounterSlot | undefined) => {
    if (s === undefined) return
    s.gone = true
    slots.delete(key)
  }

  return {
    get size() {
      return slots.size
    },
    get: (key) => slots.get(key),
    write(key, value, read) {
      if (value === null) {
        // Its queue entry stays, and is passed over when its bucket comes.
        drop(key, read !== undefined && !read.gone ? read : slots.get(key))
        return
      }
      const expiresAt = value.expiresAt ?? Infinity
      let s = read !== undefined && !read.gone ? read : slots.get(key)
      if (s === undefined) {
        s = new CounterSlot(exact(value.state), expiresAt)
        slots.set(key, s)
      } else {
        s.expiresAt = expiresAt
        if (s.state !== value.state) s.state = refill(s.state, value.state)
      }
      queue(key, s)
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
        const key = draining[next++]!
        budget--
        const s = slots.get(key)
        // Deleted, or queued again in an earlier bucket since.
        if (s === undefined || s.due !== drainingBucket) continue
        s.due = NONE
        if (s.expiresAt <= now) drop(key, s)
        else queue(key, s)
      }
    },
    sweepAll(now) {
      const before = slots.size
      for (const [k, s] of slots) if (s.expiresAt <= now) drop(k, s)
      return before - slots.size
    },
  }
}
