/**
 * @module metering/outbox
 *
 * The usage out-box: settle() never writes to durable storage itself. Usage events and
 * `lastUsedAt` times are queued here and written in batches: every `flushIntervalMs`, when
 * `maxBatch` events are waiting, and by `tb.close()`. A failed write is kept and retried at
 * the next flush (events are idempotent by id, so a retry never counts twice).
 *
 * Retention: a flush also deletes events older than `retentionMs` (the request-log
 * retention), at most once per {@link PRUNE_EVERY_MS} of clock time, so pruning costs one
 * storage call an hour however busy the instance is; `close()` starts none.
 */

import { withAccessors } from '../fast-object.js'
import type { Storage, UsageEvent } from '../storage/types.js'
import { placedRecord, type TallyPlace } from '../storage/usage-tallies.js'

export interface Outbox {
  /** Queues `event`; `place`: where its key's events were tallied last (the memory store's). */
  push(event: UsageEvent, place?: TallyPlace): void
  touch(keyId: string, at: number): void
  /** Writes everything queued; resolves when written (or rejects, keeping it queued). */
  flush(): Promise<void>
  /** Flushes and stops the timer. */
  close(): Promise<void>
  /** Events waiting to be written. */
  readonly pending: number
  /** Events not known written: those waiting, and those of a write not answered yet. */
  readonly unwritten: number
}

/** Pruning of old events runs at most this often (clock time): one hour. */
export const PRUNE_EVERY_MS = 3_600_000

export interface OutboxOptions {
  flushIntervalMs: number
  maxBatch: number
  /** Events older than this are pruned by a flush; omitted: never pruned. */
  retentionMs?: number
  /** The clock pruning reads; default `Date.now`. */
  now?: () => number
}

export function createOutbox(
  storage: Storage,
  options: OutboxOptions,
  onError: (err: unknown) => void,
  afterFlush?: (events: ReadonlyArray<UsageEvent>) => void,
  /** Awaited before each batch is written (a write-ahead note); never rejects. */
  beforeWrite?: (events: ReadonlyArray<UsageEvent>) => Promise<void> | undefined,
): Outbox {
  const now = options.now ?? (() => Date.now())
  let lastPrune = -Infinity
  let events: UsageEvent[] = []
  // Beside `events`, one each, when the store takes places (else left empty).
  let places: Array<TallyPlace | undefined> = []
  const placing = placedRecord(storage.usage) !== undefined
  let touches = new Map<string, number>()
  let running: Promise<void> | null = null
  // Events of the batch being written (out of `events` until the store answers).
  let writing = 0
  let timer: ReturnType<typeof setInterval> | null = null

  const write = async () => {
    while (events.length > 0 || touches.size > 0) {
      const batch = events.splice(0, options.maxBatch)
      const at = placing ? places.splice(0, batch.length) : places
      const t = touches
      touches = new Map()
      writing = batch.length
      try {
        if (batch.length) {
          const ahead = beforeWrite?.(batch)
          if (ahead) await ahead
          // Looked up at each write: a `record` replaced since is called through.
          const recordPlaced = placing ? placedRecord(storage.usage) : undefined
          if (recordPlaced !== undefined) recordPlaced(batch, at)
          else await storage.usage.record(batch)
        }
        if (t.size) await storage.keys.touch([...t].map(([id, lastUsedAt]) => ({ id, lastUsedAt })))
        if (batch.length) afterFlush?.(batch)
      } catch (err) {
        events = batch.concat(events)
        if (placing) places = at.concat(places)
        for (const [id, at] of t) if ((touches.get(id) ?? 0) < at) touches.set(id, at)
        throw err
      } finally {
        writing = 0
      }
    }
    await prune()
  }

  // Set by close(): the shutdown writes the events and starts no prune (one of a large backlog
  // takes seconds; the next process prunes).
  let closing = false

  /** Deletes expired events if the last prune is an hour old; a failure only reports. */
  const prune = async () => {
    const t = now()
    if (closing || options.retentionMs === undefined || t - lastPrune < PRUNE_EVERY_MS) return
    lastPrune = t
    try {
      await storage.usage.prune(t - options.retentionMs)
    } catch (err) {
      onError(err)
    }
  }

  const flush = (): Promise<void> => {
    if (running) return running.then(() => (events.length || touches.size ? flush() : undefined))
    running = write().finally(() => {
      running = null
    })
    return running
  }

  const ensureTimer = () => {
    if (timer) return
    timer = setInterval(() => {
      if (events.length || touches.size) flush().catch(onError)
    }, options.flushIntervalMs)
    // Do not keep a process alive just to flush; close() flushes what is left.
    ;(timer as { unref?: () => void }).unref?.()
  }

  // Its getter apart, so it keeps fast properties (`fast-object`).
  const methods: Omit<Outbox, 'pending' | 'unwritten'> = {
    push(event, place) {
      events.push(event)
      if (placing) places.push(place)
      ensureTimer()
      if (events.length >= options.maxBatch && !running) flush().catch(onError)
    },
    touch(keyId, at) {
      touches.set(keyId, at)
      ensureTimer()
    },
    flush,
    async close() {
      if (timer) clearInterval(timer)
      timer = null
      closing = true
      await flush()
    },
  }
  return withAccessors(methods, {
    get pending() {
      return events.length
    },
    get unwritten() {
      return events.length + writing
    },
  })
}
