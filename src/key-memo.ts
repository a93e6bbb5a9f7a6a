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
  }

  get(key: string): V | undefined {
    if (this.size === 0) return undefined
    const at = this.find(key, this.hash(this.seed, key))
    return at < 0 ? undefined : this.values[this.index.slotAt(at)]
  }

  /** Remembers `key` as `value` (see the module's doc for the keys it keeps). */
  set(key: string, value: V): void {
    const n = key.length
    if (n > MAX_LENGTH) return
    for (let i = 0; i < n; i++) if (key.charCodeAt(i) > 0x7f) return
    const h = this.hash(this.seed, key)
    const at = this.size === 0 ? -1 : this.find(key, h)
    if (at >= 0) {
      this.values[this.index.slotAt(at)] = value
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
    this.index.add(slot, h)
    this.size++
  }

  delete(key: string): void {
    if (this.size === 0) return
    const at = this.find(key, this.hash(this.seed, key))
    if (at < 0) return
    const slot = this.index.slotAt(at)
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
    this.index.grow(slots)
  }
}
