/**
 * @module keys/first-use
 *
 * Seed 002 lets a key be deleted for good only if it was never used. A use is recorded in
 * `lastUsedAt` and the usage events, both written by each instance's out-box some time after
 * the request; a delete on another instance could read neither and remove a key whose first
 * request was being served, or was admitted between the delete's check and its write.
 *
 * So the first use and the delete meet in one counter of the counter store, shared by every
 * instance, and each takes it in one atomic `consume`:
 * - a key's first admission on an instance (its cache entry knows of no use yet) adds 1 to
 *   the counter, allowed while the counter is below {@link DELETED}: refused, the key is being
 *   deleted and the request is refused as a deleted key's (401);
 * - a delete, after its checks of `lastUsedAt` and the usage, adds {@link DELETED}, allowed
 *   only while the counter is 0: refused, a use came first (409), or another delete.
 * Whichever comes first wins; the other sees it. The counter is a rolling window of
 * {@link FIRST_USE_WINDOW_MS}: by then the use's `lastUsedAt` and events are written (the
 * out-box flushes every few seconds), and a deleted key's lookups find nothing. An instance
 * takes the counter once per key (the cache entry then remembers it), not once per request.
 *
 * Counters of this process's memory store ({@link marksUses} false) are shared with no other
 * instance, and a use on this one is in its out-box, which a delete writes first: no counter
 * is taken there (a key's counter would be one more row in memory for a day).
 */

import { syncCounters } from '../storage/state-counters.js'
import type { Check, ConsumeResult, CounterStore } from '../storage/types.js'

/** How long a first use or a delete stays counted. */
export const FIRST_USE_WINDOW_MS = 86_400_000

/** What a delete adds: more than all the first uses a key can have in a window. */
export const DELETED = 2 ** 40

const check = (accountId: string, keyId: string, limit: number, cost: number): Check => ({
  type: 'window',
  key: `{${accountId}}:first-use:${keyId}`,
  name: 'first-use',
  exact: true,
  limit,
  windowMs: FIRST_USE_WINDOW_MS,
  bucketMs: FIRST_USE_WINDOW_MS / 24,
  cost,
})

/** A key's use, allowed unless a delete took the counter. */
export const useCheck = (accountId: string, keyId: string): Check =>
  check(accountId, keyId, DELETED - 1, 1)

/** A key's delete, allowed only when no use (and no other delete) took the counter. */
export const deleteCheck = (accountId: string, keyId: string): Check =>
  check(accountId, keyId, DELETED, DELETED)

/** Why a delete's `consume` was refused: a use came first, or another delete did. */
export function refusedBy(result: ConsumeResult): 'use' | 'delete' {
  return (result.results[0]?.used ?? 0) >= DELETED ? 'delete' : 'use'
}

/** Whether first uses and deletes meet in `counters`: not in this process's memory store. */
export const marksUses = (counters: CounterStore): boolean => syncCounters(counters) === undefined
