/**
 * @module postgres/counters
 *
 * Admission counters in `<schema>.counters`: a `transact` for `countersFromState`, so the
 * counting rules are the core's (`limits/counters`) and PostgreSQL counts exactly what the
 * memory store counts. This module only locks, reads and writes rows.
 *
 * Calls are batched by account (`counter-batches`): the calls of one account that arrive
 * while a transaction of the account is getting its rows run together in the next one. When
 * every connection is busy, a transaction on known values (below) also takes the calls of
 * other accounts waiting for a turn: their rows are their own, and one statement for many
 * accounts costs PostgreSQL about half as much per call as one each. It waits at most
 * `MERGED_LOCK_MS` for a row lock; past that it writes nothing and its calls go back to their
 * own accounts' next transactions, those accounts kept out of shared ones for a second.
 *
 * A transaction is one round trip when this instance knows the rows' values: the ones its own
 * last transactions read or wrote (counters only, the most recently used `KNOWN_MAX`; a row it
 * never saw is taken for absent, as an admission's fresh record is). The core's steps run on
 * those values here, and one prepared statement, `counters_apply` (migration 5), locks the
 * rows, checks they still hold those values and writes the new ones, all or nothing. The rows
 * stay locked only while that statement runs, not while this process's event loop gets to a
 * reply. When another writer changed a row (another instance, or a prune of a value that
 * expired after the calls arrived), nothing is written and the same calls run as below; the
 * account then runs under lock for 10 ms, doubled each time it finds a row changed again soon
 * after, up to 1 s, so two instances sharing an account do not pay a wasted round trip per
 * transaction. A one-statement transaction lets the account's next one start only once it is
 * done (overlapping them made batches smaller and cost more PostgreSQL CPU per request).
 *
 * Under lock, a transaction is two round trips:
 * 1. `BEGIN` and one `INSERT … ON CONFLICT DO UPDATE` that creates the missing rows and locks
 *    every row of the batch, in byte order of the counter name (so two transactions sharing
 *    counters never deadlock), returning each row's latest committed state;
 * 2. after the core's steps have run, one after the other in arrival order, each on the values
 *    the previous ones left (each admission all or nothing, as alone), one statement writing
 *    each row's final value once (an `UPDATE`, and a `DELETE` of the values dropped and of
 *    the rows created for nothing) and `COMMIT`, or `ROLLBACK` when no step writes (a refused
 *    request uses up nothing).
 * Concurrent transactions on the same counters queue on the row locks and see a serial order.
 * A failed transaction fails every call of its batch with its error; a call whose deadline
 * passes before the commit is left out (its step taken out, the others run again on the
 * values read) and fails as it would alone.
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

import type { PoolClient, QueryResult } from 'pg'
import {
  type CounterBackend,
  type CounterStore,
  counterKind,
  countersFromState,
  type StoredCounter,
} from '../../src/internal.js'
import {
  type BatchCall,
  type BatchTurn,
  groupBatches,
  groupOfKey,
  runSteps,
  type StepsRun,
} from './counter-batches.js'
import { type Db, lateError, withClient } from './db.js'

interface CounterRow {
  key: string
  kind: string | null
  /** The state as JSON text, parsed afresh for each run of the steps (they change values). */
  state: string | null
  expires_at: number | null
}

/** The values of `rows` for `runSteps`: fresh objects (undefined: no state). */
function values(rows: readonly CounterRow[]): Map<string, StoredCounter | undefined> {
  const m = new Map<string, StoredCounter | undefined>()
  for (const r of rows)
    m.set(
      r.key,
      r.state === null
        ? undefined
        : { state: JSON.parse(r.state) as StoredCounter['state'], expiresAt: r.expires_at },
    )
  return m
}

/** The calls whose caller is still waiting; the others fail, as after the deadline alone. */
function live(calls: BatchCall[], deadlineMs: number): BatchCall[] {
  const now = performance.now()
  if (calls.every((c) => c.deadline > now)) return calls
  const out: BatchCall[] = []
  for (const c of calls) {
    if (c.deadline > now) out.push(c)
    else c.reject(lateError(deadlineMs))
  }
  return out
}

export interface PostgresCounters extends CounterStore {
  /** Deletes counters expired at `now`, in chunks; returns how many. */
  prune(now: number): Promise<number>
  /** Resolves when a background prune in progress has finished. */
  idle(): Promise<void>
  /**
   * Since the store was made: transactions run and the calls they answered; of those
   * transactions, the ones run in one statement on the values known (`counters_apply`), the
   * attempts at one that found a row changed (then run under lock), and the ones that served
   * several groups (accounts) waiting for a turn; and the transactions of several groups
   * that waited too long for a row lock and gave their calls back to run alone.
   */
  stats(): {
    transactions: number
    calls: number
    oneStatement: number
    changed: number
    merged: number
    givenBack: number
  }
}

/** A time as its `bigint` column holds it: null for null and a non-finite time. */
const bigintValue = (v: number | null): number | null =>
  v === null || !Number.isFinite(v) ? null : Math.ceil(v)

/** A `bigint` literal; null (and a non-finite time) is `NULL`. */
const bigint = (v: number | null): string => String(bigintValue(v) ?? 'NULL')

/** Values an instance keeps of the rows it last read or wrote, at most (by last use). */
const KNOWN_MAX = 20_000

/**
 * How long a transaction of several groups (see `run`) waits for a row lock before its groups
 * run alone, in ms.
 */
const MERGED_LOCK_MS = 50

/** How long a group whose rows another writer changed runs its transactions under lock. */
const CONTENDED_MS = 1000

/** A row as this instance last read or wrote it: its state as JSON text, and `expires_at`. */
interface Known {
  state: string
  exp: number | null
}

/**
 * The rows' values as this instance's own transactions left them, the most recently used
 * {@link KNOWN_MAX} of them. Only a guess: `counters_apply` compares it with the rows under
 * lock before it writes.
 */
function knownValues() {
  const rows = new Map<string, Known>()
  return {
    get: (key: string) => rows.get(key),
    /** A fresh value for the steps (they may change it); undefined: no state known. */
    value(key: string): StoredCounter | undefined {
      const r = rows.get(key)
      return r && { state: JSON.parse(r.state) as StoredCounter['state'], expiresAt: r.exp }
    },
    /**
     * `state` null: the row holds no state (absent), as when nothing is known. Only counters
     * are kept (`kind`): an admission's record is written once and read again only by a rare
     * cancel, so keeping records would only push counters out.
     */
    set(key: string, state: string | null, exp: number | null, kind: string | null) {
      rows.delete(key)
      if (state === null || kind === null) return
      rows.set(key, { state, exp })
      if (rows.size > KNOWN_MAX) rows.delete(rows.keys().next().value!)
    },
    forget(key: string) {
      rows.delete(key)
    },
  }
}

/** Sets `key` as the newest entry of `map`, the oldest dropped past 10,000 entries. */
function setRecent<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  map.set(key, value)
  if (map.size > 10_000) map.delete(map.keys().next().value!)
}

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
  let sinceSweep = 0
  const stats = { transactions: 0, calls: 0, oneStatement: 0, changed: 0, merged: 0, givenBack: 0 }
  let pruning: Promise<unknown> | null = null

  // A pg Pool's size (10 unless set): counter transactions of all accounts take at most it.
  const max = (db.pool as { options?: { max?: unknown } }).options?.max
  const poolSize = typeof max === 'number' && max > 0 ? max : 10

  const known = knownValues()
  const apply = `SELECT ${db.table('counters_apply')}($1::jsonb, $2::integer, $3::boolean)`
  /**
   * Groups whose one-statement transaction found a row changed: until when they run under
   * lock (`performance.now()` ms), and for how long that was.
   */
  const contended = new Map<string, { until: number; ms: number }>()
  /**
   * Groups that were in a transaction of several groups that failed (a row locked elsewhere
   * past the deadline, say): until when (`performance.now()` ms) they are not merged with
   * others, so one account's stuck rows fail its own calls, not its neighbours'.
   */
  const alone = new Map<string, number>()
  /** False once the database answered that `counters_apply` does not exist (not migrated). */
  let oneStatement = true
  /** The clock of the latest call (see `sweep`), which stamps the calls as they arrive. */
  let lastNow = Number.NEGATIVE_INFINITY

  /** The latest deadline of `calls`, as a timeout in ms (at least 1). */
  const timeout = (calls: BatchCall[]) => {
    let last = Number.NEGATIVE_INFINITY
    for (const c of calls) if (c.deadline > last) last = c.deadline
    return Math.max(1, Math.floor(last - performance.now()))
  }
  /** A turn's lock waits: `ms`, at most {@link MERGED_LOCK_MS} for a turn of several groups. */
  const lockWait = (ms: number, turn: BatchTurn) =>
    turn.groups.length > 1 ? Math.min(ms, MERGED_LOCK_MS) : ms

  /** Answers each call with its outcome in `done`. */
  const answer = (turn: BatchTurn, calls: BatchCall[], done: StepsRun) => {
    stats.transactions++
    stats.calls += calls.length
    if (turn.groups.length > 1) stats.merged++
    for (let i = 0; i < calls.length; i++) {
      const o = done.out[i]!
      if (o.ok) calls[i]!.resolve(o.value)
      else calls[i]!.reject(o.value)
    }
  }

  /**
   * The calls run in one statement (`counters_apply`) on the values this instance knows: true
   * when committed and answered; false when a row had changed (nothing written: the caller
   * runs them under lock).
   */
  const runKnown = async (
    client: PoolClient,
    turn: BatchTurn,
    calls: BatchCall[],
    keys: Set<string>,
  ): Promise<boolean> => {
    const read = new Map<string, StoredCounter | undefined>()
    for (const k of keys) read.set(k, known.value(k))
    const done = runSteps(calls, read)
    // A value expired when the first call arrived was no state to every step (`liveState`),
    // so the row may also be gone (pruned).
    let first = Infinity
    for (const c of calls) if (c.at < first) first = c.at
    const texts = new Map<string, string | null>()
    let batch = '['
    for (const k of keys) {
      const was = known.get(k)
      batch += `${batch.length === 1 ? '' : ','}{"k":${JSON.stringify(k)}`
      if (was)
        batch += `,"o":${was.state},"oe":${was.exp}${was.exp !== null && was.exp <= first ? ',"a":true' : ''}`
      const w = done.writes.get(k)
      if (w === undefined) batch += '}'
      else if (w === null) batch += ',"w":true}'
      else {
        const text = JSON.stringify(w.state)
        texts.set(k, text)
        const kind = counterKind(w.state)
        batch += `,"w":true,"kind":${kind ? `"${kind}"` : 'null'},"s":${text},"e":${bigintValue(w.expiresAt)}}`
      }
    }
    batch += ']'
    const values = [batch, lockWait(timeout(calls), turn), durable]
    const name = db.prepare ? db.statement('counters_apply') : undefined
    try {
      await client
        .query(name ? { name, text: apply, values } : { text: apply, values })
        // Not kept by a pooler: it never ran; once more, unnamed.
        .catch((err: unknown) => {
          if (name && db.pooled(err)) return client.query({ text: apply, values })
          throw err
        })
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code
      if (name && db.stale(err, 'counters_apply', name)) {
        // Prepared before a migration replaced the function: nothing ran; these calls run
        // under lock, the next ones under the statement's new name.
        for (const k of keys) known.forget(k)
        return false
      }
      if (code === 'TB409') {
        stats.changed++
        // Another writer: the changed row's group runs under lock for a while, twice as long
        // each time it finds a row changed again soon after (up to CONTENDED_MS).
        const changed = /counter (.*) changed since/.exec(String((err as Error).message))?.[1]
        const group = changed === undefined ? turn.group : groupOfKey(changed)
        const now = performance.now()
        const c = contended.get(group)
        const ms = c && now - c.until < CONTENDED_MS ? Math.min(2 * c.ms, CONTENDED_MS) : 10
        setRecent(contended, group, { until: now + ms, ms })
        for (const k of keys) known.forget(k)
        return false
      }
      if (code === '42883') {
        // Not migrated to 5 yet: every transaction reads under lock, as before it.
        oneStatement = false
        return false
      }
      for (const k of keys) known.forget(k)
      throw err
    }
    for (const [k, w] of done.writes)
      if (w === null) known.forget(k)
      else known.set(k, texts.get(k)!, bigintValue(w.expiresAt), counterKind(w.state))
    turn.locked()
    stats.oneStatement++
    answer(turn, calls, done)
    return true
  }

  /**
   * One transaction for the calls of a group waiting now, with those of other groups waiting
   * for a turn when it runs on the values known (see `counter-batches`). A transaction of
   * several groups waits at most {@link MERGED_LOCK_MS} for a row lock (held by another
   * instance, or by hand); past that nothing is written, its groups run alone for a while, and
   * each call runs again in its own group's next transaction.
   */
  const run = async (turn: BatchTurn): Promise<void> => {
    try {
      await transaction(turn)
    } catch (err) {
      if (turn.groups.length < 2) throw err
      const until = performance.now() + CONTENDED_MS
      for (const g of turn.groups) setRecent(alone, g, until)
      if ((err as { code?: unknown } | null)?.code !== '55P03') throw err
      stats.givenBack++
      turn.giveBack()
    }
  }

  const transaction = (turn: BatchTurn) =>
    withClient(db, Infinity, async (client) => {
      const now = performance.now()
      const calm = (group: string) => {
        const c = contended.get(group)
        return c === undefined || c.until <= now
      }
      const mergeable = (group: string) => {
        if (!calm(group)) return false
        const until = alone.get(group)
        if (until === undefined) return true
        if (until <= now) alone.delete(group)
        return until <= now
      }
      // On the values known, a transaction also takes the calls of other groups waiting for
      // a turn: one statement for all of them (each group's rows its own), which halves
      // PostgreSQL's work per call when many accounts share the pool.
      const onKnown = oneStatement && calm(turn.group)
      const calls = live(turn.take(onKnown ? mergeable : undefined), db.deadlineMs)
      if (calls.length === 0) return
      await runCalls(client, turn, calls, onKnown)
    })

  /** The calls of a turn: in one statement on the values known, else under lock. */
  const runCalls = async (
    client: PoolClient,
    turn: BatchTurn,
    taken: BatchCall[],
    onKnown: boolean,
  ): Promise<void> => {
    let calls = taken
    const keys = new Set<string>()
    for (const c of calls) for (const k of c.keys) keys.add(k)
    if (onKnown) {
      if (await runKnown(client, turn, calls, keys)) return
      calls = live(calls, db.deadlineMs)
      if (calls.length === 0) return
    }
    const lit = (s: string) => client.escapeLiteral(s)
    // No statement (a lock wait included) may outlive the last caller's deadline; a caller
    // whose deadline passes before the commit is left out of it (below).
    const ms = timeout(calls)
    const read = await client.query<CounterRow>(
      `${begin} SET LOCAL statement_timeout = ${ms}; SET LOCAL lock_timeout = ${lockWait(ms, turn)};
           INSERT INTO ${t} AS c (key, expires_at)
           SELECT k, 0 FROM unnest(ARRAY[${[...keys].map(lit).join(', ')}]::text[]) AS k
           ORDER BY k COLLATE "C"
           ON CONFLICT (key) DO UPDATE SET key = excluded.key
           RETURNING c.key, c.kind, c.state::text AS state, c.expires_at::float8 AS expires_at`,
    )
    const rows = last(read).rows
    let done = runSteps(calls, values(rows))
    // Past its deadline, a caller was answered 503: its step is taken out and the others
    // run again on the values read (the rows are still locked), so nothing commits for it.
    const waited = live(calls, db.deadlineMs)
    if (waited.length < calls.length) {
      calls = waited
      done = runSteps(calls, values(rows))
    }
    // What this transaction leaves, known before its commit: a transaction of the group that
    // starts now computes on it, and its rows wait for this commit (or, after a rollback,
    // differ from it: that one then runs under lock).
    for (const r of rows)
      if (!done.writes.has(r.key)) known.set(r.key, r.state, r.expires_at, r.kind)
    for (const [k, w] of done.writes)
      if (w === null) known.forget(k)
      else known.set(k, JSON.stringify(w.state), bigintValue(w.expiresAt), counterKind(w.state))
    turn.locked()
    const rowsSql: string[] = []
    const gone: string[] = []
    for (const [key, value] of done.writes) {
      if (value === null) gone.push(lit(key))
      else {
        const kind = counterKind(value.state)
        rowsSql.push(
          `(${lit(key)}, ${kind ? lit(kind) : 'NULL'}, ${lit(JSON.stringify(value.state))}::jsonb, ${bigint(value.expiresAt)}::bigint)`,
        )
      }
    }
    try {
      if (calls.length === 0 || done.writes.size === 0) await client.query('ROLLBACK')
      else {
        // Rows this transaction created for calls that wrote nothing under them (a refused
        // admission's record): gone with it, as a refusal alone rolls back.
        for (const r of rows) if (r.state === null && !done.writes.has(r.key)) gone.push(lit(r.key))
        await client.query(
          `${
            rowsSql.length === 0
              ? ''
              : `UPDATE ${t} AS c SET kind = v.kind, state = v.state, expires_at = v.exp
                   FROM (VALUES ${rowsSql.join(', ')}) AS v(key, kind, state, exp)
                   WHERE c.key = v.key;`
          }${gone.length === 0 ? '' : `DELETE FROM ${t} WHERE key IN (${gone.join(', ')});`}
             COMMIT`,
        )
      }
    } catch (err) {
      for (const k of keys) known.forget(k)
      throw err
    }
    answer(turn, calls, done)
  }

  const backend: CounterBackend = {
    // Counts are in the same database as the usage: nothing to rebuild after a restart.
    durable: true,
    // No `concurrency`: the batches bound one account to two connections, so the core need
    // not hold an account's admissions back (its `accountInFlight` then defaults to 64).
    transact: groupBatches(
      poolSize,
      () => db.deadlineMs,
      run,
      () => lastNow,
    ),
    sweep(now) {
      // Called with the clock of every consume, settle and claim, just before its transact.
      lastNow = now
      if (pruneEvery === 0 || ++sinceSweep < pruneEvery || pruning) return
      sinceSweep = 0
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
    stats: () => ({ ...stats }),
  })
}
