/**
 * @module test/support/leases
 *
 * What the lease suites share: the injected clock's start, the lease options that lease from
 * the first few units (`LEASE`), and the check most of them lease, a daily quota counted in
 * hourly buckets (`dailyQuota`).
 */

import type { Check } from '../../src/storage/types.js'

/** The injected clock's start: 2026-01-01T00:00:00Z, an hour (and a day) boundary. */
export const T0 = 1_767_225_600_000
export const HOUR = 3_600_000

/** Leases from 4 units, the rate measured over 100 ms, flushed only when the test says. */
export const LEASE = { minUnits: 4, rateMs: 100, flushEveryMs: 0 }

/** A daily quota in hourly buckets: `limit` (100,000 unless said) on `key`, `cost` a request. */
export const dailyQuota = (
  cost: number,
  { key = '{a}:q:daily', limit = 100_000 }: { key?: string; limit?: number } = {},
): Extract<Check, { type: 'window' }> => ({
  type: 'window',
  key,
  name: 'daily',
  limit,
  windowMs: 24 * HOUR,
  bucketMs: HOUR,
  cost,
})
