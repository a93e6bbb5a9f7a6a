/**
 * @module limits/hold
 *
 * Holds: amounts reserved against a limit until released, each with a TTL. One mechanism for
 * concurrency (amount 1 per request in flight, nothing settled) and for credits (the route's
 * estimate held at admission; at settle the hold is dropped and the actual charge added to
 * `used`). A hold that is never released expires, so a crashed request cannot keep a slot or
 * credits forever.
 *
 * **Pro:** concurrent requests can never overspend: each sees every live hold. **Con:** a
 * slot of a crashed process stays taken until its TTL passes.
 */

/** `used`: the settled total; `holds`: id -> [amount, expiresAt ms]. */
export interface HoldState {
  used: number
  holds: Record<string, [number, number]>
}

export interface HoldVerdict {
  allowed: boolean
  state: HoldState
  /** Settled plus live holds, after this request when allowed. */
  used: number
  remaining: number
}

function prune(state: HoldState | undefined, now: number): { s: HoldState; held: number } {
  const holds: Record<string, [number, number]> = {}
  let held = 0
  if (state) {
    for (const id in state.holds) {
      const h = state.holds[id]!
      if (h[1] > now) {
        holds[id] = h
        held += h[0]
      }
    }
  }
  return { s: { used: state?.used ?? 0, holds }, held }
}

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
  const { s, held } = prune(state, now)
  const total = s.used + held
  if (total + amount > limit) {
    return { allowed: false, state: s, used: total, remaining: Math.max(0, limit - total) }
  }
  s.holds[id] = [amount, now + ttlMs]
  return { allowed: true, state: s, used: total + amount, remaining: limit - total - amount }
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
  const { s } = prune(state, now)
  if (ifHeld && !Object.hasOwn(s.holds, id)) return s
  delete s.holds[id]
  s.used += charge
  return s
}

/** True when nothing is settled or held, so the state can be dropped. */
export function holdIdle(state: HoldState, now: number): boolean {
  if (state.used !== 0) return false
  for (const id in state.holds) if (state.holds[id]![1] > now) return false
  return true
}
