/**
 * @module postgres/counter-state
 *
 * A stored counter and the core's algorithms applied to it (`gcra`, `rollingWindow`, `hold`,
 * `release`, `gcraAdd`, `windowAdd`, and a cancel's `gcraRemove`, `windowRemove`), with the figures mapped to a `CheckResult` exactly as the
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
  missingResult,
  release,
  rollingWindow,
  type SettleOp,
  type WindowState,
  windowAdd,
  windowRemove,
} from '../../src/internal.js'

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

/**
 * Marks kept in a stored state beside the core's figures: `rebuilt` (see `Rebuild`), and a hold
 * counter's latest `keepUntil`.
 */
interface Marks {
  rebuilt?: true
  keepUntil?: number
}

const marksOf = (c: Counter | undefined): Marks => (c?.state ?? {}) as Marks

/** `state` with the marks of `from`, the later `keepUntil` winning. */
function marked<T extends object>(state: T, from: Marks, keepUntil?: number, rebuilt = false): T {
  const out = state as T & Marks
  if (from.rebuilt || rebuilt) out.rebuilt = true
  const keep = Math.max(from.keepUntil ?? -Infinity, keepUntil ?? -Infinity)
  if (keep !== -Infinity) out.keepUntil = keep
  return out
}

/**
 * A hold counter is kept until its last hold expires and, with a `keepUntil`, until then (a
 * period's credits); without one, for as long as it has a settled total or was rebuilt.
 */
function holdExpiry(s: HoldState & Marks, now: number) {
  let end = now
  for (const id in s.holds) end = Math.max(end, s.holds[id]![1])
  if (s.keepUntil !== undefined) end = Math.max(end, s.keepUntil)
  else if (s.used !== 0 || s.rebuilt) return null
  return Number.isFinite(end) ? Math.ceil(end) : null
}

/**
 * Evaluates one check without storing anything; mirrors the memory store. `seeded`: the check
 * rebuilt its counter, which is then written whatever the admission's outcome.
 */
export function evaluate(
  check: Check,
  c: Counter | undefined,
  now: number,
): { result: CheckResult; next: Counter; seeded?: boolean } {
  const m = marksOf(c)
  const r = check.type === 'gcra' ? undefined : check.rebuild
  const seeded = r !== undefined && !m.rebuilt
  if (seeded && r.base === undefined) {
    return {
      result: missingResult(check.limit),
      next: { kind: null, state: null, expiresAt: null },
    }
  }
  switch (check.type) {
    case 'window': {
      const { limit, windowMs, bucketMs, cost } = check
      let state = stateOf<WindowState>(c, 'window')
      if (seeded) {
        // The larger of the two (see the hold's case below).
        const had = rollingWindow(state, now, Infinity, windowMs, bucketMs, 0).used
        state = windowAdd(state, now, windowMs, bucketMs, Math.max(0, r!.base! - had))
      }
      const v = rollingWindow(state, now, limit, windowMs, bucketMs, cost)
      const next = marked(v.state, m, undefined, seeded)
      return {
        seeded,
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
          state: next,
          expiresAt: windowExpiry(next, now, windowMs, bucketMs),
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
      let state = stateOf<HoldState>(c, 'hold')
      // The larger of the two: an unmarked counter may hold settles made since the loss (then
      // mostly in the base too), or be a whole count kept from before rebuilds.
      if (seeded) state = { used: Math.max(state?.used ?? 0, r!.base!), holds: state?.holds ?? {} }
      const v = hold(state, now, check.limit, check.amount, check.holdId, check.ttlMs)
      const next = marked(v.state, m, check.keepUntil, seeded)
      return {
        seeded,
        result: {
          allowed: v.allowed,
          limit: check.limit,
          used: v.used,
          remaining: v.remaining,
          resetMs: 0,
          retryAfterMs: v.allowed ? 0 : 1000,
        },
        next: { kind: 'hold', state: next, expiresAt: holdExpiry(next, now) },
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
  // The counter's marks (rebuilt, keepUntil) stay: a cancel takes back counts, not them.
  const m = marksOf(c)
  switch (check.type) {
    case 'hold': {
      const s = marked(release(stateOf(c, 'hold'), now, check.holdId, 0), m)
      return { kind: 'hold', state: s, expiresAt: holdExpiry(s, now) }
    }
    case 'window': {
      const { windowMs, bucketMs, cost } = check
      const s = marked(
        windowRemove(stateOf(c, 'window'), at, windowMs, bucketMs, cost) ?? { idx: [], n: [] },
        m,
      )
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
  const m = marksOf(c)
  if (op.type === 'release') {
    const before = stateOf<HoldState>(c, 'hold')
    const live = before && Object.hasOwn(before.holds, op.holdId) ? before.holds[op.holdId] : null
    // A retried release whose hold is gone changes nothing, as on memory and Redis (no empty
    // counter written and kept until its keepUntil).
    if (op.ifHeld && !(live && live[1] > now))
      return c ?? { kind: null, state: null, expiresAt: now }
    const s = marked(
      release(stateOf(c, 'hold'), now, op.holdId, op.charge, op.ifHeld === true),
      m,
      op.keepUntil,
    )
    return { kind: 'hold', state: s, expiresAt: holdExpiry(s, now) }
  }
  const k = op.check
  if (k.type === 'window') {
    const s = marked(windowAdd(stateOf(c, 'window'), now, k.windowMs, k.bucketMs, k.cost), m)
    return { kind: 'window', state: s, expiresAt: windowExpiry(s, now, k.windowMs, k.bucketMs) }
  }
  const s = gcraAdd(stateOf(c, 'gcra'), now, k.limit, k.windowMs, k.cost)
  return { kind: 'gcra', state: s, expiresAt: gcraExpiry(s, k.limit, k.windowMs) }
}
