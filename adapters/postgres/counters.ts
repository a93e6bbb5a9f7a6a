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
 * An admission with an identity also locks and writes its record, a row of kind null and state
 * `"c"` (a cancel's tombstone: `"x"`) that expires with the record's TTL; a cancel locks the
 * record with the admission's counters, so it waits for an admission still in flight or, first,
 * makes its late commit a refusal. A cancel waits on a row lock like an admission, under the same
 * `statementTimeoutMs` per attempt; the core's queue retries it until it gets through.
 *
 * Each row carries `expires_at`, the time its state becomes the same as no state; rows past it
 * are deleted in the background every `pruneEvery` admissions (and by `pruneCounters()`),
 * skipping rows an admission holds.
 */

import type { QueryResult } from 'pg'
import type { CheckResult, ConsumeResult, CounterStore, HoldState } from '../../src/internal.js'
import {
  apply,
  type Counter,
  evaluate,
  heldAt,
  type Kind,
  mark,
  markOf,
  revert,
} from './counter-state.js'
import { checkout, type Db, explain } from './db.js'

interface CounterRow {
  key: string
  kind: Kind | null
  state: unknown
  expires_at: number | null
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
    const { client, left, release } = await checkout(db, db.deadlineMs)
    const lit = (s: string) => client.escapeLiteral(s)
    let broken: Error | undefined
    try {
      const names = [...new Set(keys)].map(lit).join(', ')
      // No statement (a lock wait included) may outlive the caller's deadline.
      const ms = left()
      const read = await client.query<CounterRow>(
        `${begin} SET LOCAL statement_timeout = ${ms}; SET LOCAL lock_timeout = ${ms};
         INSERT INTO ${t} AS c (key, expires_at)
         SELECT k, ${bigint(now)} FROM unnest(ARRAY[${names}]::text[]) AS k ORDER BY k COLLATE "C"
         ON CONFLICT (key) DO UPDATE SET key = excluded.key
         RETURNING c.key, c.kind, c.state, c.expires_at::float8 AS expires_at`,
      )
      const stored = new Map<string, Counter>()
      for (const r of last(read).rows)
        stored.set(r.key, { kind: r.kind, state: r.state, expiresAt: r.expires_at })
      const { value, next } = decide(stored)
      if (!next || next.size === 0) {
        await client.query('ROLLBACK')
        return value
      }
      left() // past the deadline the catch below rolls back: the caller was answered 503
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
      release(broken)
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

  // A pg Pool's size (10 unless set): the core lets one account wait on half of it at most.
  const max = (db.pool as { options?: { max?: unknown } }).options?.max
  return {
    // Counts are in the same database as the usage: nothing to rebuild after a restart.
    durable: true,
    concurrency: typeof max === 'number' && max > 0 ? max : 10,
    async consume(checks, now, admission) {
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
      // The admission's record is locked with its counters: a cancel of it waits or goes first.
      if (admission) keys.push(admission.key)
      return locked<ConsumeResult>(keys, now, (stored) => {
        const results: CheckResult[] = []
        const next = new Map<string, Counter>()
        // Rebuilt counters are written whatever the admission's outcome.
        const seeded = new Map<string, Counter>()
        if (admission && markOf(stored.get(admission.key), now) === 'x') {
          for (const check of checks)
            results.push({
              allowed: false,
              limit: check.limit,
              used: 0,
              remaining: 0,
              resetMs: 0,
              retryAfterMs: 1000,
            })
          return { value: { allowed: false, results }, next: null }
        }
        let allowed = true
        for (const check of checks) {
          const e = evaluate(check, stored.get(check.key), now)
          results.push(e.result)
          next.set(check.key, e.next)
          if (e.seeded) seeded.set(check.key, e.next)
          if (!e.result.allowed) allowed = false
        }
        // The record only with the counts: a refused admission (a `missing` one included)
        // writes none, so the same id may be consumed again after a rebuild.
        if (allowed && admission) next.set(admission.key, mark('c', now, admission.ttlMs))
        return {
          value: { allowed, results },
          next: allowed ? next : seeded.size > 0 ? seeded : null,
        }
      })
    },
    async settle(ops, now) {
      if (ops.length === 0) return
      const keys: string[] = []
      for (const op of ops) {
        if (op.type === 'release') keys.push(op.key)
        else if (op.type === 'add') keys.push(op.check.key)
        else {
          keys.push(op.key)
          for (const c of op.checks) keys.push(c.key)
        }
      }
      await locked(keys, now, (stored) => {
        const next = new Map<string, Counter>()
        const at = (key: string) => next.get(key) ?? stored.get(key)
        for (const op of ops) {
          if (op.type === 'release') next.set(op.key, apply(op, at(op.key), now))
          else if (op.type === 'add') next.set(op.check.key, apply(op, at(op.check.key), now))
          else {
            const m = markOf(at(op.key), now)
            if (m === 'x') continue
            next.set(op.key, mark('x', now, op.ttlMs))
            if (m === 'c')
              for (const c of op.checks) next.set(c.key, revert(c, at(c.key), now, op.at))
          }
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
