/**
 * @module sqlite/counters
 *
 * Admission counters in the `counters` table: one row per counter, its state as JSON and the
 * time it becomes the same as no state (`expires_at`, null: kept). The store holds state, not
 * algorithms: {@link sqliteCounterBackend} is the `transact` of the core's counter contract —
 * read the keys' rows, let the core's step decide, write what it asks and commit, in one
 * `BEGIN IMMEDIATE` transaction, which holds the file's write lock from its first statement:
 * admissions of several processes on one file see one serial order, and every limit is exact.
 * The call is synchronous (the driver is), so the store is in-process for the core: a request
 * is decided without a promise, and no timeout timer applies (a lock held by another process
 * is waited for at most `busyTimeoutMs`, then the call fails with a 503).
 */

import type { CheckResult, ConsumeResult, CounterStore, HoldState } from '../../src/index.js'
import {
  apply,
  type Counter,
  evaluate,
  heldAt,
  mark,
  markOf,
  revert,
} from '../postgres/counter-state.js'
import type { Db } from './db.js'

/** A counter's stored state: a JSON-serialisable plain object, opaque to the backend. */
export type CounterState = Record<string, unknown>

/** What the backend stores per counter key (`expiresAt` null: kept). */
export interface StoredCounter {
  state: CounterState
  expiresAt: number | null
}

/** A write the core's step asks for; `value: null` deletes the key. */
export interface CounterWrite {
  key: string
  value: StoredCounter | null
}

/** The SQLite counter backend: one atomic step over a set of counter keys. */
export interface SqliteCounterBackend {
  transact<T>(
    keys: readonly string[],
    step: (current: ReadonlyArray<StoredCounter | undefined>) => {
      writes: readonly CounterWrite[]
      result: T
    },
  ): T
  /** Deletes counters whose value has expired at `now`; returns how many. */
  sweep(now: number): number
  readonly durable: true
}

export function sqliteCounterBackend(d: Db): SqliteCounterBackend {
  const readSql = 'SELECT state, expires_at FROM counters WHERE key = ?'
  const upsertSql = `INSERT INTO counters (key, state, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at`
  return {
    durable: true,
    transact(keys, step) {
      return d.write(() => {
        const read = d.stmt(readSql)
        const current = keys.map((key) => {
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
      return d.run(() =>
        Number(d.stmt('DELETE FROM counters WHERE expires_at <= ?').run(Math.floor(now)).changes),
      )
    },
  }
}

/** A counter as the step below keeps it in a row's state: its kind beside its figures. */
interface Wrapped {
  kind: Counter['kind']
  s: unknown
}

export interface SqliteCounters extends CounterStore {
  /** Deletes counters expired at `now`; returns how many. */
  prune(now: number): number
}

/**
 * The counter store over the backend, computed by the core's algorithms (`gcra`,
 * `rollingWindow`, `hold` and their reverts) exactly as the memory store computes them.
 */
export function sqliteCounters(d: Db, pruneEvery: number): SqliteCounters {
  const backend = sqliteCounterBackend(d)
  const locked = <T>(
    keys: string[],
    now: number,
    decide: (stored: Map<string, Counter>) => { value: T; next: Map<string, Counter> | null },
  ): T => {
    const unique = [...new Set(keys)]
    return backend.transact(unique, (current) => {
      const stored = new Map<string, Counter>()
      current.forEach((v, i) => {
        if (v === undefined) return
        const w = v.state as unknown as Wrapped
        stored.set(unique[i]!, { kind: w.kind, state: w.s, expiresAt: v.expiresAt })
      })
      const { value, next } = decide(stored)
      const writes: CounterWrite[] = []
      for (const [key, c] of next ?? []) {
        writes.push({
          key,
          value:
            c.expiresAt !== null && c.expiresAt <= now
              ? null
              : {
                  state: { kind: c.kind, s: c.state } as unknown as CounterState,
                  expiresAt: c.expiresAt,
                },
        })
      }
      return { writes, result: value }
    })
  }

  let admissions = 0
  const consumeSync = (
    checks: Parameters<CounterStore['consume']>[0],
    now: number,
    admission?: Parameters<CounterStore['consume']>[2],
  ): ConsumeResult => {
    if (checks.length === 0) return { allowed: true, results: [] }
    if (pruneEvery > 0 && ++admissions >= pruneEvery) {
      admissions = 0
      try {
        backend.sweep(now)
      } catch {
        // The next round retries; an admission never fails for it.
      }
    }
    const keys = checks.map((c) => c.key)
    if (admission) keys.push(admission.key)
    return locked<ConsumeResult>(keys, now, (stored) => {
      const results: CheckResult[] = []
      const next = new Map<string, Counter>()
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
      if (allowed && admission) next.set(admission.key, mark('c', now, admission.ttlMs))
      return { value: { allowed, results }, next: allowed ? next : seeded.size > 0 ? seeded : null }
    })
  }
  const settleSync = (ops: Parameters<CounterStore['settle']>[0], now: number): void => {
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
    locked(keys, now, (stored) => {
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
      // An unchanged counter handed back (a retried release of a gone hold) is not rewritten.
      for (const [key, c] of next)
        if (c === stored.get(key) || (c.kind === null && c.state === null)) next.delete(key)
      return { value: undefined, next }
    })
  }
  return {
    inProcess: true,
    durable: true,
    consumeSync,
    settleSync,
    async consume(checks, now, admission) {
      return consumeSync(checks, now, admission)
    },
    async settle(ops, now) {
      settleSync(ops, now)
    },
    async held(key, now) {
      const r = d.run(() =>
        d.stmt('SELECT state, expires_at FROM counters WHERE key = ?').get(key),
      ) as { state: string; expires_at: number | null } | undefined
      if (!r || (r.expires_at !== null && r.expires_at <= now)) return 0
      const w = JSON.parse(r.state) as Wrapped
      return w.kind === 'hold' && w.s ? heldAt(w.s as HoldState, now) : 0
    },
    prune: (now) => backend.sweep(now),
  }
}
