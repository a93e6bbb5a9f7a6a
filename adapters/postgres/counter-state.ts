/**
 * @module postgres/counter-state
 *
 * A stored counter and the core's algorithms applied to it (`gcra`, `rollingWindow`, `hold`,
 * `release`, `gcraAdd`, `windowAdd`), with the figures mapped to a `CheckResult` exactly as the
 * memory store maps them, so PostgreSQL counts what memory counts. Also the time each kind of
 * state becomes the same as no state at all, which the store keeps in `expires_at`.
 */

import {
  type Check,
  type CheckResult,
  type GcraState,
  gcra,
  gcraAdd,
  gcraRemove,
  type HoldState,
  hold,
  release,
  rollingWindow,
  type SettleOp,
  type WindowState,
  windowAdd,
  windowRemove,
} from '../../src/index.js'

export type Kind = 'window' | 'gcra' | 'hold'

/** A counter as stored: its kind, state, and when it may be dropped (null: never). */
export interface Counter {
  kind: Kind | null
  state: unknown
  expiresAt: number | null
}

const stateOf = <T>(c: Counter | undefined, kind: Kind): T | undefined =>
  c?.kind === kind && c.state !== null ? (c.state as T) : undefined

/** When a window's last bucket leaves the window (never for all-time). */
function windowExpiry(s: WindowState, now: number, windowMs: number, bucketMs: number) {
  if (windowMs === 0) return null
  const last = s.idx[s.idx.length - 1]
  return last === undefined ? now : (last + Math.ceil(windowMs / bucketMs) + 1) * bucketMs
}

/** When the bucket has drained (one millisecond late rather than early). */
function gcraExpiry(s: GcraState, limit: number, windowMs: number) {
  return s.level <= 0 ? s.at : s.at + Math.ceil((s.level * windowMs) / limit) + 1
}

/** The total of settled and live holds at `now`. */
export function heldAt(s: HoldState, now: number): number {
  let total = s.used
  for (const id in s.holds) {
    const h = s.holds[id]!
    if (h[1] > now) total += h[0]
  }
  return total
}

/** A hold counter with a settled total is kept (a period's credits); else until its last hold. */
function holdExpiry(s: HoldState, now: number) {
  if (s.used !== 0) return null
  let end = now
  for (const id in s.holds) end = Math.max(end, s.holds[id]![1])
  return Number.isFinite(end) ? Math.ceil(end) : null
}

/** Evaluates one check without storing anything; mirrors the memory store. */
export function evaluate(
  check: Check,
  c: Counter | undefined,
  now: number,
): { result: CheckResult; next: Counter } {
  switch (check.type) {
    case 'window': {
      const { limit, windowMs, bucketMs, cost } = check
      const v = rollingWindow(stateOf(c, 'window'), now, limit, windowMs, bucketMs, cost)
      return {
        result: {
          allowed: v.allowed,
          limit,
          used: v.used,
          remaining: v.remaining,
          resetMs: v.resetMs,
          retryAfterMs: v.retryAfterMs,
        },
        next: {
          kind: 'window',
          state: v.state,
          expiresAt: windowExpiry(v.state, now, windowMs, bucketMs),
        },
      }
    }
    case 'gcra': {
      const { limit, windowMs, cost } = check
      const v = gcra(stateOf(c, 'gcra'), now, limit, windowMs, cost)
      return {
        result: {
          allowed: v.allowed,
          limit,
          used: limit - v.remaining,
          remaining: v.remaining,
          resetMs: v.resetMs,
          retryAfterMs: v.retryAfterMs,
        },
        next: { kind: 'gcra', state: v.state, expiresAt: gcraExpiry(v.state, limit, windowMs) },
      }
    }
    case 'hold': {
      const v = hold(stateOf(c, 'hold'), now, check.limit, check.amount, check.holdId, check.ttlMs)
      return {
        result: {
          allowed: v.allowed,
          limit: check.limit,
          used: v.used,
          remaining: v.remaining,
          resetMs: 0,
          retryAfterMs: v.allowed ? 0 : 1000,
        },
        next: { kind: 'hold', state: v.state, expiresAt: holdExpiry(v.state, now) },
      }
    }
  }
}

/**
 * An admission's record (`"c"`) or a cancel's tombstone (`"x"`): a row of kind null, live
 * until its `expires_at`.
 */
export function markOf(c: Counter | undefined, now: number): 'c' | 'x' | null {
  if (!c || c.kind !== null || (c.expiresAt !== null && c.expiresAt <= now)) return null
  return c.state === 'c' || c.state === 'x' ? c.state : null
}

export const mark = (state: 'c' | 'x', now: number, ttlMs: number): Counter => ({
  kind: null,
  state,
  expiresAt: Math.ceil(now + ttlMs),
})

/** One check of a cancelled admission taken back (see `SettleOp` `cancel`). */
export function revert(check: Check, c: Counter | undefined, now: number, at: number): Counter {
  switch (check.type) {
    case 'hold': {
      const s = release(stateOf(c, 'hold'), now, check.holdId, 0)
      return { kind: 'hold', state: s, expiresAt: holdExpiry(s, now) }
    }
    case 'window': {
      const { windowMs, bucketMs, cost } = check
      const s = windowRemove(stateOf(c, 'window'), at, windowMs, bucketMs, cost) ?? {
        idx: [],
        n: [],
      }
      return { kind: 'window', state: s, expiresAt: windowExpiry(s, now, windowMs, bucketMs) }
    }
    case 'gcra': {
      const { limit, windowMs, cost } = check
      const s = gcraRemove(stateOf(c, 'gcra'), now, at, limit, windowMs, cost) ?? {
        level: 0,
        at: now,
      }
      return { kind: 'gcra', state: s, expiresAt: gcraExpiry(s, limit, windowMs) }
    }
  }
}

/** Applies one release or add to a counter's state (a cancel is applied by the store). */
export function apply(
  op: Exclude<SettleOp, { type: 'cancel' }>,
  c: Counter | undefined,
  now: number,
): Counter {
  if (op.type === 'release') {
    const s = release(stateOf(c, 'hold'), now, op.holdId, op.charge, op.ifHeld === true)
    return { kind: 'hold', state: s, expiresAt: holdExpiry(s, now) }
  }
  const k = op.check
  if (k.type === 'window') {
    const s = windowAdd(stateOf(c, 'window'), now, k.windowMs, k.bucketMs, k.cost)
    return { kind: 'window', state: s, expiresAt: windowExpiry(s, now, k.windowMs, k.bucketMs) }
  }
  const s = gcraAdd(stateOf(c, 'gcra'), now, k.limit, k.windowMs, k.cost)
  return { kind: 'gcra', state: s, expiresAt: gcraExpiry(s, k.limit, k.windowMs) }
}
