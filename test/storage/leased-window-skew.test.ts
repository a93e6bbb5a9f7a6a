/**
 * @module test/storage/leased-window-skew
 *
 * A window lease with no record of its charge (a key without a hash tag, or two quotas in one
 * request) gives its unused units back with a negative `add`, sent while its holder's clock is
 * still in the bucket it charged. Under clocks apart, another instance's clock can already be
 * in the next bucket and have counted there: the store's newest bucket is then newer than the
 * one charged. A negative `add` took units back from the newest bucket, so the give-back freed
 * capacity in a bucket that outlives the one the units were counted in: once that one had left
 * the window, the window counted fewer units than were admitted in it, and admitted that many
 * beyond its limit. Now a negative `add` takes units back from the bucket of its own time, or
 * the first after it when there is none (as a cancel does from its `at`): the bucket charged,
 * or an older one, never a newer one.
 *
 * Injected clocks, on each of the four stores: instance A (true time) leases a quota of 100 in
 * 10 s buckets (20 s window); instance B (a plain store client, 1.5 s ahead) counts 60 in the
 * next bucket while A is still in the first; A's lease then ends and gives back. Two buckets
 * later the window holds only B's bucket: it must count 60 and admit exactly 40 more.
 */

import { describe, expect, it } from 'vitest'
import { leasedCounters } from '../../src/storage/leased-counters.js'
import type { Check } from '../../src/storage/types.js'
import { LEASE, T0 } from '../support/leases.js'
import { fourStores } from '../support/stores.js'

const stores = await fourStores('lease-window-skew')

const BUCKET = 10_000
const quota = (cost: number): Extract<Check, { type: 'window' }> => ({
  type: 'window',
  // No hash tag: the lease's charge has no record, its give-back is a negative add.
  key: 'acct_window_skew:q:w',
  name: 'w',
  limit: 100,
  windowMs: 2 * BUCKET,
  bucketMs: BUCKET,
  cost,
})

describe.each(Object.entries(stores))(
  'a window lease given back under clocks apart: %s',
  (_, make) => {
    it.skipIf(!make)(
      'takes the units back from the bucket charged, not from a newer one: the window never admits beyond its limit',
      async () => {
        const storage = await make!()
        const inner = storage.counters
        // T0 is a bucket boundary: A's bucket is b = T0 / BUCKET.
        const a = leasedCounters(inner, { ...LEASE, maxShare: 0.5 })
        let admittedA = 0
        for (let i = 0; i < 10; i++)
          if ((await a.consume([quota(1)], T0 + 1000 + i)).allowed) admittedA++
        expect(admittedA).toBe(10)
        expect(a.stats().localAdmissions, 'answered from a lease').toBeGreaterThan(0)
        expect(a.stats().parkedUnits, 'a lease with unused units').toBeGreaterThan(0)

        // B's clock, 1.5 s ahead, is in bucket b + 1 already: it counts 60 there.
        const t2 = T0 + 9_000
        expect((await inner.consume([quota(60)], t2 + 1_500)).allowed).toBe(true)
        // A's lease ends, A's clock still in b: its unused units go back.
        await a.flush(t2, true)
        const unused = a.stats().returnedUnits
        expect(unused, 'units given back').toBeGreaterThan(0)

        // Two buckets later the window (b + 1 … b + 3) holds B's 60 alone.
        const t3 = T0 + 3 * BUCKET + 1_000
        const counted = (await inner.consume([quota(0)], t3)).results[0]!.used
        let more = 0
        while ((await inner.consume([quota(1)], t3)).allowed) more++
        // Before: 60 − the units A gave back (A's lease's unused units taken from B's bucket),
        // and the window then admitted that many beyond 100.
        expect(counted, `counted in the window after ${unused} units were given back`).toBe(60)
        expect(60 + more, 'admitted in the window').toBe(100)
        await storage.close?.()
      },
      30_000,
    )
  },
)
