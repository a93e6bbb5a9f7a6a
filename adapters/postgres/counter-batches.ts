/**
 * @module postgres/counter-batches
 *
 * The turns of the PostgreSQL counter transactions, by account. Counter calls (`transact`)
 * are grouped by the hash tag their first key starts with (`{<accountId>}`, `{ip:<ip>}`; a
 * key without one is its own group). Calls of a group that arrive while a transaction of the
 * group is getting its rows wait, and the group's next transaction takes all of them (at most
 * {@link MAX_BATCH}) once it has its connection: they run together, in arrival order.
 *
 * A group has at most two transactions in flight, and the second starts only once the first
 * holds its rows and has computed its writes (`locked`): it then waits on the rows the two
 * share and reads them as the first committed them, so the serial order is the order of
 * arrival, and the second's connection, `BEGIN` and lock request overlap the first's commit.
 * A transaction of one statement says so only once it is done. A group stuck on a lock
 * holds one connection. At most `inFlight` transactions of all groups run at once; groups
 * ready beyond that wait their turn first in, first out, unless a transaction that starts
 * takes their calls with its own (`take(merge)`): they then count as running in it, and can
 * be given back (`giveBack`) to run in their own next transactions.
 *
 * {@link runSteps} runs the calls' steps (the core's counting rules, `limits/counters`) one
 * after the other on the values read, each seeing the writes of those before it, as the
 * memory store would run them one by one; the transaction writes each row's final value once.
 */

import type { CounterStep, CurrentValues, StoredCounter } from '../../src/internal.js'

/** Calls one transaction takes at most (its statements grow with its keys). */
export const MAX_BATCH = 256

/** Transactions of one group in flight at most. */
const PER_GROUP = 2

/** One counter call waiting for, or in, a transaction. */
export interface BatchCall {
  keys: readonly string[]
  step: (current: CurrentValues) => CounterStep<unknown>
  /** `performance.now()` past which the caller has been answered: nothing may commit for it. */
  deadline: number
  /** The `clock` given to {@link groupBatches} when the call arrived. */
  at: number
  resolve(value: unknown): void
  reject(err: unknown): void
}

/** What a transaction of a group is given by the scheduler. */
export interface BatchTurn {
  /** The group's name (the hash tag of its calls' first key). */
  group: string
  /**
   * The calls waiting now, in arrival order; call it once the connection is there. With
   * `merge`, also the calls of other groups waiting only for a turn (all transactions in
   * flight) that `merge` accepts, up to {@link MAX_BATCH} in all: their rows are disjoint
   * from this group's, so one transaction serves them together.
   */
  take(merge?: (group: string) => boolean): BatchCall[]
  /** The groups whose calls `take` gave: this turn's own first. */
  readonly groups: readonly string[]
  /**
   * Puts the calls taken that are still waiting back at the head of their groups, to run in
   * the groups' next transactions; the turn then ends without failing them.
   */
  giveBack(): void
  /**
   * The group's next transaction may start: this one holds its rows and has computed what it
   * writes, or is done.
   */
  locked(): void
}

interface Group {
  name: string
  pending: BatchCall[]
  running: number
  /** A transaction of the group has not got its rows yet. */
  locking: boolean
  /** In the queue of groups waiting for a slot. */
  queued: boolean
}

/** The group of a call: the hash tag of its first key. */
function groupOf(keys: readonly string[]): string {
  return groupOfKey(keys[0] ?? '')
}

/** The group a counter key belongs to: its hash tag, or the key itself. */
export function groupOfKey(k: string): string {
  const end = k.charCodeAt(0) === 123 /* { */ ? k.indexOf('}') : -1
  return end > 0 ? k.slice(0, end + 1) : k
}

/**
 * A `transact` that queues calls by group and runs them through `run`, one batch per
 * transaction.
 *
 * @param inFlight transactions of all groups at once, at most
 * @param deadlineMs how long a call may wait and run, from its arrival (read at each arrival:
 *   it may follow the core's `storageTimeoutMs`, see `Storage.storageTimeout`)
 * @param run one transaction: takes its calls from the turn and answers each of them
 * @param clock stamps each call as it arrives (`BatchCall.at`)
 */
export function groupBatches(
  inFlight: number,
  deadlineMs: () => number,
  run: (turn: BatchTurn) => Promise<void>,
  clock: () => number = () => 0,
) {
  const groups = new Map<string, Group>()
  const ready: Group[] = []
  let running = 0

  const canStart = (g: Group) => g.pending.length > 0 && !g.locking && g.running < PER_GROUP

  function pump(g: Group): void {
    if (!canStart(g)) {
      if (g.running === 0 && g.pending.length === 0 && !g.queued) groups.delete(g.name)
      return
    }
    if (running < inFlight) start(g)
    else if (!g.queued) {
      g.queued = true
      ready.push(g)
    }
  }

  function next(): void {
    while (running < inFlight && ready.length > 0) {
      const g = ready.shift()!
      g.queued = false
      pump(g)
    }
  }

  function start(g: Group): void {
    running++
    g.running++
    g.locking = true
    let taken: BatchCall[] | null = null
    let locked = false
    /** Groups whose calls this turn took besides its own, each counted as running here. */
    const absorbed: Group[] = []
    const groupNames = [g.name]
    const unlock = () => {
      if (locked) return
      locked = true
      g.locking = false
      for (const h of absorbed) h.locking = false
      pump(g)
      for (const h of absorbed) pump(h)
    }
    const turn: BatchTurn = {
      group: g.name,
      groups: groupNames,
      take(merge) {
        taken = g.pending.splice(0, MAX_BATCH)
        if (merge)
          for (let i = 0; i < ready.length && taken.length < MAX_BATCH; ) {
            const h = ready[i]!
            if (!canStart(h) || !merge(h.name)) {
              i++
              continue
            }
            ready.splice(i, 1)
            h.queued = false
            h.running++
            h.locking = true
            absorbed.push(h)
            groupNames.push(h.name)
            for (const c of h.pending.splice(0, MAX_BATCH - taken.length)) taken.push(c)
          }
        return taken
      },
      locked: unlock,
      giveBack() {
        // Each group is running this turn until it ends, so none has left the map. A call
        // past its deadline fails at its group's next transaction, as it would have here.
        const back = taken ?? []
        taken = []
        for (let i = back.length - 1; i >= 0; i--)
          groups.get(groupOf(back[i]!.keys))!.pending.unshift(back[i]!)
      },
    }
    run(turn)
      .catch((err: unknown) => {
        // Failed before it took its calls (no connection): they fail with it.
        for (const c of taken ?? turn.take()) c.reject(err)
      })
      .finally(() => {
        running--
        g.running--
        for (const h of absorbed) h.running--
        unlock()
        pump(g)
        for (const h of absorbed) pump(h)
        next()
      })
  }

  return function transact<T>(
    keys: readonly string[],
    step: (current: CurrentValues) => CounterStep<T>,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const name = groupOf(keys)
      let g = groups.get(name)
      if (!g) {
        g = { name, pending: [], running: 0, locking: false, queued: false }
        groups.set(name, g)
      }
      g.pending.push({
        keys,
        step,
        deadline: performance.now() + deadlineMs(),
        at: clock(),
        resolve: resolve as (v: unknown) => void,
        reject,
      })
      pump(g)
    })
  }
}

/** What {@link runSteps} leaves: each call's outcome, and each written key's final value. */
export interface StepsRun {
  out: Array<{ ok: boolean; value: unknown }>
  /** The final value of each key written (null: deleted), in order of first write. */
  writes: Map<string, StoredCounter | null>
}

/**
 * Runs the steps of `calls` in order on `read` (the values as stored, which the steps may
 * change: pass fresh copies), each on the values the previous ones left. A step that throws
 * fails its own call only, as it would alone.
 */
export function runSteps(
  calls: readonly BatchCall[],
  read: Map<string, StoredCounter | undefined>,
): StepsRun {
  const values = read
  const writes = new Map<string, StoredCounter | null>()
  const out: StepsRun['out'] = new Array(calls.length)
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!
    let step: CounterStep<unknown>
    try {
      const current: Array<StoredCounter | undefined> = new Array(c.keys.length)
      for (let j = 0; j < c.keys.length; j++) current[j] = values.get(c.keys[j]!)
      step = c.step(current)
    } catch (err) {
      out[i] = { ok: false, value: err }
      continue
    }
    for (const w of step.writes) {
      values.set(w.key, w.value ?? undefined)
      writes.set(w.key, w.value)
    }
    out[i] = { ok: true, value: step.result }
  }
  return { out, writes }
}
