/**
 * @module limits/revert
 *
 * Taking back what one admission counted, for a `cancel` (an admission whose answer was lost
 * to a timeout, committed or not) and for a token estimate trued-up at settle. Each takes
 * back no more than the admission can still be holding, so a limit is never left looser than
 * if the admission had not happened: a window's cost leaves the bucket it was counted in, a
 * GCRA cost less what has drained since it was counted.
 */

import { type GcraState, gcraTime } from './gcra.js'
import type { WindowState } from './rolling-window.js'

/**
 * Takes `cost` out of the bucket of `at` (or the first later one: a clock that stepped back
 * counted there), never below zero. A bucket already out of the window is left alone.
 */
export function windowRemove(
  state: WindowState | undefined,
  at: number,
  windowMs: number,
  bucketMs: number,
  cost: number,
): WindowState | undefined {
  if (!state) return state
  const bucket = windowMs === 0 ? 0 : Math.floor(at / bucketMs)
  const idx = state.idx.slice()
  const n = state.n.slice()
  for (let k = 0; k < idx.length; k++) {
    if (idx[k]! < bucket) continue
    const left = n[k]! - cost
    if (left > 0) n[k] = left
    else {
      idx.splice(k, 1)
      n.splice(k, 1)
    }
    break
  }
  return { idx, n }
}

/**
 * The part of `cost` units, counted at `at`, that has not drained by `now` on a limit of
 * `limit` per `periodMs`: what a cancel may take back.
 */
export function undrained(
  cost: number,
  at: number,
  now: number,
  limit: number,
  periodMs: number,
): number {
  return Math.max(0, cost - (Math.max(0, now - at) * limit) / periodMs)
}

/**
 * Takes back `cost` units counted at `at`, less what has drained since, never below zero.
 * The level is kept in unit-milliseconds as in `limits/gcra`, so integer inputs stay exact.
 * Both are measured at the state's time when it is ahead of `now` (a stored time never moves
 * back, see `limits/gcra`): the level there has drained the cost up to that time, so a give-back
 * reckoned at an earlier `now` would take back more than is still counted.
 */
export function gcraRemove(
  state: GcraState | undefined,
  now: number,
  at: number,
  limit: number,
  periodMs: number,
  cost: number,
): GcraState | undefined {
  if (!state) return state
  const t = gcraTime(state, now)
  const scaled = Math.max(0, Math.round(state.level * periodMs) - (t - state.at) * limit)
  const back = Math.max(0, cost * periodMs - Math.max(0, t - at) * limit)
  return { level: Math.max(0, scaled - back) / periodMs, at: t }
}
