/**
 * @module limits/gcra
 *
 * GCRA (the generic cell rate algorithm) for rate limits: `limit` units per `periodMs`, bursts
 * of up to `limit` at once, then a steady `limit / periodMs`.
 *
 * The state is kept in the algorithm's continuous form, a bucket level plus the time it was
 * measured, rather than one theoretical arrival time: the decisions are the same, but the
 * level stays an exact small number, so an emission interval below the resolution of a
 * millisecond timestamp (1e9 per minute is 60 ns) still counts every unit. The arithmetic is
 * done in unit-milliseconds (`level * periodMs`), where every sum is an integer, so a verdict
 * at the bucket's edge and the `Retry-After` are exact, not off by a floating-point rounding
 * (a plain `limit / periodMs` rate put Retry-After one millisecond late, e.g. 1 per hour).
 *
 * A stored time never moves back. Instances share one state but not one clock: a request whose
 * clock is behind the stored `at` is evaluated at `at` (no drain for time that, to the state,
 * has already passed) and the state keeps `at`; storing the request's earlier time instead
 * gave the next caller that time again as drain, so two clocks 1 s apart, alternating, let 89
 * through a limit of 50 per minute in 6 s (55 exact). With every clock within ±D of true time,
 * the evaluation times stay within ±D of it too, so any interval of length t admits at most
 * `limit + (t + 2D) * limit / periodMs` units. The waits returned to such a request are counted
 * from its own clock (the distance to `at` added), since that is the clock it will retry on.
 *
 * **Pro:** O(1) state per limit, no bucket edges, an exact `Retry-After`. **Con:** a burst of
 * `limit` is always allowed after idling for `periodMs`.
 */

/** The state of one GCRA limit: `level` units in the bucket at time `at` (ms). */
export interface GcraState {
  level: number
  at: number
}

export interface GcraVerdict {
  allowed: boolean
  /** The state to store; equal to the input (drained) when refused. */
  state: GcraState
  /** Units that could still be admitted now. */
  remaining: number
  /** Milliseconds until the bucket is empty (full capacity back). */
  resetMs: number
  /** Milliseconds until this request would be admitted; 0 when allowed. */
  retryAfterMs: number
}

/**
 * The bucket level at `now`, in unit-milliseconds (`level * periodMs`): the state's level is
 * stored in units, and scaling it back by the period and rounding recovers the exact integer
 * the last admission left (for `limit * periodMs` below 2^51, every limit in practice), so
 * that decisions at the edge of the bucket do not depend on floating-point rounding.
 */
function scaledAt(state: GcraState | undefined, now: number, limit: number, periodMs: number) {
  if (!state) return 0
  return Math.max(0, Math.round(state.level * periodMs) - Math.max(0, now - state.at) * limit)
}

/** The time a request at `now` is evaluated at: never before the stored state's. */
export function gcraTime(state: GcraState | undefined, now: number): number {
  return state !== undefined && state.at > now ? state.at : now
}

/**
 * @param state the stored state, or undefined for a limit never used
 * @param now milliseconds since the epoch (the caller's clock; see the monotonic rule above)
 * @param limit units per period (positive)
 * @param periodMs the period (positive)
 * @param cost units this request takes (0 checks that at least one unit is free, counting none)
 */
export function gcra(
  state: GcraState | undefined,
  now: number,
  limit: number,
  periodMs: number,
  cost: number,
): GcraVerdict {
  // Everything below is in unit-milliseconds: the bucket holds `limit * periodMs` and drains
  // `limit` per millisecond, so the integer inputs give integer (exact) sums and differences.
  const capacity = limit * periodMs
  const t = gcraTime(state, now)
  const ahead = t - now
  const drained = scaledAt(state, t, limit, periodMs)
  const need = (cost > 0 ? cost : 1) * periodMs
  if (drained + need > capacity) {
    return {
      allowed: false,
      state: { level: drained / periodMs, at: t },
      remaining: Math.max(0, Math.floor((capacity - drained) / periodMs)),
      resetMs: Math.ceil(drained / limit) + ahead,
      retryAfterMs: Math.max(1, Math.ceil((drained + need - capacity) / limit)) + ahead,
    }
  }
  const level = drained + cost * periodMs
  return {
    allowed: true,
    state: { level: level / periodMs, at: t },
    remaining: Math.max(0, Math.floor((capacity - level) / periodMs)),
    resetMs: Math.ceil(level / limit) + ahead,
    retryAfterMs: 0,
  }
}

/** Adds `cost` units after the fact (e.g. tokens reported at settle), never refusing. */
export function gcraAdd(
  state: GcraState | undefined,
  now: number,
  limit: number,
  periodMs: number,
  cost: number,
): GcraState {
  const t = gcraTime(state, now)
  return { level: (scaledAt(state, t, limit, periodMs) + cost * periodMs) / periodMs, at: t }
}

/** True when the state has fully drained at `now` and can be dropped. */
export function gcraIdle(state: GcraState, now: number, limit: number, periodMs: number): boolean {
  return scaledAt(state, now, limit, periodMs) <= 0
}
