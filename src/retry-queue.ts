/**
 * @module retry-queue
 *
 * Work whose first attempt failed or whose answer was lost, retried until the store takes it.
 * Two queues use it:
 *
 * - counter operations ({@link createSettleQueue}): a settle (the holds released and the
 *   charge applied) and the cancel of an admission that was answered 503. Without it, a settle
 *   lost to a restart kept the request's usage event but lost its charge, and a timed-out
 *   admission that committed late kept its counts and its credit hold;
 * - change-feed messages (`tollbooth.ts`): a revocation whose publish failed while the
 *   publishing connection was down would never reach the instances still caching the key.
 *
 * An entry waits for its first attempt's own promise (not the timeout that answered the
 * request), so it is never retried while that attempt may still land: a settle that lands
 * late needs no retry, and a cancel goes after the admission it undoes. Retries are written
 * to be applied twice safely: a settle's releases charge only if the hold is still there
 * (`ifHeld`), a cancel is idempotent by its admission's id, a feed message only drops a cache
 * entry.
 *
 * Bounded: at most `max` entries known to need an attempt (an entry beyond is dropped and
 * reported) and {@link CONCURRENT} attempts at once, so a store coming back is not flooded and
 * other requests keep their share of it. An entry whose first attempt is still under way waits
 * outside the bound (its store call, in flight, is what it costs), and takes its place, or is
 * dropped, only once that attempt has ended and it is known to need one: a cancel whose
 * admission turns out never sent, or a settle whose first attempt lands late, never fills the
 * queue. Before, one cancel per admission answered 503 took a place at once: the pool
 * exhausted past the storage timeout (1.5 s against 1 s), 20 refused with room for 5, 15
 * dropped as "queue full" although none needed cancelling (test/fault/postgres-refused).
 */

import { StorageUnavailableError } from './errors.js'
import type { CounterStore, SettleOp } from './storage/types.js'

/**
 * Whether `err` (or an error in its `cause` chain) says its call was never sent to the store
 * (`notSent: true`, docs/storage.md): a Redis client that lost its connection refuses a call at
 * once. Nothing of it can have run, so there is nothing to cancel: one cancel per request
 * refused while Redis was down filled the queue (20 refused, `maxPendingSettles` 5: 15 dropped
 * as "queue full", test/fault/redis-late.test.ts).
 */
export function notSent(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; depth++) {
    if ((e as { notSent?: unknown }).notSent === true) return true
    e = e.cause
  }
  return false
}

const ignore = () => {}

/** Attempts in flight at once. */
const CONCURRENT = 4
/** The first retry's delay; doubled on every failure of an entry, up to {@link MAX_DELAY_MS}. */
const FIRST_DELAY_MS = 50
const MAX_DELAY_MS = 2_000

interface Entry<T> {
  item: T
  failures: number
}

/** Figures of a retry queue, for `tb.stats()`. */
export interface RetryStats {
  /** Entries not done: to apply, or waiting for their first attempt to end (`waiting`). */
  pending: number
  /**
   * Of `pending`, those waiting for their first attempt to end: outside the bound, which the
   * others (`pending - waiting`) never exceed.
   */
  waiting: number
  /** Retried entries the store has taken so far. */
  retried: number
  /** Entries dropped because the queue was full (each also reported to `onError`). */
  dropped: number
}

/** The settle queue's figures (`tb.stats().settleRetries`). */
export type SettleQueueStats = RetryStats

export interface RetryQueue<T> {
  /**
   * Queues `item`, to be applied once `first` (the attempt that failed or timed out) has
   * ended: only if it rejected, or, with `always`, whatever its outcome (a cancel), but for a
   * rejection that says the attempt was never sent ({@link notSent}). It counts against the
   * bound (or is dropped, the queue full) only then.
   */
  add(item: T, first: Promise<unknown>, always: boolean): void
  /** Resolves when the queue is empty, or after `ms`: true when it emptied. */
  drain(ms: number): Promise<boolean>
  stats(): RetryStats
}

/** The queue of counter operations. */
export type SettleQueue = RetryQueue<SettleOp[]>

/** What a retry queue works with. */
export interface RetryQueueOptions<T> {
  /** One attempt at `item`: resolves once the store has taken it. */
  attempt: (item: T) => Promise<void>
  /** Where failures beyond the bound go. */
  report: (err: unknown) => void
  /** The most entries kept. */
  max: number
  /** The error reported when an entry is dropped, `dropped` so far. */
  full: (dropped: number) => Error
}

/** What a settle queue works with. */
export interface SettleQueueOptions {
  /** Where the operations go. */
  counters: CounterStore
  /** The clock each attempt is applied at. */
  now: () => number
  /** Where failures beyond the bound go. */
  report: (err: unknown) => void
  /** The most entries kept. */
  max: number
}

/** The queue of counter operations: each entry is applied with one `settle` at `now()`. */
export function createSettleQueue({ counters, now, report, max }: SettleQueueOptions): SettleQueue {
  const queue = createRetryQueue<SettleOp[]>({
    attempt: (ops) => counters.settle(ops, now()),
    report,
    max,
    full: (dropped) =>
      new StorageUnavailableError(
        `settle retry queue full (${max}): ${dropped} operation(s) dropped; their holds expire by their TTL`,
      ),
  })
  return {
    add: (ops, first, always) => {
      if (ops.length > 0) queue.add(ops, first, always)
      else first.catch(ignore)
    },
    drain: queue.drain,
    stats: queue.stats,
  }
}

export function createRetryQueue<T>({
  attempt,
  report,
  max,
  full,
}: RetryQueueOptions<T>): RetryQueue<T> {
  // Entries to apply (their first attempt ended and left them so): at most `max`.
  let queued = 0
  // Entries waiting for their first attempt to end, outside the bound.
  let waiting = 0
  let retried = 0
  let dropped = 0
  let running = 0
  const ready: Entry<T>[] = []
  const idle: Array<() => void> = []

  const settled = () => {
    if (queued === 0 && waiting === 0) for (const f of idle.splice(0)) f()
  }
  const finish = () => {
    queued--
    settled()
  }
  /** Its first attempt has ended and left it to apply: a place in the bound, or dropped. */
  const due = (item: T) => {
    waiting--
    if (queued >= max) {
      dropped++
      report(full(dropped))
      settled()
      return
    }
    queued++
    ready.push({ item, failures: 0 })
    pump()
  }
  /** Its first attempt has ended and left nothing to apply. */
  const done = () => {
    waiting--
    settled()
  }
  const pump = () => {
    while (running < CONCURRENT && ready.length > 0) {
      const e = ready.shift()!
      running++
      let p: Promise<void>
      try {
        p = attempt(e.item)
      } catch (err) {
        p = Promise.reject(err)
      }
      p.then(
        () => {
          running--
          retried++
          finish()
          pump()
        },
        () => {
          running--
          e.failures++
          later(e)
          pump()
        },
      )
    }
  }
  const later = (e: Entry<T>) => {
    const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(e.failures, 16))
    const t = setTimeout(() => {
      ready.push(e)
      pump()
    }, delay)
    // A retry does not keep the process alive on its own; close() waits for the queue.
    ;(t as { unref?: () => void }).unref?.()
  }

  return {
    add(item, first, always) {
      waiting++
      // Both outcomes handled: left unhandled, a rejection ends a Node process (20 admissions
      // refused with room for 5 cancels: 15 unhandled, test/fault/postgres-refused).
      first.then(
        () => (always ? due(item) : done()),
        // An entry applied whatever its first attempt's outcome (a cancel) has nothing to
        // apply when that attempt was never sent.
        (err: unknown) => (always && notSent(err) ? done() : due(item)),
      )
    },
    drain(ms) {
      if (queued === 0 && waiting === 0) return Promise.resolve(true)
      return new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(queued === 0 && waiting === 0), ms)
        ;(t as { unref?: () => void }).unref?.()
        idle.push(() => {
          clearTimeout(t)
          resolve(true)
        })
      })
    },
    stats: () => ({ pending: queued + waiting, waiting, retried, dropped }),
  }
}
