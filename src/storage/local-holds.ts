/**
 * @module storage/local-holds
 *
 * The requests a credit lease holds in process: id → amount and expiry, with their live total
 * kept as they come and go. A lease is asked for that total on every request it admits, so it
 * is a field, not a walk over the holds (a `for…in` over an object that holds are deleted from
 * cost about 38 µs of every request on a hot Redis key: the object falls into dictionary mode
 * and each walk enumerates its keys anew). Expired holds are dropped when the soonest expiry
 * has passed, at most one walk per expiry. The total is rounded to the amount grid
 * (`limits/amount`) at each change, so it never drifts from the decimal it stands for.
 */

import { roundAmount } from '../limits/amount.js'

export class LocalHolds {
  readonly #holds = new Map<string, [amount: number, expiresAt: number]>()
  #sum = 0
  /** At most the earliest expiry among the holds (an earlier one may have been deleted). */
  #soonest = Number.POSITIVE_INFINITY

  /** The holds' count, expired ones not dropped yet included (see {@link count}). */
  get size(): number {
    return this.#holds.size
  }

  has(id: string): boolean {
    return this.#holds.has(id)
  }

  /** When the hold `id` expires; undefined when there is none. */
  expiresAt(id: string): number | undefined {
    return this.#holds.get(id)?.[1]
  }

  set(id: string, amount: number, expiresAt: number): void {
    this.delete(id)
    this.#holds.set(id, [amount, expiresAt])
    this.#sum = roundAmount(this.#sum + amount)
    if (expiresAt < this.#soonest) this.#soonest = expiresAt
  }

  /**
   * Extends the hold `id` to expire at `expiresAt` (never sooner than it did), when it is live
   * at `now`; false when there is none (settled, or expired: not made again).
   */
  renew(id: string, expiresAt: number, now: number): boolean {
    const h = this.#holds.get(id)
    if (!h || !(h[1] > now)) return false
    if (expiresAt > h[1]) h[1] = expiresAt
    return true
  }

  delete(id: string): boolean {
    return this.take(id) !== undefined
  }

  /** Deletes the hold `id` and returns when it expires; undefined when there is none. */
  take(id: string): number | undefined {
    const h = this.#holds.get(id)
    if (!h) return undefined
    this.#holds.delete(id)
    this.#sum = this.#holds.size === 0 ? 0 : roundAmount(this.#sum - h[0])
    return h[1]
  }

  /** The amount of the holds live at `now` (expiry after `now`). */
  amount(now: number): number {
    if (now >= this.#soonest) this.#drop(now)
    return this.#sum
  }

  /** How many holds are live at `now`. */
  count(now: number): number {
    if (now >= this.#soonest) this.#drop(now)
    return this.#holds.size
  }

  /** The holds live at `now`: id, amount and expiry. */
  live(now: number): Array<[id: string, amount: number, expiresAt: number]> {
    const out: Array<[string, number, number]> = []
    for (const [id, [amount, expiresAt]] of this.#holds)
      if (expiresAt > now) out.push([id, amount, expiresAt])
    return out
  }

  /** Moves the holds live at `now` into `to`, and empties this one. */
  moveTo(to: LocalHolds, now: number): void {
    for (const [id, [amount, expiresAt]] of this.#holds)
      if (expiresAt > now) to.set(id, amount, expiresAt)
    this.#holds.clear()
    this.#sum = 0
    this.#soonest = Number.POSITIVE_INFINITY
  }

  /** Drops the holds expired at `now` and sums the rest anew. */
  #drop(now: number): void {
    let sum = 0
    let soonest = Number.POSITIVE_INFINITY
    for (const [id, h] of this.#holds) {
      if (h[1] <= now) this.#holds.delete(id)
      else {
        sum += h[0]
        if (h[1] < soonest) soonest = h[1]
      }
    }
    this.#sum = roundAmount(sum)
    this.#soonest = soonest
  }
}
