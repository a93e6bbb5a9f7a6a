/**
 * @module postgres/counters
 *
 * Admission counters in `<schema>.counters`, computed in TypeScript by the core's own
 * algorithms (see `counter-state`), so PostgreSQL counts exactly what the memory store counts.
 *
 * One `consume` is one transaction in two round trips:
 * 1. `BEGIN` and one `INSERT … ON CONFLICT DO UPDATE` that creates the missing rows and locks
 *    every row of the admission, in byte order of the counter name (so two admissions sharing
 *    counters never deadlock), returning each row's latest committed state;
 * 2. after the checks are evaluated, one `UPDATE` of the new states and `COMMIT`, or
 *    `ROLLBACK` when any check refused (a refused request uses up nothing).
 * Concurrent admissions on the same counters queue on the row locks and see a serial order.
 * Several statements in one round trip need the simple protocol, which takes no parameters, so
 * values are inlined as literals quoted by the driver (`escapeLiteral`).
 *
 * Commits do not wait for their WAL flush unless `durableCounters` is set: an admission is still
 * atomic and isolated, and a crash of the server may forget only the last fraction of a second
 * of counts, as Redis with its default `appendfsync everysec` would; waiting costs a disk flush
 * per admission.
 *
 * Each row carries `expires_at`, the time its state becomes the same as no state; rows past it
 * are deleted in the background every `pruneEvery` admissions (and by `pruneCounters()`),
 * skipping rows an admission holds.
 */

import type { PoolClient, QueryResult } from 'pg'
import type { CheckResult, CounterStore, HoldState, SettleOp } from '../../src/index.js'
import { apply, type Counter, evaluate, heldAt, type Kind } from './counter-state.js'
import { type Db, explain } from './db.js'

interface CounterRow {
  key: string
  kind: Kind | null
  state: unknown
}

export interface PostgresCounters extends CounterStore {
  /** Deletes counters expired at `now`, in chunks; returns how many. */
  prune(now: number): Promise<number>
  /** Resolves when a background prune in progress has finished. */
  idle(): Promise<void>
}

/** A `bigint` literal; null (and a non-finite time) is `NULL`. */
const bigint = (v: number | null): string =>
  v === null || !Number.isFinite(v) ? 'NULL' : String(Math.ceil(v))

/** The last result of a multi-statement query (the driver returns one per statement). */
function last<R extends object>(r: QueryResult<R> | QueryResult<R>[]): QueryResult<R> {
  return Array.isArray(r) ? r[r.length - 1]! : r
}

/**
 * @param pruneEvery admissions between two background prunes on this instance (0: never)
 * @param durable wait for each commit's WAL flush (else `synchronous_commit = off`)
 */
export function postgresCounters(db: Db, pruneEvery: number, durable: boolean): PostgresCounters {
  const t = db.table('counters')
  const begin = durable ? 'BEGIN;' : 'BEGIN; SET LOCAL synchronous_commit TO off;'

  /**
   * Locks the counters named in `keys`, lets `decide` compute from their states, then writes
   * what it returns and commits, or rolls back when it returns no writes.
   */
  const locked = async <T>(
    keys: string[],
    now: number,
    decide: (stored: Map<string, Counter>) => { value: T; next: Map<string, Counter> | null },
  ): Promise<T> => {
    const client: PoolClient = await db.pool.connect()
    const lit = (s: string) => client.escapeLiteral(s)
    let broken: Error | undefined
    try {
      const names = [...new Set(keys)].map(lit).join(', ')
      const read = await client.query<CounterRow>(
        `${begin}
         INSERT INTO ${t} AS c (key, expires_at)
         SELECT k, ${bigint(now)} FROM unnest(ARRAY[${names}]::text[]) AS k ORDER BY k COLLATE "C"
         ON CONFLICT (key) DO UPDATE SET key = excluded.key
         RETURNING c.key, c.kind, c.state`,
      )
      const stored = new Map<string, Counter>()
      for (const r of last(read).rows)
        stored.set(r.key, { kind: r.kind, state: r.state, expiresAt: null })
      const { value, next } = decide(stored)
      if (!next) {
        await client.query('ROLLBACK')
        return value
      }
      const rows: string[] = []
      for (const [key, c] of next) {
        rows.push(
          `(${lit(key)}, ${c.kind ? lit(c.kind) : 'NULL'}, ${lit(JSON.stringify(c.state))}::jsonb, ${bigint(c.expiresAt)}::bigint)`,
        )
      }
      await client.query(
        `UPDATE ${t} AS c SET kind = v.kind, state = v.state, expires_at = v.exp
         FROM (VALUES ${rows.join(', ')}) AS v(key, kind, state, exp)
         WHERE c.key = v.key;
         COMMIT`,
      )
      return value
    } catch (err) {
      // A statement that failed skipped the rest of its round trip, COMMIT included.
      await client.query('ROLLBACK').catch((e: Error) => {
        broken = e
      })
      throw explain(err, db.schema)
    } finally {
      client.release(broken)
    }
  }

  const pruneSql = `DELETE FROM ${t} WHERE key IN (
      SELECT key FROM ${t} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`
  const prune = async (now: number, max = Infinity) => {
    let total = 0
    for (;;) {
      const n = await db.execute(pruneSql, [Math.floor(now), 5000])
      total += n
      if (n < 5000 || total >= max) return total
    }
  }
  let admissions = 0
  let pruning: Promise<unknown> | null = null

  return {
    // Counts are in the same database as the usage: nothing to rebuild after a restart.
    durable: true,
    async consume(checks, now) {
      if (checks.length === 0) return { allowed: true, results: [] }
      if (pruneEvery > 0 && ++admissions >= pruneEvery && !pruning) {
        admissions = 0
        pruning = prune(now, 50_000)
          .catch(() => 0) // the next round retries; an admission never fails for it
          .finally(() => {
            pruning = null
          })
      }
      const keys = checks.map((c) => c.key)
      return locked(keys, now, (stored) => {
        const results: CheckResult[] = []
        const next = new Map<string, Counter>()
        // Rebuilt counters are written whatever the admission's outcome.
        const seeded = new Map<string, Counter>()
        let allowed = true
        for (const check of checks) {
          const e = evaluate(check, stored.get(check.key), now)
          results.push(e.result)
          next.set(check.key, e.next)
          if (e.seeded) seeded.set(check.key, e.next)
          if (!e.result.allowed) allowed = false
        }
        return {
          value: { allowed, results },
          next: allowed ? next : seeded.size > 0 ? seeded : null,
        }
      })
    },
    async settle(ops, now) {
      if (ops.length === 0) return
      const keyOf = (op: SettleOp) => (op.type === 'release' ? op.key : op.check.key)
      await locked(ops.map(keyOf), now, (stored) => {
        const next = new Map<string, Counter>()
        for (const op of ops) {
          const key = keyOf(op)
          next.set(key, apply(op, next.get(key) ?? stored.get(key), now))
        }
        return { value: undefined, next }
      })
    },
    async held(key, now) {
      const rows = await db.query<CounterRow & { expires_at: string | null }>(
        `SELECT key, kind, state, expires_at FROM ${t} WHERE key = $1`,
        [key],
      )
      const r = rows[0]
      // Past its expiry a counter counts for nothing, pruned or not yet.
      if (r?.kind !== 'hold' || (r.expires_at !== null && Number(r.expires_at) <= now)) return 0
      const s = r.state as HoldState | null
      return s ? heldAt(s, now) : 0
    },
    prune: (now) => prune(now),
    async idle() {
      await pruning
    },
  }
}
