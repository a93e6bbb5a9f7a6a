/**
 * @module storage/event-ring
 *
 * The memory store's newest usage events, oldest first, kept by field: each event's eleven
 * strings in one array and its seven numbers in a `Float64Array`, a slot per event, the oldest
 * slot taken by the next event once the ring is full. An event kept as an object (a copy of the
 * caller's) lived for `maxEvents` requests, so every scavenge copied the last few thousand of
 * them twice, once within the young generation and once into the old; by field, nothing of an
 * event is a new object but its id (and whatever strings the caller made for it). Reads build
 * the event anew, as a copy of their own.
 *
 * The ring also finds an event by its id (`has`: the store records an id once): an index of
 * slots by a hash of the id (`slot-index`), updated in place as a slot is taken. A `Set` of
 * the ids did the same with an entry added and one deleted per event, which
 * cost about 0.4 µs an event and rebuilt the set's table every few thousand (bench/NOTES.md,
 * session 18).
 */

import { hashText, randomSeed, SlotIndex } from '../slot-index.js'
import type { UsageEvent } from './types.js'

/** String fields per slot, in this order. */
const ID = 0
const REQUEST_ID = 1
const KEY_ID = 2
const ACCOUNT_ID = 3
const CATEGORY = 4
const KEY_CATEGORY = 5
const CODE = 6
const IP = 7
const METHOD = 8
const PATH = 9
const PROVIDER = 10
const TEXTS = 11

/** Number fields per slot, in this order; a null `ttfbMs` is NaN. */
const TIME = 0
const UNITS = 1
const OVERAGE = 2
const TOKENS = 3
const STATUS = 4
const DURATION = 5
const TTFB = 6
const NUMBERS = 7

export class EventRing {
  /** Events held, at most `max`. */
  size = 0
  /** The oldest event's slot (0 until the ring is full). */
  private head = 0
  private cap = 0
  private texts: Array<string | null> = []
  private numbers = new Float64Array(0)
  private bypassed = new Uint8Array(0)
  /** The slots by their id's hash (half full at most). */
  private index = new SlotIndex(0)
  /** The hash's seed, random per ring: ids a caller chose cannot be made to collide at will. */
  private readonly seed = randomSeed()
  /** The id `has` hashed last, and its hash: the push that follows it does not hash it again. */
  private lastId = ''
  private lastHash = 0

  constructor(readonly max: number) {}

  /** True when an event of this id is held. */
  has(id: string): boolean {
    if (this.size === 0) return false
    const h = hashText(this.seed, id)
    this.lastId = id
    this.lastHash = h
    const ix = this.index
    for (let at = ix.first(h); at >= 0; at = ix.next(h, at))
      if (this.texts[ix.slotAt(at) * TEXTS + ID] === id) return true
    return false
  }

  /** Adds `e` as the newest event; the id of the oldest one when it took that one's slot. */
  push(e: UsageEvent): string | undefined {
    let slot: number
    let evicted: string | undefined
    if (this.size < this.max) {
      if (this.size === this.cap) this.grow()
      slot = this.size++
    } else {
      slot = this.head
      evicted = this.texts[slot * TEXTS + ID] as string
      this.head = slot + 1 === this.max ? 0 : slot + 1
      this.index.remove(slot)
    }
    this.index.add(slot, e.id === this.lastId ? this.lastHash : hashText(this.seed, e.id))
    const t = slot * TEXTS
    const texts = this.texts
    texts[t + ID] = e.id
    texts[t + REQUEST_ID] = e.requestId
    texts[t + KEY_ID] = e.keyId
    texts[t + ACCOUNT_ID] = e.accountId
    texts[t + CATEGORY] = e.category
    texts[t + KEY_CATEGORY] = e.keyCategory ?? null
    texts[t + CODE] = e.code
    texts[t + IP] = e.ip
    texts[t + METHOD] = e.method
    texts[t + PATH] = e.path
    texts[t + PROVIDER] = e.provider
    const n = slot * NUMBERS
    const numbers = this.numbers
    numbers[n + TIME] = e.time
    numbers[n + UNITS] = e.units
    numbers[n + OVERAGE] = e.overage
    numbers[n + TOKENS] = e.tokens
    numbers[n + STATUS] = e.status
    numbers[n + DURATION] = e.durationMs
    numbers[n + TTFB] = e.ttfbMs ?? Number.NaN
    this.bypassed[slot] = e.bypassed ? 1 : 0
    return evicted
  }

  /** The slot of the `i`th oldest event. */
  private slot(i: number): number {
    const s = this.head + i
    return s < this.size ? s : s - this.size
  }

  keyIdAt(i: number): string {
    return this.texts[this.slot(i) * TEXTS + KEY_ID] as string
  }

  accountIdAt(i: number): string {
    return this.texts[this.slot(i) * TEXTS + ACCOUNT_ID] as string
  }

  timeAt(i: number): number {
    return this.numbers[this.slot(i) * NUMBERS + TIME]!
  }

  /** The `i`th oldest event, as a new object. */
  at(i: number): UsageEvent {
    const slot = this.slot(i)
    const t = slot * TEXTS
    const n = slot * NUMBERS
    const texts = this.texts
    const numbers = this.numbers
    const ttfb = numbers[n + TTFB]!
    return {
      id: texts[t + ID] as string,
      requestId: texts[t + REQUEST_ID] as string,
      keyId: texts[t + KEY_ID] as string,
      accountId: texts[t + ACCOUNT_ID] as string,
      time: numbers[n + TIME]!,
      units: numbers[n + UNITS]!,
      overage: numbers[n + OVERAGE]!,
      tokens: numbers[n + TOKENS]!,
      category: texts[t + CATEGORY] as string | null,
      keyCategory: texts[t + KEY_CATEGORY] as string | null,
      status: numbers[n + STATUS]!,
      durationMs: numbers[n + DURATION]!,
      ttfbMs: Number.isNaN(ttfb) ? null : ttfb,
      code: texts[t + CODE] as string | null,
      ip: texts[t + IP] as string | null,
      method: texts[t + METHOD] as string,
      path: texts[t + PATH] as string,
      bypassed: this.bypassed[slot] === 1,
      provider: texts[t + PROVIDER] as string | null,
    }
  }

  /** Keeps the events `keep` answers true for, in their order (a prune: rare, O(size)). */
  retain(keep: (i: number) => boolean): void {
    const kept: UsageEvent[] = []
    for (let i = 0; i < this.size; i++) if (keep(i)) kept.push(this.at(i))
    this.texts.fill(null)
    this.index.clear()
    this.size = 0
    this.head = 0
    for (const e of kept) this.push(e)
  }

  /** Room for twice as many events (up to `max`), while the ring is not full (head 0). */
  private grow(): void {
    const cap = Math.min(this.max, Math.max(16, this.cap * 2))
    const numbers = new Float64Array(cap * NUMBERS)
    numbers.set(this.numbers)
    const bypassed = new Uint8Array(cap)
    bypassed.set(this.bypassed)
    const texts = new Array<string | null>(cap * TEXTS).fill(null)
    for (let i = 0; i < this.size * TEXTS; i++) texts[i] = this.texts[i]!
    this.texts = texts
    this.numbers = numbers
    this.bypassed = bypassed
    this.cap = cap
    this.index.grow(cap)
  }
}
