/**
 * @module limits/gcra
 *
 * GCRA (the generic cell rate algorithm) for rate limits: `limit` units per `periodMs`, bursts
 * of up to `limit` at once, then a steady `limit / periodMs`.
 *
 * The state is kept in the algorithm's continuous form, a bucket level plus the time it was
 * measured, rather than one theoretical arrival time: the decisions are the same, but the
 * level stays an exact small number, so an emission interval below the resolution of a
 * millisecond timestamp (1e9 per minute is 60 ns) still counts every unit.
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
 * @param state the stored state, or undefined for a limit never used
 * @param now milliseconds since the epoch
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
  const rate = limit / periodMs
  const drained = state ? Math.max(0, state.level - Math.max(0, now - state.at) * rate) : 0
  const need = cost > 0 ? cost : 1
  if (drained + need > limit) {
    return {
      allowed: false,
      state: { level: drained, at: now },
      remaining: Math.max(0, Math.floor(limit - drained)),
      resetMs: Math.ceil(drained / rate),
      retryAfterMs: Math.max(1, Math.ceil((drained + need - limit) / rate)),
    }
  }
  const level = drained + cost
  return {
    allowed: true,
    state: { level, at: now },
    remaining: Math.max(0, Math.floor(limit - level)),
    resetMs: Math.ceil(level / rate),
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
  const rate = limit / periodMs
  const drained = state ? Math.max(0, state.level - Math.max(0, now - state.at) * rate) : 0
  return { level: drained + cost, at: now }
}

/** True when the state has fully drained at `now` and can be dropped. */
export function gcraIdle(state: GcraState, now: number, limit: number, periodMs: number): boolean {
  return state.level - (now - state.at) * (limit / periodMs) <= 0
}
