/**
 * @module billing/meter-outbox
 *
 * Sends metered overage to a billing provider exactly once per usage event. Usage events
 * reach it after tollbooth has recorded them (`tb.onUsageFlushed`); those with overage are
 * queued by event id and delivered in batches. Three things make "exactly once" hold:
 *
 * 1. every delivery carries an identifier derived from the usage event id, which the
 *    provider deduplicates, and its "duplicate" answer counts as delivered;
 * 2. a delivered event gets a marker in the counter store, checked before every send, so a
 *    retry, a second instance or a redelivery after a restart skips it;
 * 3. a failed send stays queued and is retried with backoff: an outage only delays delivery.
 *    The first such failure stops the flush (the sends in flight end), so an outage or a 429
 *    costs at most `concurrency` calls per retry, not one per queued event.
 *
 * What the queue held when a process died is still in `tb.storage.usage`:
 * `reconcileOverage()` (`billing/reconcile`) finds it and `redeliver` queues it again, and
 * `billing/meter-heal` does so by itself for the accounts its journal notes.
 */

import { DRAIN_MS, endsWithin, withTimeout } from '../context.js'
import { StorageUnavailableError } from '../errors.js'
import { withAccessors } from '../fast-object.js'
import { reportClosedOnce } from '../storage/closed.js'
import type { UsageEvent } from '../storage/types.js'
import type { Tollbooth } from '../tollbooth.js'
import { createMarkers, MARKER_TTL_MS, markerKey } from './markers.js'

/** How a provider sends one overage event. */
export interface MeterSink {
  /**
   * Sends `value` units of overage for `event` to the customer. Resolves when the provider
   * accepted it, or answered that it already has it (`'duplicate'`).
   */
  send(event: UsageEvent, value: number, customerId: string): Promise<'delivered' | 'duplicate'>
  /** True when a failed send may succeed later (network, 5xx, 429); false drops it. */
  retryable(err: unknown): boolean
}

export interface MeterOutboxOptions {
  /** Events sent per batch (default 100). */
  batchSize?: number
  /** Sends in flight at once within a batch (default 4). */
  concurrency?: number
  /** First retry delay after a failed batch (default 1 s), doubled up to `maxRetryMs`. */
  retryMs?: number
  /** Longest retry delay (default 5 minutes). */
  maxRetryMs?: number
  /** Delay from the first queued event to the automatic send (default 1 s). */
  intervalMs?: number
  /** Queue bound; past it the oldest are dropped (and found again by reconciliation). Default 100 000. */
  maxPending?: number
  /** How long a delivered marker is kept (default 35 days, Stripe's back-dating window). */
  markerTtlMs?: number
  /** The amount sent for an event (default its `overage`); 0 or less sends nothing. */
  value?: (event: UsageEvent) => number
}

/** Counts of one `flush()`. */
export interface MeterFlushResult {
  delivered: number
  /** The provider already had it (a retry whose first answer was lost). */
  duplicates: number
  /** Already marked delivered: nothing sent. */
  skipped: number
  /** The account has no billing customer: dropped (reconciliation reports it). */
  noCustomer: number
  /** Refused for good by the provider (reported to `onError`). */
  rejected: number
  /** Failed for now, or not sent after such a failure stopped the flush; still queued. */
  retrying: number
}

export interface MeterOutbox {
  /** Queues the events that carry overage (others are ignored); idempotent by event id. */
  enqueue(events: ReadonlyArray<UsageEvent>): void
  /** Sends everything queued now, whatever the backoff. */
  flush(): Promise<MeterFlushResult>
  /** True when the event's overage was delivered (its marker is set). */
  isDelivered(event: UsageEvent): Promise<boolean>
  /**
   * True when the provider refused the event for good (marked for `markerTtlMs`): healing
   * does not send it again; `reconcile` with `redeliver` does (the cause fixed).
   */
  isRejected(event: UsageEvent): Promise<boolean>
  /** Events queued and not yet delivered. */
  readonly pending: number
  /** The counts of the last flush (automatic or not), for monitoring; null before the first. */
  readonly lastFlush: MeterFlushResult | null
  /** Whether `eventId` is queued. */
  has(eventId: string): boolean
  /** Flushes once and stops the timers. */
  close(): Promise<MeterFlushResult>
}

const EMPTY: MeterFlushResult = {
  delivered: 0,
  duplicates: 0,
  skipped: 0,
  noCustomer: 0,
  rejected: 0,
  retrying: 0,
}

/**
 * @param report told of rejected sends and storage failures (a storage closed under it once);
 *   never given a secret
 */
export function createMeterOutbox(
  tb: Tollbooth,
  sink: MeterSink,
  options: MeterOutboxOptions = {},
  report: (err: unknown) => void = () => {},
): MeterOutbox {
  // A storage closed under it fails each retry: said once.
  const onError = reportClosedOnce(tb.storage, report)
  const batchSize = options.batchSize ?? 100
  const concurrency = options.concurrency ?? 4
  const retryMs = options.retryMs ?? 1_000
  const maxRetryMs = options.maxRetryMs ?? 300_000
  const intervalMs = options.intervalMs ?? 1_000
  const maxPending = options.maxPending ?? 100_000
  const ttl = options.markerTtlMs ?? MARKER_TTL_MS
  const amountOf = options.value ?? ((e: UsageEvent) => e.overage)
  const now = () => tb.options.clock?.now() ?? Date.now()
  // Each wait on the store within `storageTimeoutMs`, as the core's: a store that does not
  // answer (frozen, a table locked) fails the event for now (kept queued) and stops the flush,
  // instead of holding it, and close() with it, for as long as the store stays so.
  const bounded = <T>(p: Promise<T>) => withTimeout(p, tb.options.storageTimeoutMs)
  const store = createMarkers(tb.storage, now)
  const markers: typeof store = {
    has: (key) => bounded(store.has(key)),
    set: (key, ttlMs) => bounded(store.set(key, ttlMs)),
    clear: (key) => bounded(store.clear(key)),
  }
  const queue = new Map<string, UsageEvent>()
  let running: Promise<MeterFlushResult> | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let backoff = 0
  let closed = false
  let last: MeterFlushResult | null = null

  const schedule = (ms: number) => {
    if (timer || closed) return
    timer = setTimeout(() => {
      timer = null
      flush().catch(onError)
    }, ms)
    ;(timer as { unref?: () => void }).unref?.()
  }

  const deliver = async (
    e: UsageEvent,
    r: MeterFlushResult,
    customers: Map<string, string | null>,
  ) => {
    const key = markerKey(e.accountId, 'meter', e.id)
    if (await markers.has(key)) {
      r.skipped++
      return true
    }
    let customer = customers.get(e.accountId)
    if (customer === undefined) {
      customer = (await bounded(tb.storage.accounts.get(e.accountId)))?.billingCustomerId ?? null
      customers.set(e.accountId, customer)
    }
    if (customer === null) {
      r.noCustomer++
      return true
    }
    let answer: 'delivered' | 'duplicate'
    try {
      answer = await sink.send(e, amountOf(e), customer)
    } catch (err) {
      if (sink.retryable(err)) return false
      r.rejected++
      onError(err)
      await markers.set(markerKey(e.accountId, 'meter-rejected', e.id), ttl).catch(onError)
      return true
    }
    await markers.set(key, ttl)
    if (answer === 'duplicate') r.duplicates++
    else r.delivered++
    return true
  }

  const run = async (): Promise<MeterFlushResult> => {
    const r: MeterFlushResult = { ...EMPTY }
    const customers = new Map<string, string | null>()
    const all = [...queue.values()]
    // A send that fails for now (the provider down, a 429, a 5xx, the store) stops the flush:
    // the sends in flight end, the rest is not sent into the outage but waits for the backoff.
    let halted = false
    let tried = 0
    for (let i = 0; i < all.length && !halted; i += batchSize) {
      const batch = all.slice(i, i + batchSize)
      let next = 0
      const worker = async () => {
        while (next < batch.length && !halted) {
          const e = batch[next++]!
          tried++
          let done = false
          try {
            done = await deliver(e, r, customers)
          } catch (err) {
            onError(err) // storage: keep it queued
          }
          if (done) queue.delete(e.id)
          else {
            r.retrying++
            halted = true
            // To the back of the queue: one event that keeps failing blocks no other.
            if (queue.delete(e.id)) queue.set(e.id, e)
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, batch.length) }, worker))
    }
    r.retrying += all.length - tried
    if (r.retrying > 0) {
      backoff = backoff === 0 ? retryMs : Math.min(maxRetryMs, backoff * 2)
      schedule(backoff)
    } else {
      backoff = 0
      if (queue.size > 0) schedule(intervalMs) // queued while this flush ran
    }
    last = r
    return r
  }

  const flush = (): Promise<MeterFlushResult> => {
    if (running) return running.then(flush, flush)
    if (timer) clearTimeout(timer)
    timer = null
    running = run().finally(() => {
      running = null
    })
    return running
  }

  // Its getters apart, so it keeps fast properties (`fast-object`).
  const methods: Omit<MeterOutbox, 'pending' | 'lastFlush'> = {
    enqueue(events) {
      for (const e of events) {
        if (!(amountOf(e) > 0) || e.bypassed) continue
        queue.set(e.id, e)
      }
      while (queue.size > maxPending) {
        const oldest = queue.keys().next().value as string
        queue.delete(oldest)
        onError(new Error(`meter out-box full (${maxPending}): dropped event ${oldest}`))
      }
      if (queue.size >= batchSize) schedule(0)
      else if (queue.size > 0) schedule(backoff || intervalMs)
    },
    flush,
    isDelivered: (e) => markers.has(markerKey(e.accountId, 'meter', e.id)),
    isRejected: (e) => markers.has(markerKey(e.accountId, 'meter-rejected', e.id)),
    has: (id) => queue.has(id),
    async close() {
      // No retry after this flush; it has the core's close() bound (`DRAIN_MS`) for a queue
      // that takes longer (a slow provider, the store failing each event). What it did not
      // send stays recorded, in the meter's journal: the next process's healing sends it.
      closed = true
      if (timer) clearTimeout(timer)
      timer = null
      const r = flush()
      if (await endsWithin(r, DRAIN_MS)) return r
      const left = queue.size
      onError(
        new StorageUnavailableError(
          `meter out-box: close() did not wait past ${DRAIN_MS} ms for its flush; ${left} event(s) not sent, left to the meter's healing`,
        ),
      )
      return { ...EMPTY, retrying: left }
    },
  }
  return withAccessors(methods, {
    get pending() {
      return queue.size
    },
    get lastFlush() {
      return last
    },
  })
}
