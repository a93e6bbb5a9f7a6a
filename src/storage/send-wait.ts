/**
 * @module storage/send-wait
 *
 * How long a storage's calls may wait in the process before they are sent (`Storage.sendWait`),
 * kept with each of its stores too: a storage mixed from two (`{ ...postgres, counters:
 * redis.counters }`, as the README combines them) has the spread one's `sendWait` (PostgreSQL's:
 * none), and Redis counters waiting 250 ms for a reconnect went unchecked against a
 * `storageTimeoutMs` of 200. A private mark, not enumerable, as `markInProcess`'s.
 */

import type { Storage } from './types.js'

/** A storage's wait before sending, and the option that sets it. */
export type SendWait = NonNullable<Storage['sendWait']>

const SEND_WAIT = Symbol('tollbooth.sendWait')

/** The stores a storage is made of, as `createTollbooth` reads them. */
const STORES = ['keys', 'counters', 'usage', 'accounts', 'secrets', 'ipBlocks'] as const

/** Marks `store` as one whose calls may wait `wait.ms` before they are sent. */
export function markSendWait<T extends object>(store: T, wait: SendWait): T {
  Object.defineProperty(store, SEND_WAIT, { value: wait, enumerable: false })
  return store
}

/** The longest wait of `storage` and of the stores it is made of; undefined when none waits. */
export function sendWaitOf(storage: Storage): SendWait | undefined {
  let longest = storage.sendWait
  for (const name of STORES) {
    const w = (storage[name] as { [SEND_WAIT]?: SendWait } | undefined)?.[SEND_WAIT]
    if (w !== undefined && (longest === undefined || w.ms > longest.ms)) longest = w
  }
  return longest
}
