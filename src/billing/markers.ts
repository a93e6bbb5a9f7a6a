/**
 * @module billing/markers
 *
 * "Has this already happened?" flags for billing, kept in the counter store so every
 * instance sees them and they expire on their own: a processed webhook event, a meter event
 * delivered to the provider (and a credit grant of an earlier version, which is only read: a
 * grant is now kept with its credit, see `apply`). A marker is a counter store's `claim`, so setting
 * one is atomic across instances: of two concurrent callers, exactly one gets `true`.
 *
 * **Pro:** Redis and PostgreSQL counters make markers durable and shared. **Con:** a marker
 * lives `ttlMs` (days to weeks), one small value each; with the memory storage they are lost
 * on restart, like everything else there.
 */

import type { Storage } from '../storage/types.js'

/** Default marker lifetime: 35 days, longer than any provider's retry or resend window. */
export const MARKER_TTL_MS = 35 * 86_400_000

export interface Markers {
  /** True while the marker `key` is set. */
  has(key: string): Promise<boolean>
  /** Sets `key` for `ttlMs`; true when this call set it, false when it was already set. */
  set(key: string, ttlMs?: number): Promise<boolean>
  /** Clears `key` (a claim whose work failed, so a retry may claim it again). */
  clear(key: string): Promise<void>
}

/** Markers on `storage.counters`, read at `now()`. */
export function createMarkers(storage: Storage, now: () => number): Markers {
  return {
    has: (key) => storage.counters.claimed(key, now()),
    set: (key, ttlMs = MARKER_TTL_MS) => storage.counters.claim(key, ttlMs, now()),
    clear: (key) => storage.counters.unclaim(key),
  }
}

/** The counter key of a marker, with the account id as the Redis Cluster hash tag. */
export const markerKey = (accountId: string, kind: string, id: string) =>
  `{${accountId}}:billing:${kind}:${id}`
