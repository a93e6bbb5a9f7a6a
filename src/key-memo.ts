/**
 * @module key-memo
 *
 * The key cache's memo (`cache`): from the key string a request presents to the cached slot it
 * verified as, so a repeat request skips the key's format check and its HMAC. Kept off the V8
 * heap: each key's characters in a row of 64 bytes (its length, then its characters) found by
 * a {@link SlotIndex} of their hash, and beside them only the slot's object. A `Map` kept a
 * string and an entry per key on the heap, and a hit among a million keys read a bucket, an
 * entry and the stored string, each a cache miss; here a hit reads the index's line and the
 * key's row (bench/NOTES.md, session 19).
 *
 * Beside each row, the time its value stops being served (`set`'s `expiresAt`): a hit checks it
 * there, in an array read alongside the row, where the value's own field (a double, boxed: a
 * number object of its own) was one more cache miss after the value's (bench/NOTES.md,
 * session 24).
 *
 * Only keys of at most 63 ASCII characters are kept (every key tollbooth issues: a prefix of
 * at most 32 letters, digits or `_`, then 33 characters); another is not remembered, and is
 * hashed again on each request, which is all the memo saves. When `max` keys are held, the
 * next one empties it first.
 */

import { hashText, randomSeed, SlotIndex } from './slot-index.js'

/** Bytes per key: its length, then its characters. */
const ROW = 64
const MAX_LENGTH = ROW - 1
const FIRST_SLOTS = 16
/**
 * The key's last 16 characters (and its length) are hashed: a key tollbooth issues ends in 27
 * random characters and a checksum, and only such keys are stored, so their hashes spread as
 * well as the whole key's would, in half the time.
 */
const hashKey = (seed: number, key: string) => hashText(seed, key, 16)

export class KeyMemo<V> {
  /** Keys held. */
  size = 0
  private readonly seed = randomSeed()
  private index: SlotIndex
  private chars: Uint8Array
  /** Per slot: when its value stops being served (ms; Infinity: kept until deleted). */
  private expires: Float64Array
  private values: Array<V | undefined> = []
  private free: number[] = []
  /** Slots handed out since the last `clear` (the free ones included). */
  private used = 0

  /** `hash` is for tests (one that collides at will); the memo's own is seeded per memo. */
  constructor(
    private readonly max: number,
    private readonly hash: (seed: number, key: string) => number = hashKey,
  ) {
    const slots = Math.max(1, Math.min(FIRST_SLOTS, max))
    this.index = new SlotIndex(slots)
    this.chars = new Uint8Array(slots * ROW)
    this.expires = new Float64Array(slots)
  }

  /**
   * The value of `key`, unless its time came at `now` (then it is forgotten). The value and
   * the expiry are read before the row is compared: among a million keys each read is a cache
   * miss, and made together they overlap instead of waiting for the comparison.
   */
  get(key: string, now = Number.NEGATIVE_INFINITY): V | undefined {
    if (this.size === 0) return undefined
    const h = this.hash(this.seed, key)
    const ix = this.index
    for (let at = ix.first(h); at >= 0; at = ix.next(h, at)) {
      const slot = ix.slotAt(at)
      const value = this.values[slot]
      const expiresAt = this.expires[slot]!
      if (!this.holds(slot, key)) continue
      if (expiresAt > now) return value
      this.drop(slot)
      return undefined
    }
    return undefined
  }

  /**
   * Remembers `key` as `value` until `expiresAt` (see the module's doc for the keys it keeps).
   */
  set(key: string, value: V, expiresAt = Number.POSITIVE_INFINITY): void {
    const n = key.length
    if (n > MAX_LENGTH) return
    for (let i = 0; i < n; i++) if (key.charCodeAt(i) > 0x7f) return
    const h = this.hash(this.seed, key)
    const at = this.size === 0 ? -1 : this.find(key, h)
    if (at >= 0) {
      const slot = this.index.slotAt(at)
      this.values[slot] = value
      this.expires[slot] = expiresAt
      return
    }
    if (this.size >= this.max) this.clear()
    let slot = this.free.pop()
    if (slot === undefined) {
      slot = this.used++
      if (slot >= this.index.slots) this.grow(slot)
    }
    const c = this.chars
    const o = slot * ROW
    c[o] = n
    for (let i = 0; i < n; i++) c[o + 1 + i] = key.charCodeAt(i)
    this.values[slot] = value
    this.expires[slot] = expiresAt
    this.index.add(slot, h)
    this.size++
  }

  delete(key: string): void {
    if (this.size === 0) return
    const at = this.find(key, this.hash(this.seed, key))
    if (at >= 0) this.drop(this.index.slotAt(at))
  }

  private drop(slot: number): void {
    this.index.remove(slot)
    this.values[slot] = undefined
    this.free.push(slot)
    this.size--
  }

  clear(): void {
    this.index.clear()
    this.values.length = 0
    this.free.length = 0
    this.used = 0
    this.size = 0
  }

  /** The index position of `key` (whose hash is `h`), or -1. */
  private find(key: string, h: number): number {
    const ix = this.index
    for (let at = ix.first(h); at >= 0; at = ix.next(h, at))
      if (this.holds(ix.slotAt(at), key)) return at
    return -1
  }

  /** True when row `slot` holds `key`'s characters. */
  private holds(slot: number, key: string): boolean {
    const c = this.chars
    const o = slot * ROW
    const n = key.length
    if (c[o] !== n) return false
    for (let i = 0; i < n; i++) if (c[o + 1 + i] !== key.charCodeAt(i)) return false
    return true
  }

  /** Room for slot `slot`: twice the slots, up to `max`. */
  private grow(slot: number): void {
    const slots = Math.max(slot + 1, Math.min(this.max, this.index.slots * 2))
    const chars = new Uint8Array(slots * ROW)
    chars.set(this.chars)
    this.chars = chars
    const expires = new Float64Array(slots)
    expires.set(this.expires)
    this.expires = expires
    this.index.grow(slots)
  }
}
