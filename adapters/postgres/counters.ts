/**
 * @module postgres/counters
 *
 * Admission counters in `<schema>.counters`: a `transact` for `countersFromState`, so the
 * counting rules are the core's (`limits/counters`) and PostgreSQL counts exactly what the
 * memory store counts. This module only locks, reads and writes rows.
 *
 * One call (`consume`, `settle`, `claim`) is one transaction in two round trips:
 * 1. `BEGIN` and one `INSERT … ON CONFLICT DO UPDATE` that creates the missing rows and locks
 *    every row of the call, in byte order of the counter name (so two calls sharing counters
 *    never deadlock), returning each row's latest committed state;
 * 2. after the core's step has run, one statement writing its values (an `UPDATE`, and a
 *    `DELETE` of the values it drops) and `COMMIT`, or `ROLLBACK` when it writes nothing (a
 *    refused request uses up nothing).
 * Concurrent calls on the same counters queue on the row locks and see a serial order.
 * Several statements in one round trip need the simple protocol, which takes no parameters, so
 * values are inlined as literals quoted by the driver (`escapeLiteral`).
 *
 * Commits do not wait for their WAL flush unless `durableCounters` is set: an admission is still
 * atomic and isolated, and a crash of the server may forget only the last fraction of a second
 * of counts, as Redis with its default `appendfsync everysec` would; waiting costs a disk flush
 * per admission.
 *
 * An admission with an identity also locks and writes its record (a row of kind null) that
 * expires with the record's TTL; a cancel locks the record with the admission's counters, so it
 * waits for an admission still in flight or, first, makes its late commit a refusal. A cancel
 * waits on a row lock like an admission, under the same `statementTimeoutMs` per attempt; the
 * core's queue retries it until it gets through.
 *
 * Each row carries `expires_at`, the time its state becomes the same as no state; rows past it
 * are deleted in the background every `pruneEvery` calls (and by `pruneCounters()`), skipping
 * rows a call holds. The `kind` column names the state's algorithm (`counterKind`), for
 * whoever reads the table.
 */

import type { QueryResult } from 'pg'
import {
  type CounterBackend,
  type CounterStore,
  counterKind,
  countersFromState,
  type StoredCounter,
} from '../../src/index.js'
import { type Db, withClient } from './db.js'

interface CounterRow {
  key: string
  state: StoredCounter['state'] | null
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
 * @param pruneEvery counter calls between two background prunes on this instance (0: never)
 * @param durable wait for each commit's WAL flush (else `synchronous_commit = off`)
 */
export function postgresCounters(db: Db, pruneEvery: number, durable: boolean): PostgresCounters {
  const t = db.table('counters')
  const begin = durable ? 'BEGIN;' : 'BEGIN; SET LOCAL synchronous_commit TO off;'

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
  let calls = 0
  let pruning: Promise<unknown> | null = null

  // A pg Pool's size (10 unless set): the core lets one account wait on half of it at most.
  const max = (db.pool as { options?: { max?: unknown } }).options?.max
  const backend: CounterBackend = {
    // Counts are in the same database as the usage: nothing to rebuild after a restart.
    durable: true,
    concurrency: typeof max === 'number' && max > 0 ? max : 10,
    // Locks the rows of `keys`, runs the step on their states, writes what it returns.
    transact: (keys, step) =>
      withClient(db, db.deadlineMs, async (client, left) => {
        const lit = (s: string) => client.escapeLiteral(s)
        const names = [...new Set(keys)].map(lit).join(', ')
        // No statement (a lock wait included) may outlive the caller's deadline.
        const ms = left()
        const read = await client.query<CounterRow>(
          `${begin} SET LOCAL statement_timeout = ${ms}; SET LOCAL lock_timeout = ${ms};
           INSERT INTO ${t} AS c (key, expires_at)
           SELECT k, 0 FROM unnest(ARRAY[${names}]::text[]) AS k ORDER BY k COLLATE "C"
           ON CONFLICT (key) DO UPDATE SET key = excluded.key
           RETURNING c.key, c.state, c.expires_at::float8 AS expires_at`,
        )
        const stored = new Map<string, StoredCounter>()
        for (const r of last(read).rows)
          if (r.state !== null) stored.set(r.key, { state: r.state, expiresAt: r.expires_at })
        const { writes, result } = step(keys.map((k) => stored.get(k)))
        if (writes.length === 0) {
          await client.query('ROLLBACK')
          return result
        }
        left() // past the deadline, withClient rolls back: the caller was answered 503
        const rows: string[] = []
        const gone: string[] = []
        for (const { key, value } of writes) {
          if (value === null) gone.push(lit(key))
          else {
            const kind = counterKind(value.state)
            rows.push(
              `(${lit(key)}, ${kind ? lit(kind) : 'NULL'}, ${lit(JSON.stringify(value.state))}::jsonb, ${bigint(value.expiresAt)}::bigint)`,
            )
          }
        }
        await client.query(
          `${
            rows.length === 0
              ? ''
              : `UPDATE ${t} AS c SET kind = v.kind, state = v.state, expires_at = v.exp
                 FROM (VALUES ${rows.join(', ')}) AS v(key, kind, state, exp)
                 WHERE c.key = v.key;`
          }${gone.length === 0 ? '' : `DELETE FROM ${t} WHERE key IN (${gone.join(', ')});`}
           COMMIT`,
        )
        return result
      }),
    sweep(now) {
      if (pruneEvery === 0 || ++calls < pruneEvery || pruning) return
      calls = 0
      pruning = prune(now, 50_000)
        .catch(() => 0) // the next round retries; a call never fails for it
        .finally(() => {
          pruning = null
        })
    },
  }
  return Object.assign(countersFromState(backend), {
    prune: (now: number) => prune(now),
    async idle() {
      await pruning
    },
  })
}
