/**
 * @module limits/hold
 *
 * Holds: amounts reserved against a limit until released, each with a TTL. One mechanism for
 * concurrency (amount 1 per request in flight, nothing settled) and for credits (the route's
 * estimate held at admission; at settle the hold is dropped and the actual charge added to
 * `used`). A hold that is never released expires, so a crashed request cannot keep a slot or
 * credits forever.
 *
 * The operations come in two forms: `hold()` and `release()` return a new state and leave
 * theirs alone; `holdTotal()`, `addHold()` and `dropHold()` read or change a state in place,
 * which `limits/counters` uses (a counter with many requests in flight is then not copied per
 * request). The figures are the same: a hold is live while its expiry is after `now`, and the
 * total adds the settled amount and the live holds in insertion order, rounded to the amount
 * grid (`limits/amount`), as is every sum and difference of amounts here.
 *
 * **Pro:** concurrent requests can never overspend: each sees every live hold. **Con:** a
 * slot of a crashed process stays taken until its TTL passes.
 */

import { roundAmount } from './amount.js'

/**
 * `used`: the settled total; `holds`: `[id, amount, expiresAt ms]` in the order they were
 * added (a plain JSON array: cheap to scan, add to and cut from, for a few holds or a few
 * hundred).
 */
export interface HoldState {
  used: number
  holds: Array<[id: string, amount: number, expiresAt: number]>
}

export interface HoldVerdict {
  allowed: boolean
  state: HoldState
  /** Settled plus live holds, after this request when allowed. */
  used: number
  remaining: number
}

/** The settled total plus every live hold at `now` (`roundAmount`); the state is not changed. */
export function holdTotal(state: HoldState | undefined, now: number): number {
  if (!state) return 0
  let total = state.used
  const hs = state.holds
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i]!
    if (h[2] > now) total += h[1]
  }
  return roundAmount(total)
}

/** Where hold `id` is in the list, or -1. */
function indexOf(state: HoldState, id: string): number {
  const hs = state.holds
  for (let i = 0; i < hs.length; i++) if (hs[i]![0] === id) return i
  return -1
}

/** True while hold `id` is live at `now`. */
export function isHeld(state: HoldState | undefined, now: number, id: string): boolean {
  if (!state) return false
  const i = indexOf(state, id)
  return i >= 0 && state.holds[i]![2] > now
}

/** Drops the expired holds, in place (they count for nothing either way). */
function prune(state: HoldState, now: number): void {
  const hs = state.holds
  let k = 0
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i]!
    if (h[2] > now) hs[k++] = h
  }
  // Cut by `pop`, which the optimizing compiler inlines: a store to `length` is a call into
  // the runtime (about 600 instructions, bench/NOTES.md session 26), made even when nothing
  // expired, twice a metered request.
  while (hs.length > k) hs.pop()
}

/** Adds (or renews, in its place) hold `id` of `amount` for `ttlMs`, in place, dropping expired holds. */
export function addHold(
  state: HoldState,
  now: number,
  id: string,
  amount: number,
  ttlMs: number,
): void {
  prune(state, now)
  const i = indexOf(state, id)
  const h: [string, number, number] = [id, amount, now + ttlMs]
  if (i >= 0) {
    state.holds[i] = h
    return
  }
  // A copy one longer, not a push: an array's first push makes room for 17 elements (V8),
  // and a stored state keeps the array it is given.
  const hs = state.holds
  const out = new Array<[string, number, number]>(hs.length + 1)
  for (let j = 0; j < hs.length; j++) out[j] = hs[j]!
  out[hs.length] = h
  state.holds = out
}

/**
 * Drops hold `id` (if still there) and adds `charge` to the settled total, in place; with
 * `ifHeld`, only when the hold is still there (a retried settle, which must not charge
 * twice). Returns whether the state changed.
 */
export function dropHold(
  state: HoldState,
  now: number,
  id: string,
  charge: number,
  ifHeld = false,
): boolean {
  prune(state, now)
  const i = indexOf(state, id)
  if (ifHeld && i < 0) return false
  if (i >= 0) {
    // In order, the later holds moved down and the last popped (see `prune`; `splice` is a
    // builtin call of its own, about 360 instructions for a list of one).
    const hs = state.holds
    for (let j = i + 1; j < hs.length; j++) hs[j - 1] = hs[j]!
    hs.pop()
  }
  // No charge (a cancel) leaves the total as it is.
  if (charge !== 0) state.used = roundAmount(state.used + charge)
  return true
}

/**
 * Extends hold `id` to expire `ttlMs` after `now` (never sooner than it did), in place, when it
 * is live at `now`; a hold gone (released or expired) is not made again, so a renewal that
 * comes after its request settled changes nothing. The amount and the settled total stay.
 * Returns whether the state changed.
 */
export function renewHold(state: HoldState, now: number, id: string, ttlMs: number): boolean {
  const i = indexOf(state, id)
  if (i < 0) return false
  const h = state.holds[i]!
  const until = now + ttlMs
  if (!(h[2] > now) || h[2] >= until) return false
  // A new tuple, not a write into the stored one (a caller may hold the old state).
  state.holds[i] = [h[0], h[1], until]
  return true
}

const copy = (state: HoldState | undefined): HoldState => ({
  used: state?.used ?? 0,
  holds: state ? state.holds.slice() : [],
})

/**
 * @param limit the cap on settled plus held amounts (Infinity: count, never refuse)
 * @param amount what this request holds
 * @param id the hold's id (the request id)
 * @param ttlMs how long the hold lives if never released
 */
export function hold(
  state: HoldState | undefined,
  now: number,
  limit: number,
  amount: number,
  id: string,
  ttlMs: number,
): HoldVerdict {
  const s = copy(state)
  prune(s, now)
  const total = holdTotal(s, now)
  const after = roundAmount(total + amount)
  if (after > limit) {
    return {
      allowed: false,
      state: s,
      used: total,
      remaining: Math.max(0, roundAmount(limit - total)),
    }
  }
  addHold(s, now, id, amount, ttlMs)
  return { allowed: true, state: s, used: after, remaining: roundAmount(limit - after) }
}

/**
 * Drops hold `id` (if still there) and adds `charge` to the settled total; with `ifHeld`, only
 * when the hold is still there (a retried settle, which must not charge twice).
 */
export function release(
  state: HoldState | undefined,
  now: number,
  id: string,
  charge: number,
  ifHeld = false,
): HoldState {
  const s = copy(state)
  dropHold(s, now, id, charge, ifHeld)
  return s
}

/** True when nothing is settled or held, so the state can be dropped. */
export function holdIdle(state: HoldState, now: number): boolean {
  return state.used === 0 && !state.holds.some((h) => h[2] > now)
}
