/**
 * @module sqlite/counters
 *
 * Admission counters in the `counters` table: one row per counter, its state as JSON and the
 * time it becomes the same as no state (`expires_at`, null: kept). The store holds state, not
 * algorithms: {@link sqliteCounterBackend} is the `transact` of the core's counter contract
 * (`countersFromState`) — read the keys' rows, let the core's step decide, write what it asks
 * and commit, in one `BEGIN IMMEDIATE` transaction, which holds the file's write lock from
 * its first statement: admissions of several processes on one file see one serial order, and
 * every limit is exact. The call is synchronous (the driver is), so the store is in-process
 * for the core: a cached key is decided without a promise, and no timeout timer applies (a
 * lock held by another process is waited for at most `busyTimeoutMs`, then the call fails
 * with a 503).
 */

import {
  type CounterState,
  type CounterStore,
  type StoredCounter,
  type SyncCounterBackend,
  syncCountersFromState,
} from '../../src/internal.js'
import type { Db } from './db.js'

/** The SQLite counter backend: one atomic step over a set of counter keys. */
export interface SqliteCounterBackend extends SyncCounterBackend {
  /** Deletes counters whose value has expired at `now`; returns how many. */
  prune(now: number): number
  readonly durable: true
}

/**
 * @param pruneEvery calls between two deletions of expired counters (0: only `prune()`)
 */
export function sqliteCounterBackend(d: Db, pruneEvery = 10_000): SqliteCounterBackend {
  const readSql = 'SELECT state, expires_at FROM counters WHERE key = ?'
  const upsertSql = `INSERT INTO counters (key, state, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at`
  const prune = (now: number) =>
    d.run(() =>
      Number(d.stmt('DELETE FROM counters WHERE expires_at <= ?').run(Math.floor(now)).changes),
    )
  let calls = 0
  return {
    durable: true,
    transact(keys, step) {
      return d.write(() => {
        const read = d.stmt(readSql)
        const current = keys.map((key): StoredCounter | undefined => {
          const r = read.get(key) as { state: string; expires_at: number | null } | undefined
          return r
            ? { state: JSON.parse(r.state) as CounterState, expiresAt: r.expires_at }
            : undefined
        })
        const { writes, result } = step(current)
        if (writes.length === 0) return { value: result, commit: false }
        const upsert = d.stmt(upsertSql)
        const del = d.stmt('DELETE FROM counters WHERE key = ?')
        for (const w of writes) {
          if (w.value === null) del.run(w.key)
          else
            upsert.run(
              w.key,
              JSON.stringify(w.value.state),
              w.value.expiresAt === null ? null : Math.ceil(w.value.expiresAt),
            )
        }
        return { value: result, commit: true }
      })
    },
    sweep(now) {
      if (pruneEvery === 0 || ++calls < pruneEvery) return
      calls = 0
      try {
        prune(now)
      } catch {
        // The next round retries; a call never fails for it.
      }
    },
    prune,
  }
}

export interface SqliteCounters extends CounterStore {
  /** Deletes counters expired at `now`; returns how many. */
  prune(now: number): number
}

/** The counter store: the core's counting rules over {@link sqliteCounterBackend}. */
export function sqliteCounters(d: Db, pruneEvery: number): SqliteCounters {
  const backend = sqliteCounterBackend(d, pruneEvery)
  return syncCountersFromState(backend, { prune: (now: number) => backend.prune(now) })
}
