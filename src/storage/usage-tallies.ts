/**
 * @module storage/usage-tallies
 *
 * The memory store's usage totals: admitted requests and units per account, hour, usage
 * category and key category, kept as events are recorded (and as evicted ones leave the
 * ring), so a summary of whole hours reads totals, never the events.
 *
 * Kept off the V8 heap, as the counters are (`storage/counter-slots`): each (account, hour,
 * category pair) is a row of four numbers in one `Float64Array` (the hour, the pair's number,
 * requests, units), an account's rows a list newest hour first (links in an `Int32Array`), and
 * a map from the account id to its first row. Among a million accounts a tally of objects (an
 * account's tallies, its hour's, two arrays) was four cold objects a request and about 280
 * bytes of heap an account, which every young-generation collection walks (bench/NOTES.md,
 * session 14). A category pair is a number: the pairs an instance sees are few (its routes'
 * and keys' categories), kept for the life of the store.
 *
 * Events come mostly of one account and hour in a row, and mostly in time order: the row found
 * last is tried first, and a list is walked from its newest hour only as far as the event's.
 */

import { roundAmount } from '../limits/amount.js'
import { USAGE_HOUR_MS } from '../metering/usage-buckets.js'
import { doubled } from './typed-arrays.js'
import type { UsageEvent, UsageStore } from './types.js'

/**
 * Numbers per row, and their places. The second holds two 32-bit integers (read through an
 * `Int32Array` over the same bytes): the pair's number and the row's generation, so a place is
 * checked against the row it names, one cache line (the generations in an array of their own
 * were a second one among a million accounts: bench/NOTES.md, session 27).
 */
const STRIDE = 4
const HOUR = 0
const REQUESTS = 2
const UNITS = 3
/** The pair's number and the generation, in the `Int32Array`: row r's at `2 * r * STRIDE + …`. */
const PAIR = 2
const GEN = 3
/** The end of a list (and of the free list). */
const END = -1

/**
 * Where a key's events were tallied last: a row and the row's generation then (bumped each time
 * the row is released, so a row since given to another account or hour is not trusted). Kept
 * by the caller with the key (its cache entry) and handed back with its next event: among a
 * million accounts the row is then reached without the map of accounts, a cold lookup. An
 * in-process hint only; a store of a remote server never sees it.
 */
export interface TallyPlace {
  tallyRow: number
  tallyGen: number
}

const RECORD_PLACED = Symbol('tollbooth.recordPlaced')

type RecordPlaced = (
  events: ReadonlyArray<UsageEvent>,
  places: ReadonlyArray<TallyPlace | undefined>,
) => void

/** What `withPlacedRecord` keeps on a store: its `record` then, and the one with places. */
interface Placed {
  own: UsageStore['record']
  placed: RecordPlaced
}

/**
 * Gives `store` a synchronous `record` that takes places (the memory store's). Not enumerable,
 * so a copy of the store has none, and offered only while `store.record` is still its own: a
 * store whose `record` was replaced (wrapped, or an outage injected by a test) is called
 * through it.
 */
export function withPlacedRecord<T extends UsageStore>(store: T, placed: RecordPlaced): T {
  const value: Placed = { own: store.record, placed }
  Object.defineProperty(store, RECORD_PLACED, { value, enumerable: false })
  return store
}

/** The usage store's `record` with places, while it has one (see `withPlacedRecord`). */
export function placedRecord(store: UsageStore): RecordPlaced | undefined {
  const p = (store as { [RECORD_PLACED]?: Placed })[RECORD_PLACED]
  return p !== undefined && store.record === p.own ? p.placed : undefined
}

export interface UsageTallies {
  /**
   * Adds (sign 1) or removes (sign -1) one request of `units` at `time` to its totals;
   * `place`, when given, is tried first and updated to the row counted.
   */
  add(
    accountId: string,
    time: number,
    category: string,
    keyCategory: string,
    sign: 1 | -1,
    units: number,
    place?: TallyPlace,
  ): void
  /** Calls `f` with the totals of each pair of each of the account's hours in `[from, end)`. */
  each(
    accountId: string,
    from: number,
    end: number,
    f: (category: string, keyCategory: string, requests: number, units: number) => void,
  ): void
  /** Drops every hour that ended by `before`; returns the requests they held. */
  prune(before: number): number
}

export function usageTallies(): UsageTallies {
  let rows = new Float64Array(1024 * STRIDE)
  // The same bytes as 32-bit integers: each row's pair and generation (bumped when the row is
  // released: see `TallyPlace`).
  let ints = new Int32Array(rows.buffer)
  let next = new Int32Array(1024)
  let used = 0
  let free = END
  const heads = new Map<string, number>()
  // Category pairs: numbered in the order first seen.
  const pairIds = new Map<string, Map<string, number>>()
  const pairs: string[] = []

  // The row found last, and its account: the next event is mostly of the same ones.
  let lastAccount: string | null = null
  let lastRow = END

  const pairOf = (category: string, keyCategory: string): number => {
    let byKey = pairIds.get(category)
    if (byKey === undefined) {
      byKey = new Map()
      pairIds.set(category, byKey)
    }
    let id = byKey.get(keyCategory)
    if (id === undefined) {
      id = pairs.length / 2
      pairs.push(category, keyCategory)
      byKey.set(keyCategory, id)
    }
    return id
  }

  const allocate = (): number => {
    if (free !== END) {
      const r = free
      free = next[r]!
      return r
    }
    const r = used++
    if (r === next.length) {
      rows = doubled(rows)
      ints = new Int32Array(rows.buffer)
      next = doubled(next)
    }
    return r
  }

  /** True when row `r` holds `hour` and `pair`. */
  const holds = (r: number, hour: number, pair: number) =>
    rows[r * STRIDE + HOUR] === hour && ints[2 * r * STRIDE + PAIR] === pair

  const release = (r: number) => {
    const g = 2 * r * STRIDE + GEN
    ints[g] = ints[g]! + 1
    next[r] = free
    free = r
    if (lastRow === r) {
      lastAccount = null
      lastRow = END
    }
  }

  /** Takes row `r` out of the account's list. */
  const unlink = (accountId: string, r: number): void => {
    const head = heads.get(accountId)!
    if (head === r) {
      if (next[r] === END) heads.delete(accountId)
      else heads.set(accountId, next[r]!)
      return
    }
    let at = head
    while (next[at] !== r) at = next[at]!
    next[at] = next[r]!
  }

  return {
    add(accountId, time, category, keyCategory, sign, units, place) {
      const hour = time - (time % USAGE_HOUR_MS)
      const pair = pairOf(category, keyCategory)
      let r = END
      const at0 = place === undefined ? END : place.tallyRow
      if (at0 !== END && ints[2 * at0 * STRIDE + GEN] === place!.tallyGen && holds(at0, hour, pair))
        r = at0
      else if (lastAccount === accountId && holds(lastRow, hour, pair)) r = lastRow
      else {
        // Newest hour first: walk down to the event's hour, remembering where it would go.
        let before = END
        let at = heads.get(accountId) ?? END
        while (at !== END && rows[at * STRIDE + HOUR]! >= hour && !holds(at, hour, pair)) {
          before = at
          at = next[at]!
        }
        if (at !== END && holds(at, hour, pair)) r = at
        else {
          if (sign === -1) return
          r = allocate()
          const o = r * STRIDE
          rows[o + HOUR] = hour
          ints[2 * o + PAIR] = pair
          rows[o + REQUESTS] = 0
          rows[o + UNITS] = 0
          next[r] = at
          if (before === END) heads.set(accountId, r)
          else next[before] = r
        }
      }
      const o = r * STRIDE
      const requests = rows[o + REQUESTS]! + sign
      rows[o + REQUESTS] = requests
      rows[o + UNITS] = roundAmount(rows[o + UNITS]! + sign * units)
      if (requests === 0) {
        unlink(accountId, r)
        release(r)
        return
      }
      lastAccount = accountId
      lastRow = r
      if (place !== undefined) {
        place.tallyRow = r
        place.tallyGen = ints[2 * o + GEN]!
      }
    },
    each(accountId, from, end, f) {
      for (let r = heads.get(accountId) ?? END; r !== END; r = next[r]!) {
        const o = r * STRIDE
        const hour = rows[o + HOUR]!
        if (hour < from) break
        if (hour >= end) continue
        const p = ints[2 * o + PAIR]! * 2
        f(pairs[p]!, pairs[p + 1]!, rows[o + REQUESTS]!, rows[o + UNITS]!)
      }
    },
    prune(before) {
      let n = 0
      lastAccount = null
      lastRow = END
      for (const [account, head] of heads) {
        // The hours that ended by `before` are the list's tail.
        let keep = END
        let r = head
        while (r !== END && rows[r * STRIDE + HOUR]! + USAGE_HOUR_MS > before) {
          keep = r
          r = next[r]!
        }
        if (r === END) continue
        if (keep === END) heads.delete(account)
        else next[keep] = END
        while (r !== END) {
          const after = next[r]!
          n += rows[r * STRIDE + REQUESTS]!
          release(r)
          r = after
        }
      }
      return n
    },
  }
}
