/**
 * @module change-feed
 *
 * How an instance listens to its storage's change feed: a key's hash drops the key from the
 * cache, and `account:<id>` the account's admission view. Whenever the feed reports it stopped
 * delivering, or its subscription failed, both caches serve entries for `cache.feedDownTtlMs`
 * at most; they empty when it reports delivering again.
 *
 * A feed can also stop delivering without knowing it (a half-open connection after a network
 * partition, a NAT or load balancer dropping an idle flow, a pooler handing the LISTEN's
 * server connection to another client, a subscriber left on a failed-over Redis node): no
 * error, no close, so no `onStatus(false)`. Every `probeMs` the instance publishes a probe of
 * its own through the feed; one not heard back by the next is taken as the feed down (caches
 * trusted `feedDownTtlMs`) until one is heard again. A silent feed is so noticed within
 * `2 × probeMs`, and reported once through `onError` (a `StorageUnavailableError` saying what
 * to check), and once more when a probe is heard again; `tb.stats().feed` shows it meanwhile.
 * Probes are one publish each `probeMs` per instance (one not sent while the last one's
 * publish is still pending); other instances' probes are ignored. A feed marked in-process
 * (SQLite's table, whose publisher reads its own message back in the same call) cannot go
 * silent without an error: it gets no probes.
 */

import type { Context } from './context.js'
import { StorageUnavailableError } from './errors.js'
import { ACCOUNT_MESSAGE } from './metering/accounts.js'
import { isInProcess } from './storage/in-process.js'
import type { Storage } from './storage/types.js'

/**
 * The start of a feed probe's message: never a key hash (hex) nor `account:<id>`, nor the
 * PostgreSQL feed's own LISTEN probe (`tollbooth:probe:`, which that feed keeps to itself).
 */
const PROBE_MESSAGE = 'tollbooth:feed-probe:'

/** What this instance knows of its change feed (`tb.stats().feed`). */
export interface FeedFigures {
  /**
   * True while the feed counts as delivering (it says so, and this instance's last probe came
   * back): caches are trusted for `cache.ttlMs`; otherwise for `cache.feedDownTtlMs` only.
   */
  delivering: boolean
  /**
   * True while this instance's probes go unheard although the feed reports no trouble: its
   * messages are lost on the way (a pooler, proxy or load balancer; see `onError`).
   */
  silent: boolean
  /** How many times the feed went silent since the instance started. */
  silences: number
}

/** The listener of one instance: its figures, and how it stops. */
export interface FeedWatch {
  off: Promise<() => void>
  stopProbing(): void
  figures(): FeedFigures
}

/**
 * Subscribes `ctx`'s caches to `storage.changes`, probing it every `probeMs` (0: never).
 *
 * @returns undefined when the storage has no change feed
 */
export function watchFeed(
  storage: Storage,
  ctx: Context,
  onError: (err: unknown) => void,
  o: { probeMs: number; feedDownTtlMs: number },
): FeedWatch | undefined {
  const feed = storage.changes
  if (!feed) return undefined
  const probeMs = isInProcess(feed) ? 0 : o.probeMs
  /** What the feed says (`onStatus`), and whether the last probe came back. */
  let reported = false
  let fed = true
  let heard = true
  /** Silent: probes unheard while the feed says it delivers; since when (ms), and how often. */
  let silentSince: number | null = null
  let silences = 0
  // Both caches act on a change only (a repeated state is a no-op).
  const update = () => {
    ctx.cache.feed(fed && heard)
    ctx.accounts.feed(fed && heard)
  }
  let waiting = false
  const onStatus = (up: boolean) => {
    reported = true
    fed = up
    // A probe sent before the feed said so may have been lost with the connection: not
    // taken for silence (the feed reported its own trouble).
    waiting = false
    update()
  }
  // Drawn lazily: Workers allow no random numbers at module scope (no feed there anyway).
  let mine: string | undefined
  const own = () => {
    mine ??= `${PROBE_MESSAGE}${ctx.instanceId}:`
    return mine
  }
  let sending = false
  let sent = 0
  /** Why the last probe's publish failed, if it did. */
  let refused: unknown
  const onMessage = (message: string) => {
    if (message.startsWith(PROBE_MESSAGE)) {
      if (message.startsWith(own())) {
        waiting = false
        heard = true
        update()
        if (silentSince !== null) {
          onError(
            new Error(
              `the change feed delivers again: this instance's probe came back after it was silent for ${Date.now() - silentSince} ms; caches are trusted for cache.ttlMs again`,
            ),
          )
          silentSince = null
        }
      }
      return
    }
    if (message.startsWith(ACCOUNT_MESSAGE))
      ctx.accounts.invalidate(message.slice(ACCOUNT_MESSAGE.length))
    else ctx.cache.delete(message)
  }
  let timer: ReturnType<typeof setInterval> | null = null
  if (probeMs > 0) {
    timer = setInterval(() => {
      if (waiting) {
        heard = false
        update()
        if (fed && silentSince === null) {
          silentSince = Date.now()
          silences++
          onError(silent(probeMs, o.feedDownTtlMs, sending, refused))
        }
      }
      if (sending) return
      waiting = true
      sending = true
      refused = undefined
      // A probe whose publish fails is not heard: the next tick says so, with the publish's
      // error as the cause (a failed revocation's publish is retried by `publisher`).
      feed
        .publish(`${own()}${++sent}`)
        .catch((err: unknown) => {
          refused = err
        })
        .finally(() => {
          sending = false
        })
    }, probeMs)
    ;(timer as { unref?: () => void }).unref?.()
  }
  const off = feed.subscribe(onMessage, { onStatus }).catch((err) => {
    onError(err)
    // Not delivering (a feed that keeps trying says so with onStatus(true) when it does).
    if (!reported) {
      fed = false
      update()
    }
    return () => {}
  })
  return {
    off,
    stopProbing() {
      if (timer) clearInterval(timer)
      timer = null
    },
    figures: () => ({ delivering: fed && heard, silent: silentSince !== null, silences }),
  }
}

/**
 * The report of a feed gone silent: what it costs, and what to check. `pending`: the probe's
 * publish has not ended yet; `refused`: why it failed, if it did.
 */
function silent(
  probeMs: number,
  feedDownTtlMs: number,
  pending: boolean,
  refused: unknown,
): StorageUnavailableError {
  const why = pending
    ? `was not published within ${probeMs} ms (its publish still waits for the store)`
    : refused === undefined
      ? `was not delivered back through the storage's change feed within ${probeMs} ms, and the feed reports no trouble`
      : "could not be published through the storage's change feed"
  return new StorageUnavailableError(
    `change feed silent: this instance's probe, sent every cache.feedProbeMs (${probeMs} ms), ${why}. Revocations and account changes made on other instances may not be reaching this one: its caches are trusted for cache.feedDownTtlMs (${feedDownTtlMs} ms) only until a probe comes back. Check what lies between this process and the store on the subscriber's connection: a pooler in transaction mode (PostgreSQL: give postgresStorage a listenPool that reaches the server directly or through session pooling), a proxy, NAT or load balancer dropping idle connections, a Redis subscriber left on a failed-over node`,
    refused === undefined ? undefined : { cause: refused },
  )
}
