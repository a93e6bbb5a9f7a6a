/**
 * @module renewal
 *
 * The holds of requests still in flight, renewed before they lapse. A request's holds (its
 * concurrency slot, its credit reservation) are taken with a TTL (`leaseTtlMs`,
 * `reservationTtlMs`) so that those of a process that dies lapse by themselves; a response
 * that runs longer than that (a reasoning model's stream, a voice session) must keep them all
 * the same. So this instance keeps its admissions in flight that hold something or that an
 * adapter serves (`tb.close()` waits for those, then settles those still running), in order
 * of admission, and one timer (started while one holds something, unref'd) renews, every
 * third of the shorter TTL, the holds of those older than that third: one `settle` call of `renew` ops for all of them
 * (the store batches them per call, as it does settles). A request shorter than a third of
 * the TTL, nearly all of them, costs a link into and out of a list kept through the
 * settlements themselves (nothing allocated); nothing is sent for it.
 *
 * A renewal extends only a hold still there (`renew` in `storage/types`): one that comes after
 * its request settled, or after the hold lapsed (the store unreachable for a whole TTL), makes
 * nothing again, so renewal never admits more than the limits allow. A process that dies stops
 * renewing, and its holds lapse by their TTL as before.
 *
 * **Pro:** a hold lives as long as its response, however long, with one store call per third
 * of a TTL for all the long responses of an instance. **Con:** a process alive but stuck (its
 * event loop blocked past the rest of a TTL) loses its holds as a dead one would.
 */

import type { Context } from './context.js'
import type { Settlement } from './settle.js'
import { syncCounters } from './storage/state-counters.js'
import type { SettleOp } from './storage/types.js'

/**
 * The admissions of one instance in flight that hold something or that an adapter serves
 * (`tb.close()` waits for those), and the
 * timer that renews the holds of those that hold something.
 */
export class Renewals {
  /** The admissions listed, oldest first, linked through their settlements. */
  #oldest: Settlement | null = null
  #newest: Settlement | null = null
  #size = 0
  readonly #ctx: () => Context
  readonly #periodMs: number
  #timer: ReturnType<typeof setInterval> | null = null
  /** A renewal sent to a remote store and not answered yet: the next tick waits for it. */
  #busy = false
  #closed = false

  /**
   * @param ctx the instance's context (read on each tick)
   * @param periodMs how often the holds are renewed: a third of the shorter TTL
   */
  constructor(ctx: () => Context, periodMs: number) {
    this.#ctx = ctx
    this.#periodMs = Math.max(1, Math.floor(periodMs))
  }

  /** How many admissions are in flight. */
  get size(): number {
    return this.#size
  }

  /** An admission: listed until it settles, its holds (if any) renewed meanwhile. */
  add(s: Settlement): void {
    if (this.#closed || s.listed) return
    s.listed = true
    s.older = this.#newest
    s.newer = null
    if (this.#newest) this.#newest.newer = s
    else this.#oldest = s
    this.#newest = s
    this.#size++
    if (this.#timer === null && s.holds.length > 0) {
      this.#timer = setInterval(() => this.tick(), this.#periodMs)
      ;(this.#timer as { unref?: () => void }).unref?.()
    }
  }

  /** A settled admission: its holds are released (or left to lapse), not renewed. */
  delete(s: Settlement): void {
    if (!s.listed) return
    s.listed = false
    if (s.older) s.older.newer = s.newer
    else this.#oldest = s.newer
    if (s.newer) s.newer.older = s.older
    else this.#newest = s.older
    s.older = null
    s.newer = null
    this.#size--
  }

  /** The admissions in flight, oldest first (a copy). */
  inFlight(): Settlement[] {
    const out: Settlement[] = []
    for (let s = this.#oldest; s !== null; s = s.newer) out.push(s)
    return out
  }

  /** Stops renewing (`tb.close()`): the holds still in flight lapse by their TTL. */
  close(): void {
    this.#closed = true
    this.#stop()
    while (this.#oldest) this.delete(this.#oldest)
  }

  #stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  /**
   * Renews the holds of the admissions older than a period, in one store call; the timer
   * stops once nothing is in flight (it starts again with the next admission that holds).
   */
  tick(): void {
    if (this.#size === 0) {
      this.#stop()
      return
    }
    if (this.#busy) return
    const ctx = this.#ctx()
    const o = ctx.options
    const now = ctx.clock.now()
    let ops: SettleOp[] | null = null
    const renewed: Settlement[] = []
    for (let s = this.#oldest; s !== null; ) {
      const next = s.newer
      // In order of admission: the first one young enough ends the walk. (Admissions on a
      // remote store may be listed out of their start order by up to a storage timeout: one
      // behind a younger one is renewed a tick later, still a period before it would lapse.)
      if (now - s.startedAt < this.#periodMs) break
      if (s.settled) this.delete(s)
      else if (s.holds.length > 0) {
        renewed.push(s)
        for (let i = 0; i < s.holds.length; i++) {
          const h = s.holds[i]!
          const ttlMs = s.places[i]!.role === 'concurrency' ? o.leaseTtlMs : o.reservationTtlMs
          const op: SettleOp = { type: 'renew', key: h.key, holdId: h.holdId, ttlMs }
          if (h.keepUntil !== undefined) op.keepUntil = h.keepUntil
          ops ??= []
          ops.push(op)
        }
      }
      s = next
    }
    if (ops !== null) this.#send(ctx, ops, now, renewed)
  }

  /**
   * Sends the renewals: to an in-process store at once, else one call (leases first). Once
   * applied, each of `renewed` whose holds the store surely held at `now` holds them the
   * shortest TTL from then (`Settlement.heldUntil`).
   */
  #send(ctx: Context, ops: SettleOp[], now: number, renewed: Settlement[]): void {
    const counters = ctx.storage.counters
    const sync = syncCounters(counters)
    const o = ctx.options
    const done = () => {
      const until = now + Math.min(o.leaseTtlMs, o.reservationTtlMs)
      for (const s of renewed) if (now < s.heldUntil && s.heldUntil < until) s.heldUntil = until
    }
    try {
      if (sync) {
        sync.settle(ops, now)
        done()
        return
      }
      const leases = ctx.leases
      const rest = leases ? leases.settleLocal(ops, now) : ops
      if (rest.length === 0) {
        done()
        return
      }
      const raw = leases ? leases.settleCentral(rest, now) : counters.settle(rest, now)
      this.#busy = true
      ctx.guard(raw).then(
        () => {
          this.#busy = false
          done()
        },
        (err: unknown) => {
          // Tried again at the next tick; a hold that lapsed meanwhile is not made again.
          this.#busy = false
          ctx.report(err)
        },
      )
    } catch (err) {
      this.#busy = false
      ctx.report(err)
    }
  }
}
