/**
 * @module cache
 *
 * The verified-key cache (lru-cache): a key found by hash is kept for `ttlMs` with its
 * limits already compiled into checks, and an unknown hash is remembered for `negativeTtlMs`
 * so a flood of made-up (but well-formed) keys does not reach storage. Revoke, update and
 * rotate drop the entry at once on this instance, and through the storage's change feed on
 * every other; without a feed, the TTL bounds how long another instance may keep it.
 *
 * In front of it, unless `cache.memoizeKeys` is false, a map from the presented key string to
 * the same entry: a repeat request skips the key's format check, its HMAC and the LRU's
 * bookkeeping (together the largest part of authenticating a cached key under load). The
 * map holds the key strings of recent requests in this process's memory only, for no longer
 * than their entry's TTL; storage still sees hashes only. It is cleared whole when it fills
 * (the entries themselves stay in the LRU), and an entry dropped from the LRU (revoked,
 * updated, evicted, expired) is dead for the map too.
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

/** One cached lookup: shared by the hash-keyed LRU and the key-keyed memo. */
interface Slot {
  entry: CachedKey | null
  expiresAt: number
  /** Dropped from the LRU: the memo must not serve it any more. */
  dead: boolean
}

export interface KeyCache {
  /** The entry, null for a remembered miss, undefined when not cached. */
  get(hash: string): CachedKey | null | undefined
  set(hash: string, entry: CachedKey | null): void
  /** By the presented key string (the memo): as `get`, without hashing. */
  getByKey(key: string, now: number): CachedKey | null | undefined
  /** Remembers that `key` hashes to `hash`, whose entry was just read or set. */
  remember(key: string, hash: string): void
  delete(hash: string): void
  clear(): void
}

export interface KeyCacheOptions {
  ttlMs: number
  negativeTtlMs: number
  max: number
  memoizeKeys: boolean
}

export function createKeyCache(options: false | KeyCacheOptions, now: () => number): KeyCache {
  if (options === false) {
    return {
      get: () => undefined,
      set: () => {},
      getByKey: () => undefined,
      remember: () => {},
      delete: () => {},
      clear: () => {},
    }
  }
  // perf.now-free TTL: lru-cache reads `performance.now()` unless given a clock; ours is injectable.
  const lru = new LRUCache<string, Slot>({
    // Read the (injectable) clock on every check: lru-cache otherwise caches it for 1 ms.
    ttlResolution: 0,
    max: options.max,
    ttl: options.ttlMs,
    ttlAutopurge: false,
    perf: { now },
    dispose: (slot) => {
      slot.dead = true
    },
  })
  const memo = options.memoizeKeys ? new Map<string, Slot>() : null
  return {
    get(hash) {
      const s = lru.get(hash)
      return s === undefined ? undefined : s.entry
    },
    set(hash, entry) {
      const ttl = entry === null ? options.negativeTtlMs : options.ttlMs
      lru.set(hash, { entry, expiresAt: now() + ttl, dead: false }, { ttl })
    },
    getByKey(key, t) {
      if (memo === null) return undefined
      const s = memo.get(key)
      if (s === undefined) return undefined
      if (s.dead || s.expiresAt <= t) {
        memo.delete(key)
        return undefined
      }
      return s.entry
    },
    remember(key, hash) {
      if (memo === null) return
      const s = lru.peek(hash)
      if (s === undefined) return
      if (memo.size >= options.max) memo.clear()
      memo.set(key, s)
    },
    delete: (hash) => void lru.delete(hash),
    clear: () => {
      lru.clear()
      memo?.clear()
    },
  }
}
