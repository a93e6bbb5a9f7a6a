/**
 * @module tollbooth/testing
 *
 * The storage conformance suite: the same vitest tests that check `memoryStorage()`,
 * `redisStorage()` and `postgresStorage()`, exported so a user's own adapter is held to the
 * same contract (`src/storage/types.ts`, `docs/storage.md`). It covers every method of every
 * store: keys, counters (all-or-nothing admission, the exact figures of the `limits/`
 * algorithms, expiry by explicit `now`, concurrency), usage, accounts, secrets, the failed-auth guard's
 * IP blocks and, when the storage has one, the change feed.
 *
 * The tests draw fresh random ids for every record, so they pass whether the factory returns
 * a new storage per test or the same one every time; only `usage.prune` assumes that no one
 * else stores events older than 1970-01-11T00:00:00Z.
 */

import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import type { Storage } from '../../src/internal.js'
import { accountStoreTests } from './accounts.js'
import { counterStoreTests } from './counters.js'
import type { StorageFactory, StorageFixture } from './fixtures.js'
import { ipBlockStoreTests } from './ip-blocks.js'
import { keyStoreTests } from './keys.js'
import { usageStoreTests } from './usage.js'

export { type ManualClock, manualClock } from '../../src/internal.js'
export type { StorageFactory, StorageFixture } from './fixtures.js'

/**
 * Declares the conformance suite for one storage in the calling vitest file.
 *
 * @param name shown as the outer `describe`
 * @param factory called before each test; returns the storage and an optional `cleanup`,
 *   awaited after the test (delete the test's key prefix or schema, close what it opened)
 * @example
 * ```ts
 * // test/storage/my-store.test.ts
 * import { describeStorageConformance } from 'tollbooth/testing'
 *
 * describeStorageConformance('my store', async () => {
 *   const storage = await myStorage({ url: process.env.MY_URL })
 *   return { storage, cleanup: () => storage.close?.() ?? Promise.resolve() }
 * })
 * ```
 */
export function describeStorageConformance(name: string, factory: StorageFactory): void {
  describe(`storage conformance: ${name}`, () => {
    let fixture: StorageFixture | null = null
    const get = (): Storage => {
      if (!fixture) throw new Error('the storage factory has not run for this test')
      return fixture.storage
    }
    beforeEach(async () => {
      fixture = await factory()
    })
    afterEach(async () => {
      const f = fixture
      fixture = null
      await f?.cleanup?.()
    })
    keyStoreTests(get)
    counterStoreTests(get)
    usageStoreTests(get)
    accountStoreTests(get)
    ipBlockStoreTests(get)
    // Read on every failure it reports: an open store that said it was closed would have
    // tollbooth stop reporting its failures and stop waiting for it in close().
    test('closed(), where the storage has it, is undefined while its client is open', () => {
      expect(get().closed?.()).toBeUndefined()
    })
  })
}
