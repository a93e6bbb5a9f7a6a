/**
 * @module storage/in-process
 *
 * Marks a store that runs in this process and cannot hang (the memory stores, SQLite's). When
 * the key, counter and account stores all carry it, tollbooth skips the `storageTimeoutMs` timer
 * on the hot path. Counters carrying it answer every call they take (synchronously, or by a
 * promise, as SQLite's group commit does): an admission is sent without the identity a lost
 * answer is cancelled by. Non-durable in-process counters under `NODE_ENV=production` warn
 * once (`TOLLBOOTH_LOCAL_COUNTERS`). A change feed carrying it delivers this process's own
 * messages back in the publishing call (SQLite's table): it cannot go silent without an error,
 * so tollbooth sends it no feed probes. A private mark, not part of the storage contract: stores of a
 * remote server never carry it, and neither does a copy of a store (`{ ...store }`), so a
 * storage mixed from both keeps its timeouts.
 */

const IN_PROCESS = Symbol('tollbooth.inProcess')

/** Marks `store` as in-process (not enumerable: a copy of it is not). */
export function markInProcess<T extends object>(store: T): T {
  Object.defineProperty(store, IN_PROCESS, { value: true, enumerable: false })
  return store
}

/** True for a store `markInProcess` marked. */
export function isInProcess(store: object): boolean {
  return (store as { [IN_PROCESS]?: true })[IN_PROCESS] === true
}
