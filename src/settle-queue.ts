/**
 * @module settle-queue
 *
 * Counter operations whose first attempt failed or whose answer was lost, retried until the
 * store takes them: a settle (the holds released and the charge applied) and the cancel of an
 * admission that was answered 503. Without it, a settle lost to a restart kept the request's
 * usage event but lost its charge, and a timed-out admission that committed late kept its
 * counts and its credit hold.
 *
 * An entry waits for its first attempt's own promise (not the timeout that answered the
 * request), so it is never retried while that attempt may still land: a settle that lands
 * late needs no retry, and a cancel goes after the admission it undoes. Retries are written
 * to be applied twice safely: a settle's releases charge only if the hold is still there
 * (`ifHeld`), a cancel is idempotent by its admission's id.
 *
 * Bounded: at most `max` entries (an entry beyond is dropped and reported, the store's TTLs
 * then clean up as before) and {@link CONCURRENT} attempts at once, so a store coming back is
 * not flooded and other requests keep their share of it.
 */

import { StorageUnavailableError } from './errors.js'
import type { CounterStore, SettleOp } from './storage/types.js'

/** Attempts in flight at once. */
const CONCURRENT = 4
/** The first retry's delay; doubled on every failure of an entry, up to {@link MAX_DELAY_MS}. */
const FIRST_DELAY_MS = 50
const MAX_DELAY_MS = 2_000

interface Entry {
  ops: SettleOp[]
  failures: number
}

/** Figures of the queue, for `tb.stats()`. */
export interface SettleQueueStats {
  /** Operations waiting to be applied (or for their first attempt to end). */
  pending: number
  /** Retried operations the store has taken so far. */
  retried: number
  /** Operations dropped because the queue was full (each also reported to `onError`). */
  dropped: number
}

export interface SettleQueue {
  /**
   * Queues `ops`, to be applied once `first` (the attempt that failed or timed out) has
   * ended: only if it rejected, or, with `always`, whatever its outcome (a cancel).
   */
  add(ops: SettleOp[], first: Promise<unknown>, always: boolean): void
  /** Resolves when the queue is empty, or after `ms`: true when it emptied. */
  drain(ms: number): Promise<boolean>
  stats(): SettleQueueStats
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

export function createSettleQueue({ counters, now, report, max }: SettleQueueOptions): SettleQueue {
  let pending = 0
  let retried = 0
  let dropped = 0
  let running = 0
  const ready: Entry[] = []
  const idle: Array<() => void> = []

  const finish = () => {
    pending--
    if (pending === 0) for (const f of idle.splice(0)) f()
  }
  const pump = () => {
    while (running < CONCURRENT && ready.length > 0) {
      const e = ready.shift()!
      running++
      let p: Promise<void>
      try {
        p = counters.settle(e.ops, now())
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
  const later = (e: Entry) => {
    const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(e.failures, 16))
    const t = setTimeout(() => {
      ready.push(e)
      pump()
    }, delay)
    // A retry does not keep the process alive on its own; close() waits for the queue.
    ;(t as { unref?: () => void }).unref?.()
  }

  return {
    add(ops, first, always) {
      if (ops.length === 0) return
      if (pending >= max) {
        dropped++
        report(
          new StorageUnavailableError(
            `settle retry queue full (${max}): ${dropped} operation(s) dropped; their holds expire by their TTL`,
          ),
        )
        return
      }
      pending++
      const e: Entry = { ops, failures: 0 }
      first.then(
        () => {
          if (always) {
            ready.push(e)
            pump()
          } else finish()
        },
        () => {
          ready.push(e)
          pump()
        },
      )
    },
    drain(ms) {
      if (pending === 0) return Promise.resolve(true)
      return new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(pending === 0), ms)
        ;(t as { unref?: () => void }).unref?.()
        idle.push(() => {
          clearTimeout(t)
          resolve(true)
        })
      })
    },
    stats: () => ({ pending, retried, dropped }),
  }
}
