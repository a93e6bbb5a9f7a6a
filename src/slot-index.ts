/**
 * @module slot-index
 *
 * Finds numbered slots by a 32-bit hash, off the V8 heap: open addressing with linear probing
 * in one `Int32Array` of positions, each holding a slot (+ 1; 0 is an empty position) beside
 * its hash, so a probe reads one cache line and compares hashes before its owner compares
 * anything else. At most half the positions are taken; a deletion moves back the entries
 * after it (no tombstones, so a table that churns never fills with them). What a slot holds,
 * and how a candidate is confirmed, is the owner's: the memory store's usage events by id
 * (`storage/event-ring`) and counters by name (`storage/counter-slots`), and the key cache's
 * memo by the presented key (`key-memo`).
 *
 * A `Map` did the same with an entry object per key on the heap: among a million keys its
 * lookups were a bucket, an entry and the stored key, each a cache miss, and the entries
 * weighed on every scavenge (bench/NOTES.md, session 19).
 */

/**
 * FNV-1a of a string's UTF-16 code units, from `seed`. With `tail` (> 0, and shorter than the
 * string), only its last `tail` code units and its length: for texts whose ends are random
 * (keys tollbooth issues, key hashes), at a fraction of the cost (~2 ns a character here).
 */
export function hashText(seed: number, s: string, tail = 0): number {
  let h = seed ^ 0x811c9dc5
  let from = 0
  if (tail > 0 && s.length > tail) {
    from = s.length - tail
    h = Math.imul(h ^ s.length, 0x01000193)
  }
  for (let i = from; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h
}

/**
 * A seed for {@link hashText}, random per table: texts a caller chooses cannot be made to
 * collide at will (only confirmed slots are ever stored, but a probe's length is theirs).
 */
export const randomSeed = (): number => (Math.random() * 0x100000000) | 0

export class SlotIndex {
  /** Pairs (slot + 1, hash) at each position; (0, 0) is empty. */
  private positions: Int32Array
  /** Each indexed slot's hash (for a deletion by slot). */
  private hashes: Int32Array
  private mask: number

  /** An index for slots 0 … `slots` - 1 (see {@link grow}). */
  constructor(slots: number) {
    this.hashes = new Int32Array(slots)
    this.positions = new Int32Array(2 * positionsFor(slots))
    this.mask = this.positions.length / 2 - 1
  }

  /** The number of slots it can index. */
  get slots(): number {
    return this.hashes.length
  }

  /**
   * The slots indexed under hash `h`, one at a time: `first(h)`, then `next(h, at)` with the
   * position the last one answered; -1 when there is no more. A slot is answered with its
   * position: `slotAt(at)`.
   */
  first(h: number): number {
    return this.scan(h, h & this.mask)
  }

  next(h: number, at: number): number {
    return this.scan(h, (at + 1) & this.mask)
  }

  slotAt(at: number): number {
    return this.positions[2 * at]! - 1
  }

  private scan(h: number, from: number): number {
    const p = this.positions
    const mask = this.mask
    for (let i = from; ; i = (i + 1) & mask) {
      const v = p[2 * i]!
      if (v === 0) return -1
      if (p[2 * i + 1] === h) return i
    }
  }

  /** Indexes `slot` (not indexed now) under hash `h`. */
  add(slot: number, h: number): void {
    const p = this.positions
    const mask = this.mask
    this.hashes[slot] = h
    let i = h & mask
    while (p[2 * i] !== 0) i = (i + 1) & mask
    p[2 * i] = slot + 1
    p[2 * i + 1] = h
  }

  /** Takes `slot` (indexed now) out, moving back the entries after it that may move. */
  remove(slot: number): void {
    const p = this.positions
    const mask = this.mask
    let i = this.hashes[slot]! & mask
    while (p[2 * i] !== slot + 1) i = (i + 1) & mask
    p[2 * i] = 0
    p[2 * i + 1] = 0
    for (let j = (i + 1) & mask; p[2 * j] !== 0; j = (j + 1) & mask) {
      const home = p[2 * j + 1]! & mask
      // An entry whose home is not cyclically within (i, j] may move into the hole at i.
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        p[2 * i] = p[2 * j]!
        p[2 * i + 1] = p[2 * j + 1]!
        p[2 * j] = 0
        p[2 * j + 1] = 0
        i = j
      }
    }
  }

  /** Room for slots up to `slots` - 1, every indexed slot kept. */
  grow(slots: number): void {
    const old = this.positions
    const hashes = new Int32Array(slots)
    hashes.set(this.hashes.subarray(0, Math.min(slots, this.hashes.length)))
    this.hashes = hashes
    this.positions = new Int32Array(2 * positionsFor(slots))
    this.mask = this.positions.length / 2 - 1
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0) this.add(old[i]! - 1, old[i + 1]!)
  }

  /** Indexes nothing. */
  clear(): void {
    this.positions.fill(0)
  }
}

/** Positions for `slots` slots: at least twice as many, a power of two. */
function positionsFor(slots: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(2, slots * 2)))
}

/**
 * Values found by a text each of them carries (`keyOf(value)`), on a {@link SlotIndex}: a
 * `Map`'s work without its table on the heap, nor a second reference to each key. Among a
 * million keys a `Map` lookup of a new string (a hash computed from a request) read a bucket
 * and a chain of entries, each stored key's header to compare hashes: ~2.4× the index's
 * probe and confirmation (bench/NOTES.md, session 19). `tail`: hash only the text's last
 * `tail` characters and its length, for texts whose ends are random (key hashes); 0, all.
 */
export class KeyedIndex<V> {
  /** Values held. */
  size = 0
  private readonly seed = randomSeed()
  private readonly index = new SlotIndex(16)
  private readonly values: Array<V | undefined> = []
  private readonly free: number[] = []

  constructor(
    private readonly keyOf: (value: V) => string,
    private readonly tail = 0,
  ) {}

  get(key: string): V | undefined {
    if (this.size === 0) return undefined
    const at = this.find(key)
    return at < 0 ? undefined : this.values[this.index.slotAt(at)]
  }

  has(key: string): boolean {
    return this.size > 0 && this.find(key) >= 0
  }

  /** Adds `value`, whose key no value held has. */
  add(value: V): void {
    let slot = this.free.pop()
    if (slot === undefined) {
      slot = this.values.length
      if (slot >= this.index.slots) this.index.grow(this.index.slots * 2)
    }
    this.values[slot] = value
    this.index.add(slot, this.hash(this.keyOf(value)))
    this.size++
  }

  /** Drops the value of `key`; false when none is held. */
  delete(key: string): boolean {
    if (this.size === 0) return false
    const at = this.find(key)
    if (at < 0) return false
    const slot = this.index.slotAt(at)
    this.index.remove(slot)
    this.values[slot] = undefined
    this.free.push(slot)
    this.size--
    return true
  }

  private hash(key: string): number {
    return hashText(this.seed, key, this.tail)
  }

  /** The index position of `key`'s value, or -1. */
  private find(key: string): number {
    const h = this.hash(key)
    const ix = this.index
    for (let at = ix.first(h); at >= 0; at = ix.next(h, at))
      if (this.keyOf(this.values[ix.slotAt(at)]!) === key) return at
    return -1
  }
}
