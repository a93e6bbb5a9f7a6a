/**
 * @module test/storage/map-store
 *
 * A storage adapter for a "new database", written against `countersFromState` as a user would:
 * the counters are rows of JSON text in a Map behind a mutex (one `transact` at a time, each
 * waiting a turn of the event loop as a round trip to a database would), and the other stores
 * are those of `memoryStorage()`. Every counting rule comes from the core; this file is the
 * whole adapter, and `map-store.test.ts` holds it to the conformance suite.
 */

import {
  type CounterBackend,
  countersFromState,
  memoryStorage,
  type Storage,
  type StoredCounter,
} from '../../src/index.js'

/** Prunes expired rows every this many calls. */
const SWEEP_EVERY = 64

export function mapStorage(): Storage {
  // key -> [expiresAt (null: never), the StoredCounter as JSON]
  const rows = new Map<string, [number | null, string]>()
  let turn: Promise<unknown> = Promise.resolve()
  let calls = 0
  const backend: CounterBackend = {
    transact(keys, step) {
      const run = async () => {
        await new Promise((resolve) => setImmediate(resolve))
        const current = keys.map((k) => {
          const row = rows.get(k)
          return row === undefined ? undefined : (JSON.parse(row[1]) as StoredCounter)
        })
        const { writes, result } = step(current)
        for (const { key, value } of writes) {
          if (value === null) rows.delete(key)
          else rows.set(key, [value.expiresAt, JSON.stringify(value)])
        }
        return result
      }
      // The mutex: each transaction starts once the one before it has finished.
      const done = turn.then(run)
      turn = done.catch(() => {})
      return done
    },
    sweep(now) {
      if (++calls % SWEEP_EVERY !== 0) return
      for (const [key, [expiresAt]] of rows)
        if (expiresAt !== null && expiresAt <= now) rows.delete(key)
    },
  }
  return { ...memoryStorage(), counters: countersFromState(backend) }
}
