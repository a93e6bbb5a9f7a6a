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
 * memo (`key-memo`, off the V8 heap) holds the key strings of recent requests in this
 * process's memory only, for no longer than their entry's TTL; storage still sees hashes only.
 * It is cleared whole when it fills (the entries themselves stay in the LRU), and an entry
 * dropped from the LRU (revoked, updated, evicted, expired) is dead for the memo too.
 *
 * While the change feed is down (its connection lost: revocations published meanwhile never
 * arrive), an entry is served for `feedDownTtlMs` after it was cached at most, instead of
 * `ttlMs`; when the feed is back the cache is emptied, since any entry may have missed a
 * message. {@link FeedBound} is that rule, shared with the accounts cache.
 */

import { LRUCache } from 'lru-cache'
import type { ApiKeyInfo } from './decision.js'
import { KeyMemo } from './key-memo.js'
import type { CheckTemplate } from './limits/admission.js'
import type { HeldAccount } from './metering/accounts.js'
import type { TimeBlock } from './storage/types.js'
import type { TallyPlace } from './storage/usage-tallies.js'

/**
 * A verified key with what the hot path derives from it, computed once per cache fill. Not
 * the whole record: what a request reads (the key's face, its state, its compiled limits) sits
 * in the entry itself, so among a million keys a request reads one object where the record,
 * its limits and its scopes were each a cache miss, and the cache holds no copy of the record
 * (384 bytes a key).
 */
export interface CachedKey extends Slot, TallyPlace {
  /** The key as a decision shows it (`id`, `accountId`, `kind`, `scopes`, `expiresAt`…). */
  info: ApiKeyInfo
  /** When it was revoked (a revocation may take effect later: a rotation's grace period). */
  revokedAt: number | null
  active: boolean
  /** The record's `limits.timeBlocks`. */
  timeBlocks: TimeBlock[] | undefined
  /**
   * The key's compiled limits (`compileKeyLimits`): the first two in the entry itself, the
   * rest in `ownMore`. Most keys have one or two limits, and an array between the entry and
   * them was two more cache misses a request among a million keys, its object and its
   * elements (bench/NOTES.md, session 20).
   */
  own0: CheckTemplate | null
  own1: CheckTemplate | null
  ownMore: CheckTemplate[] | null
  /**
   * When this instance last wrote the key's `lastUsedAt` (or the stored one it was read with),
   * by the cache's clock (`CacheClock`; NEVER: never, or too long ago to tell; MARKED: never,
   * and this instance has taken the key's first-use counter, `keys/first-use`): see
   * `KeyCache.touch`.
   */
  touchedAt: number
  /** The account's cached admission view this key used last (see `HeldAccount`). */
  account: HeldAccount | undefined
  /** Itself once cached: an entry is its own slot (see `Slot`). */
  entry: CachedKey | null
}

/**
 * Half the span of a cache's times (2^29 ms, about 6.2 days): within it of its base, a time is
 * a small integer in every V8 build (31 bits with pointer compression, 32 without).
 */
const SPAN = 2 ** 29
/** A time too far back to keep (and a key never used): older than any span from the base. */
export const NEVER = -(2 ** 30)
/**
 * A key whose use this instance marked in the counter store (`keys/first-use`) without writing
 * its `lastUsedAt` yet: read as a time as long ago as NEVER, so the next admission writes it.
 */
export const MARKED = NEVER + 1

/**
 * The times a cache keeps in its objects (cached at, served until, last touched), counted in
 * milliseconds from the cache's base. An absolute time (about 2^40 ms) is a double, which V8
 * (without pointer compression, as in Node 20) keeps in a box of its own beside the object: 16
 * bytes a time, 80 a cached key with its account's view (bench/NOTES.md, session 26); a count
 * from a recent base is a small integer held in the object itself. When a time lies a span or
 * more from the base, the base moves to it and `rebased` runs first: the owner empties its
 * cache, whose times count from the old base (once in 6 days of clock, or after a clock jump
 * of as much: every key then costs one cache miss). The base is the first time asked for.
 */
export class CacheClock {
  private base = Number.NaN

  constructor(private readonly rebased: () => void) {}

  /**
   * `now` counted from the base, in whole milliseconds (floored: a clock with fractions of a
   * millisecond reads as the millisecond it is in). `Math.floor` also makes it a small
   * integer as V8 sees it: a subtraction's result, integral or not, is a number object in
   * code not yet optimized, and one such value stored makes the field a boxed double for
   * every object of its shape.
   */
  at(now: number): number {
    const d = Math.floor(now - this.base)
    if (d < SPAN && d > -SPAN) return d
    if (!Number.isNaN(this.base)) this.rebased()
    this.base = now
    return 0
  }

  /**
   * A time read from storage (null: never) counted from the base, as `at(now)` counts `now`:
   * clamped to [NEVER, SPAN], so a time older than a span reads as never and one further ahead
   * as a span ahead.
   */
  of(time: number | null, now: number): number {
    const n = this.at(now)
    if (time === null) return NEVER
    return Math.max(NEVER, Math.min(Math.floor(n + (time - now)), SPAN))
  }
}

/**
 * How long a cached entry may be served, given the change feed: `maxAgeMs` is Infinity while
 * the feed delivers (the TTL alone bounds it) and `downTtlMs` while it does not.
 */
export class FeedBound {
  maxAgeMs = Infinity
  constructor(readonly downTtlMs: number) {}

  /** Records the feed's state; true when it changed. */
  set(live: boolean): boolean {
    const next = live ? Infinity : this.downTtlMs
    if (next === this.maxAgeMs) return false
    this.maxAgeMs = next
    return true
  }

  /** True when an entry cached at `cachedAt` may still be served at `now`. */
  fresh(cachedAt: number, now: number): boolean {
    return this.maxAgeMs === Infinity || now - cachedAt < this.maxAgeMs
  }
}

/**
 * One cached lookup: shared by the hash-keyed LRU and the key-keyed memo. A found key's slot
 * is its entry itself (made by `toCached` with these fields, filled by `set`): among a
 * million keys the memo's hit reads one object where a slot beside the entry was a second
 * cache miss. A remembered miss is a slot of its own, its entry null.
 */
export interface Slot {
  entry: CachedKey | null
  /** By the cache's clock (`CacheClock`), as `expiresAt`. */
  cachedAt: number
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
  /** A stored time (a key's `lastUsedAt`) as an entry keeps it: `CacheClock.of`. */
  since(time: number | null, now: number): number
  /**
   * Whether a request at `now` writes its key's `lastUsedAt` (then recorded in the entry): not
   * when this instance wrote it (or read a stored one) less than `resolutionMs` before, so the
   * stored time is at most that much older than the key's last use, and a key used all the
   * time costs one write a resolution, not one a request. The time lives in the cache entry,
   * which the request has read already: among a million keys the write was a lookup of a cold
   * map entry by key id, twice (the out-box's map, then the key store's), for every request.
   */
  touch(entry: CachedKey, now: number, resolutionMs: number): boolean
  delete(hash: string): void
  clear(): void
  /** A count of the drops so far (`delete`, `clear`, the feed back), for {@link droppedSince}. */
  generation(): number
  /**
   * Whether `hash` was dropped (or the cache cleared) since `generation()` read `since`: a
   * lookup of `hash` that began before such a drop may hold a record older than what the drop
   * stood for (a revocation's message that arrived while the store's answer was on its way),
   * so it is not cached. Exact for the last {@link RECENT_DROPS} drops, true beyond them.
   */
  droppedSince(hash: string, since: number): boolean
  /**
   * The change feed stopped (false) or resumed (true) delivering: entries older than
   * `feedDownTtlMs` are not served while it is down, and the cache empties when it is back.
   */
  feed(live: boolean): void
}

/** How many drops {@link KeyCache.droppedSince} tells apart by hash. */
export const RECENT_DROPS = 64

export interface KeyCacheOptions {
  ttlMs: number
  negativeTtlMs: number
  max: number
  memoizeKeys: boolean
  feedDownTtlMs: number
}

export function createKeyCache(options: false | KeyCacheOptions, now: () => number): KeyCache {
  let clear = () => {}
  // The hashes of the last RECENT_DROPS drops, by drop count (a clear counts as more than that).
  const dropped: string[] = []
  let drops = 0
  const droppedSince = (hash: string, since: number) => {
    if (drops - since > RECENT_DROPS) return true
    for (let g = since; g < drops; g++) if (dropped[g % RECENT_DROPS] === hash) return true
    return false
  }
  const clock = new CacheClock(() => clear())
  const since = (time: number | null, t: number) => clock.of(time, t)
  const touch = (entry: CachedKey, t: number, resolutionMs: number) => {
    // An entry read before the clock moved its base (once in days) counts from the old one:
    // at most this request's write is skipped, and the entry, dropped, is read anew.
    const n = clock.at(t)
    const last = entry.touchedAt
    if (last !== NEVER && n - last < resolutionMs) return false
    entry.touchedAt = n
    return true
  }
  if (options === false) {
    return {
      get: () => undefined,
      set: () => {},
      getByKey: () => undefined,
      remember: () => {},
      since,
      touch,
      delete: () => {},
      clear,
      generation: () => drops,
      droppedSince: () => false,
      feed: () => {},
    }
  }
  const bound = new FeedBound(Math.min(options.feedDownTtlMs, options.ttlMs))
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
  const memo = options.memoizeKeys ? new KeyMemo<Slot>(options.max) : null
  clear = () => {
    drops += RECENT_DROPS + 1
    lru.clear()
    memo?.clear()
  }
  return {
    get(hash) {
      // The clock before the entry (moving its base empties the cache), and only when read.
      const t = bound.maxAgeMs === Infinity ? 0 : clock.at(now())
      const s = lru.get(hash)
      if (s === undefined) return undefined
      if (bound.maxAgeMs !== Infinity && !bound.fresh(s.cachedAt, t)) {
        lru.delete(hash)
        return undefined
      }
      return s.entry
    },
    set(hash, entry) {
      const ttl = entry === null ? options.negativeTtlMs : options.ttlMs
      const t = clock.at(now())
      let slot: Slot
      if (entry === null) slot = { entry, cachedAt: t, expiresAt: t + ttl, dead: false }
      else {
        slot = entry
        entry.entry = entry
        entry.cachedAt = t
        entry.expiresAt = t + ttl
        entry.dead = false
      }
      lru.set(hash, slot, { ttl })
    },
    getByKey(key, now) {
      if (memo === null) return undefined
      const t = clock.at(now)
      const s = memo.get(key)
      if (s === undefined) return undefined
      if (s.dead || s.expiresAt <= t || !bound.fresh(s.cachedAt, t)) {
        memo.delete(key)
        return undefined
      }
      return s.entry
    },
    remember(key, hash) {
      if (memo === null) return
      const s = lru.peek(hash)
      if (s === undefined) return
      memo.set(key, s)
    },
    since,
    touch,
    delete(hash) {
      dropped[drops % RECENT_DROPS] = hash
      drops++
      lru.delete(hash)
    },
    clear,
    generation: () => drops,
    droppedSince,
    feed(live) {
      if (bound.set(live) && live) clear()
    },
  }
}
