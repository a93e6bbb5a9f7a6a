/**
 * @module test/support/leases
 *
 * What the lease suites share: the injected clock's start, the lease options that lease from
 * the first few units (`LEASE`), the check most of them lease, a daily quota counted in
 * hourly buckets (`dailyQuota`), a credit hold (`creditHold`), and for the fault suites
 * requests of 2 credits through `createTollbooth` (`creditRequests`) and the holds a
 * PostgreSQL schema still lists (`holdsLeft`).
 */

import type pg from 'pg'
import type { Tollbooth, TollboothRequest } from '../../src/index.js'
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

/** A request to `/` with `key`, as `tb.authenticate` takes it. */
export const bearer = (key: string): TollboothRequest => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'GET',
  path: '/',
})

/**
 * `count` requests of 2 credits with `key`, `width` at a time, each settled with status 200;
 * how many were admitted.
 */
export async function creditRequests(
  tb: Tollbooth,
  key: string,
  count: number,
  width: number,
): Promise<number> {
  const route = tb.route({ cost: 2 })
  let admitted = 0
  let next = 0
  const worker = async () => {
    while (next < count) {
      next++
      const d = await tb.authenticate(bearer(key), route)
      if (d.allowed) {
        admitted++
        await tb.settle(d, { status: 200 })
      }
    }
  }
  await Promise.all(Array.from({ length: width }, worker))
  return admitted
}

/** A credit hold of 3 on `key` (limit 1,000,000), as a request of a lease suite takes it. */
export const creditHold = (key: string, holdId: string, ttlMs = 30_000): Check => ({
  type: 'hold',
  key,
  name: 'credits',
  limit: 1_000_000,
  amount: 3,
  holdId,
  ttlMs,
})

/** Every hold still listed on a hold counter of a PostgreSQL schema, as `key [id, amount, expiry]`. */
export async function holdsLeft(pool: pg.Pool, schema: string): Promise<string[]> {
  const rows = await pool.query<{ key: string; state: { holds?: unknown[] } }>(
    `SELECT key, state FROM "${schema}".counters WHERE kind = 'hold'`,
  )
  return rows.rows.flatMap((r) =>
    (r.state?.holds ?? []).map((h) => `${r.key} ${JSON.stringify(h)}`),
  )
}
