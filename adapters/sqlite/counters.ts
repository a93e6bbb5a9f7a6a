/**
 * @module sqlite/counters
 *
 * Admission counters in the `counters` table: one row per counter, its state as JSON and the
 * time it becomes the same as no state (`expires_at`, null: kept). The store holds state, not
 * algorithms: {@link sqliteCounterBackend} is the `transact` of the core's counter contract
 * (`countersFromState`).
 *
 * Group commit: the calls made during one turn of the event loop (the admissions and settles
 * of every request read in that turn) are applied together in one `BEGIN IMMEDIATE`
 * transaction, run when the turn ends (`setImmediate`): each counter row the calls touch is
 * read once, every call's step runs in the order the calls were made, each on the values the
 * previous ones left, each row written is written once, then one `COMMIT`; only then does each
 * call answer. So a call answers only once what it did is committed (a `kill -9` after the
 * answer loses nothing), `BEGIN IMMEDIATE` holds the file's write lock from the first read to
 * the commit (admissions of several processes on one file see one serial order, and every
 * limit is exact), and the costs of a transaction (its locks, the WAL append, a checkpoint
 * now and then) are paid once per turn instead of twice per request.
 *
 * A lock held by another process is waited for at most `busyTimeoutMs`, then every call of
 * the batch fails with a 503 and nothing of it is committed. A step that throws fails its own
 * call only (it wrote nothing). The store is in-process for the core: its answers cannot be
 * lost in transit, so the core sends no admission identity and arms no timeout timer.
 */

import {
  type CounterBackend,
  type CounterState,
  type CounterStep,
  type CounterStore,
  type CurrentValues,
  countersFromState,
  markInProcess,
  type StoredCounter,
} from '../../src/internal.js'
import { type Db, nextSlice, SLICE_ROWS, type Waited } from './db.js'

/** The SQLite counter backend: atomic steps over sets of counter keys, committed by turn. */
export interface SqliteCounterBackend extends CounterBackend {
  transact<T>(keys: readonly string[], step: (current: CurrentValues) => CounterStep<T>): Promise<T>
  /** Applies and commits the calls waiting for the end of the turn, now. */
  flush(): Waited<void>
  /** Deletes counters whose value has expired at `now`; returns how many. */
  prune(now: number): Promise<number>
  readonly durable: true
}

/** One call waiting for its turn's transaction. */
interface Call {
  keys: readonly string[]
  step: (current: CurrentValues) => CounterStep<unknown>
  resolve(value: unknown): void
  reject(err: unknown): void
}

/** A counter row of the batch: its value (undefined: absent), and whether to write it back. */
interface Row {
  value: StoredCounter | undefined
  dirty: boolean
}

/** Rows kept from one batch to the next at most (past it, the next batch reads afresh). */
const CACHE_ROWS = 4096

/** Keys read per statement (`WHERE key IN (?, …)`); a statement is prepared per count. */
const READ_CHUNK = 32

/**
 * @param pruneEvery calls between two deletions of expired counters (0: only `prune()`)
 */
export function sqliteCounterBackend(d: Db, pruneEvery = 10_000): SqliteCounterBackend {
  const upsertSql = `INSERT INTO counters (key, state, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at`
  const readSql = (n: number) =>
    `SELECT key, state, expires_at FROM counters WHERE key IN (${new Array(n).fill('?').join(', ')})`
  const prune = async (now: number) => {
    await flush()
    cache = null
    return d.run(() =>
      Number(d.stmt('DELETE FROM counters WHERE expires_at <= ?').run(Math.floor(now)).changes),
    )
  }

  let queue: Call[] = []
  let scheduled = false
  // The rows as the last batch committed them, and the file's marks then: another
  // connection's commit moves `data_version`, a write of this connection outside the batches
  // moves `total_changes()`. While both stand, the rows are what the file holds, and a batch
  // reads none of them again.
  let cache: Map<string, Row> | null = null
  let marks = { changes: -1, version: -1 }
  const markSql =
    'SELECT total_changes() AS changes, (SELECT data_version FROM pragma_data_version) AS version'

  /** Reads the stored values of `keys` into their entries of `rows`. */
  const read = (keys: string[], rows: Map<string, Row>) => {
    for (let i = 0; i < keys.length; i += READ_CHUNK) {
      const chunk = i === 0 && keys.length <= READ_CHUNK ? keys : keys.slice(i, i + READ_CHUNK)
      const found = d.stmt(readSql(chunk.length)).all(...chunk) as Array<{
        key: string
        state: string
        expires_at: number | null
      }>
      for (const r of found)
        rows.get(r.key)!.value = {
          state: JSON.parse(r.state) as CounterState,
          expiresAt: r.expires_at,
        }
    }
  }

  // The batch waiting for another process's write lock, if one is: the calls made meanwhile
  // form the next batch, once it is done.
  let waiting: Promise<void> | null = null

  /** One transaction for every waiting call; then each call answers. */
  function flush(): Waited<void> {
    if (waiting) {
      scheduled = true
      return waiting.then(flush)
    }
    scheduled = false
    if (queue.length === 0) return
    const calls = queue
    queue = []
    const out: Array<{ ok: boolean; value: unknown }> = new Array(calls.length)
    // Dropped unless the batch commits, and after a step that threw (it may have changed a
    // value it was given before it threw).
    const kept = cache
    cache = null
    let rows: Map<string, Row> = new Map()
    let threw = false
    let done: Waited<void>
    try {
      done = d.write(() => {
        const m = d.stmt(markSql).get() as { changes: number; version: number }
        if (
          kept !== null &&
          kept.size <= CACHE_ROWS &&
          m.changes === marks.changes &&
          m.version === marks.version
        )
          rows = kept
        const keys: string[] = []
        for (const c of calls)
          for (const k of c.keys)
            if (!rows.has(k)) {
              rows.set(k, { value: undefined, dirty: false })
              keys.push(k)
            }
        read(keys, rows)
        const dirty: string[] = []
        for (let i = 0; i < calls.length; i++) {
          const c = calls[i]!
          let step: CounterStep<unknown>
          try {
            const current: Array<StoredCounter | undefined> = new Array(c.keys.length)
            for (let j = 0; j < c.keys.length; j++) current[j] = rows.get(c.keys[j]!)!.value
            step = c.step(current)
          } catch (err) {
            out[i] = { ok: false, value: err }
            threw = true
            continue
          }
          for (const w of step.writes) {
            let r = rows.get(w.key)
            if (!r) {
              r = { value: undefined, dirty: false }
              rows.set(w.key, r)
            }
            r.value = w.value === null ? undefined : w.value
            if (!r.dirty) {
              r.dirty = true
              dirty.push(w.key)
            }
          }
          out[i] = { ok: true, value: step.result }
        }
        let changes = m.changes
        if (dirty.length > 0) {
          const upsert = d.stmt(upsertSql)
          const del = d.stmt('DELETE FROM counters WHERE key = ?')
          for (const key of dirty) {
            const r = rows.get(key)!
            r.dirty = false
            const done =
              r.value === undefined
                ? del.run(key)
                : upsert.run(
                    key,
                    JSON.stringify(r.value.state),
                    r.value.expiresAt === null ? null : Math.ceil(r.value.expiresAt),
                  )
            changes += Number(done.changes)
          }
        }
        marks = { changes, version: m.version }
        return { value: undefined, commit: dirty.length > 0 }
      })
    } catch (err) {
      // Nothing of the batch was committed: every call fails.
      for (const c of calls) c.reject(err)
      return
    }
    const answer = () => {
      if (!threw) cache = rows
      for (let i = 0; i < calls.length; i++) {
        const o = out[i]!
        if (o.ok) calls[i]!.resolve(o.value)
        else calls[i]!.reject(o.value)
      }
    }
    if (!(done instanceof Promise)) return answer()
    waiting = done.then(answer, (err: unknown) => {
      for (const c of calls) c.reject(err)
    })
    waiting.finally(() => {
      waiting = null
    })
    return waiting
  }

  // The automatic sweep: one pass over the table in key order, a slice of SLICE_ROWS keys per
  // transaction (`nextSlice`), off the call that started it. One statement over the whole table
  // held the lock, and the call that ran it, for 170-240 ms with 400,000 counters.
  let sweeping = false
  const sweepPass = async (now: number) => {
    const slice = d.stmt(
      `DELETE FROM counters WHERE key IN (SELECT key FROM counters WHERE key > ? ORDER BY key LIMIT ${SLICE_ROWS})
        AND expires_at <= ?`,
    )
    const last = d.stmt(
      `SELECT key FROM counters WHERE key > ? ORDER BY key LIMIT 1 OFFSET ${SLICE_ROWS - 1}`,
    )
    let after: string | undefined = ''
    while (after !== undefined) {
      if (!(await nextSlice(d))) return
      const from: string = after
      after = await d.tx(() => {
        const end = last.get(from) as { key: string } | undefined
        slice.run(from, Math.floor(now))
        return end?.key
      })
    }
  }

  let count = 0
  return {
    durable: true,
    transact<T>(keys: readonly string[], step: (current: CurrentValues) => CounterStep<T>) {
      return new Promise<T>((resolve, reject) => {
        queue.push({ keys, step, resolve: resolve as (v: unknown) => void, reject })
        if (!scheduled) {
          scheduled = true
          setImmediate(flush)
        }
      })
    },
    sweep(now) {
      if (pruneEvery === 0 || ++count < pruneEvery || sweeping) return
      count = 0
      sweeping = true
      sweepPass(now)
        // The next round retries; a call never fails for it.
        .catch(() => {})
        .finally(() => {
          sweeping = false
        })
    },
    flush,
    prune,
  }
}

export interface SqliteCounters extends CounterStore {
  /** Deletes counters expired at `now`; returns how many. */
  prune(now: number): Promise<number>
  /**
   * Commits the calls waiting for the end of the turn, now (before the file is closed); a
   * promise when a batch waits for another process's lock.
   */
  flush(): Waited<void>
}

/** The counter store: the core's counting rules over {@link sqliteCounterBackend}. */
export function sqliteCounters(d: Db, pruneEvery: number): SqliteCounters {
  const backend = sqliteCounterBackend(d, pruneEvery)
  const s = countersFromState(backend) as SqliteCounters
  s.prune = (now: number) => backend.prune(now)
  s.flush = () => backend.flush()
  return markInProcess(s)
}
