/**
 * @module cache
 *
 * The verified-key cache (lru-cache): a key found by hash is kept for `ttlMs` with its
 * limits already compiled into checks, and an unknown hash is remembered for `negativeTtlMs`
 * so a flood of made-up (but well-formed) keys does not reach storage. Revoke, update and
 * rotate drop the entry at once on this instance, and through the storage's change feed on
 * every other; without a feed, the TTL bounds how long another instance may keep it.
 */

import { LRUCache } from 'lru-cache'
import type { ApiKeyInfo } from './decision.js'
import type { CheckTemplate } from './limits/admission.js'
import type { KeyRecord } from './storage/types.js'

/** A verified key with what the hot path derives from it, computed once per cache fill. */
export interface CachedKey {
  record: KeyRecord
  info: ApiKeyInfo
  templates: CheckTemplate[]
}

const MISSING = Symbol('missing')
type Entry = CachedKey | typeof MISSING

export interface KeyCache {
  /** The entry, null for a remembered miss, undefined when not cached. */
  get(hash: string): CachedKey | null | undefined
  set(hash: string, entry: CachedKey | null): void
  delete(hash: string): void
  clear(): void
}

export function createKeyCache(
  options: false | { ttlMs: number; negativeTtlMs: number; max: number },
  now: () => number,
): KeyCache {
  if (options === false) {
    return { get: () => undefined, set: () => {}, delete: () => {}, clear: () => {} }
  }
  // perf.now-free TTL: lru-cache reads `performance.now()` unless given a clock; ours is injectable.
  const lru = new LRUCache<string, Entry>({
    // Read the (injectable) clock on every check: lru-cache otherwise caches it for 1 ms.
    ttlResolution: 0,
    max: options.max,
    ttl: options.ttlMs,
    ttlAutopurge: false,
    perf: { now },
  })
  return {
    get(hash) {
      const e = lru.get(hash)
      return e === undefined ? undefined : e === MISSING ? null : e
    },
    set(hash, entry) {
      if (entry === null) lru.set(hash, MISSING, { ttl: options.negativeTtlMs })
      else lru.set(hash, entry)
    },
    delete: (hash) => void lru.delete(hash),
    clear: () => lru.clear(),
  }
}
