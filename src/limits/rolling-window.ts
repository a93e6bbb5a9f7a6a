/**
 * @module limits/rolling-window
 *
 * Rolling quotas as bucketed sliding windows. A window of `windowMs` is kept as buckets of
 * `bucketMs`; a request is counted against the buckets that cover `[now - windowMs, now]`,
 * that is the current bucket and the `windowMs / bucketMs` before it.
 *
 * **Pro:** no rolling window of length `windowMs` ever admits more than `limit` (the counted
 * span always contains it), with O(N) state. **Con:** a request may be refused up to one
 * bucket early (a daily quota with 24 buckets: up to an hour).
 *
 * `windowMs === 0` means all-time (the `total` quota): one bucket that never ages.
 */

/** Counts per bucket, keyed by bucket index `floor(now / bucketMs)`; oldest first. */
export interface WindowState {
  /** Bucket indexes, ascending. */
  idx: number[]
  /** Counts, parallel to `idx`. */
  n: number[]
}

export interface WindowVerdict {
  allowed: boolean
  state: WindowState
  /** Units counted in the window after this request (before it, when refused). */
  used: number
  remaining: number
  /** Milliseconds until the oldest counted bucket leaves the window (Infinity for all-time). */
  resetMs: number
  /** Milliseconds until this request fits (Infinity when it never will); 0 when allowed. */
  retryAfterMs: number
}

function live(state: WindowState | undefined, first: number): WindowState {
  if (!state) return { idx: [], n: [] }
  let k = 0
  while (k < state.idx.length && state.idx[k]! < first) k++
  return k === 0
    ? { idx: state.idx.slice(), n: state.n.slice() }
    : { idx: state.idx.slice(k), n: state.n.slice(k) }
}

function sum(xs: number[]): number {
  let s = 0
  for (let i = 0; i < xs.length; i++) s += xs[i]!
  return s
}

/**
 * Adds `cost` to the bucket `current`. A negative cost (a lease's give-back, a cancel's) takes
 * units back from that bucket, or from the first after it when it has none (its units were
 * counted in a newer one), never from an older one nor below zero: more taken back than it
 * holds (a give-back into a counter the store lost, or applied twice) would leave a negative
 * count, which admits that many beyond the limit (a count of -272 on Redis for 300 admitted).
 * Not from the newest bucket: under clocks apart another instance may have counted in a newer
 * bucket already, and units taken from it outlive the ones counted in `current`, so the window
 * counted fewer than it admitted once `current` had left it (55 for 60, then 105 admitted of a
 * limit of 100: `test/storage/leased-window-skew.test.ts`).
 */
function add(state: WindowState, current: number, cost: number): void {
  const last = state.idx.length - 1
  if (cost < 0) {
    for (let k = 0; k <= last; k++)
      if (state.idx[k]! >= current) {
        state.n[k] = Math.max(0, state.n[k]! + cost)
        return
      }
    return
  }
  // A clock that stepped back counts into the newest bucket: later, so it is kept longer (safe),
  // and the buckets stay in ascending order.
  if (last >= 0 && state.idx[last]! >= current) state.n[last] = state.n[last]! + cost
  else {
    state.idx.push(current)
    state.n.push(cost)
  }
}

/**
 * @param state stored buckets, or undefined
 * @param now milliseconds since the epoch
 * @param limit units per window
 * @param windowMs window length, or 0 for all-time
 * @param bucketMs bucket length (divides `windowMs`); ignored for all-time
 * @param cost units this request takes
 */
export function rollingWindow(
  state: WindowState | undefined,
  now: number,
  limit: number,
  windowMs: number,
  bucketMs: number,
  cost: number,
): WindowVerdict {
  const allTime = windowMs === 0
  const current = allTime ? 0 : Math.floor(now / bucketMs)
  const span = allTime ? 0 : Math.ceil(windowMs / bucketMs)
  const s = live(state, current - span)
  const used = sum(s.n)
  const resetMs =
    allTime || s.idx.length === 0
      ? allTime
        ? Infinity
        : 0
      : (s.idx[0]! + span + 1) * bucketMs - now
  if (used + cost > limit) {
    let retryAfterMs = Infinity
    if (!allTime) {
      let freed = 0
      for (let k = 0; k < s.idx.length; k++) {
        freed += s.n[k]!
        if (used - freed + cost <= limit) {
          retryAfterMs = (s.idx[k]! + span + 1) * bucketMs - now
          break
        }
      }
    }
    return {
      allowed: false,
      state: s,
      used,
      remaining: Math.max(0, limit - used),
      resetMs,
      retryAfterMs,
    }
  }
  if (cost > 0) add(s, current, cost)
  const after = allTime
    ? Infinity
    : s.idx.length === 0
      ? 0
      : (s.idx[0]! + span + 1) * bucketMs - now
  return {
    allowed: true,
    state: s,
    used: used + cost,
    remaining: limit - used - cost,
    resetMs: after,
    retryAfterMs: 0,
  }
}

/** Adds `cost` after the fact, never refusing. */
export function windowAdd(
  state: WindowState | undefined,
  now: number,
  windowMs: number,
  bucketMs: number,
  cost: number,
): WindowState {
  const allTime = windowMs === 0
  const current = allTime ? 0 : Math.floor(now / bucketMs)
  const s = live(state, allTime ? 0 : current - Math.ceil(windowMs / bucketMs))
  add(s, current, cost)
  return s
}
