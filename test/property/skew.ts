/**
 * @module test/property/skew
 *
 * What the skewed-clock suites share (`skewed-clocks.test.ts`, the store alone; `leases-skew.test.ts`,
 * leases over it): the skew bound D, the clock offsets drawn within ±D, and the two bounds every
 * clock within ±D of true time must keep, checked on admitted units with their true times.
 */

import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { afterAll, expect } from 'vitest'
import { redisCounters } from '../../adapters/redis/counters.js'
import { defineCommands } from '../../adapters/redis/store.js'
import type { Check, CounterStore } from '../../src/storage/types.js'
import { deletePrefix, testPrefix } from '../support/redis.js'

/** Every clock is within ±D of true time (ms). */
export const D = 2000

/** A clock's offset: often at the edges of ±D, where a skew does the most. */
export const offset = fc.oneof(
  fc.constantFrom(-D, D, -D / 2, D / 2),
  fc.integer({ min: -D, max: D }),
)

/** Units admitted, each at its true time, ascending. */
export type Admitted = Array<{ t: number; cost: number }>

/** The check of a run's request: a GCRA limit, or a rolling window in 24 buckets. */
export function limitCheck(
  kind: 'gcra' | 'window',
  key: string,
  r: { limit: number; periodMs: number },
  cost: number,
): Check {
  return kind === 'gcra'
    ? { type: 'gcra', key, name: 'r', limit: r.limit, windowMs: r.periodMs, cost }
    : {
        type: 'window',
        key,
        name: 'q',
        limit: r.limit,
        windowMs: r.periodMs,
        bucketMs: r.periodMs / 24,
        cost,
      }
}

/** GCRA under skew: any true-time interval t admits at most `limit + (t + 2D) * limit / periodMs`. */
export function checkGcra(r: { limit: number; periodMs: number }, admitted: Admitted): void {
  for (let i = 0; i < admitted.length; i++) {
    let units = 0
    for (let j = i; j < admitted.length; j++) {
      units += admitted[j]!.cost
      const span = admitted[j]!.t - admitted[i]!.t
      // units <= limit + (span + 2D) * limit / periodMs, in integers (expect only on a breach:
      // a call per pair made the check most of a run's time)
      const most = r.limit * r.periodMs + (span + 2 * D) * r.limit
      if (units * r.periodMs > most)
        expect({ units, span }).toEqual({ units: most / r.periodMs, span })
    }
  }
}

/** Rolling window under skew: no true-time interval of `periodMs - 2D` admits more than `limit`. */
export function checkWindow(r: { limit: number; periodMs: number }, admitted: Admitted): void {
  for (let i = 0; i < admitted.length; i++) {
    let units = 0
    for (
      let j = i;
      j < admitted.length && admitted[j]!.t - admitted[i]!.t <= r.periodMs - 2 * D;
      j++
    )
      units += admitted[j]!.cost
    if (units > r.limit)
      expect({ units, from: admitted[i]!.t }).toEqual({ units: r.limit, from: admitted[i]!.t })
  }
}

/**
 * The Redis store's counters (its Lua) on `redis` under a fresh prefix, for one `describe`:
 * the prefix is deleted and the connection closed after it.
 */
export function luaCounters(redis: Redis, tag: string): CounterStore {
  const prefix = testPrefix(tag)
  afterAll(async () => {
    await deletePrefix(redis, prefix)
    await redis.quit()
  })
  return redisCounters({ client: defineCommands(redis), prefix }, 60_000)
}
