/**
 * @module clock
 *
 * The one place tollbooth reads time. Every algorithm takes `now` as an argument; the pipeline
 * reads it from the injected {@link Clock}, so tests drive time without sleeping.
 */

/** A source of the current time in milliseconds since the Unix epoch. */
export interface Clock {
  now(): number
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() }

/**
 * A clock that only moves when told to, for tests.
 *
 * @example
 * ```ts
 * const clock = manualClock(Date.UTC(2026, 0, 1))
 * const tb = createTollbooth({ secret, clock })
 * clock.advance(60_000)
 * ```
 */
export interface ManualClock extends Clock {
  set(ms: number): void
  advance(ms: number): void
}

export function manualClock(start = 0): ManualClock {
  let t = start
  return {
    now: () => t,
    set: (ms) => {
      t = ms
    },
    advance: (ms) => {
      t += ms
    },
  }
}
