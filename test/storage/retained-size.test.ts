/**
 * What the memory store keeps per counter and per account tally stays close to its figures,
 * on the V8 heap (which every scavenge walks, at a cost that grows with its size:
 * `bench/memory-scale.ts`) and off it. Counters and tallies are rows of numbers in typed
 * arrays, with a map entry each on the heap; as objects they were 288 and 282 bytes (543 and
 * 554 with arrays grown by `push`, which takes room for 17 elements at the first). And the key
 * cache keeps what a request reads of a key, not a copy of its record.
 */

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { createTollbooth } from '../../src/index.js'
import { createKeyHasher } from '../../src/keys/hash.js'
import { newId } from '../../src/keys/ids.js'
import { compileKeyLimits } from '../../src/limits/admission.js'
import { AccountService, creditKey } from '../../src/metering/accounts.js'
import { resolveOptions } from '../../src/options.js'
import { memoryStorage } from '../../src/storage/memory.js'
import type { Check, KeyRecord } from '../../src/storage/types.js'
import { usageEvent } from '../support/core.js'

const T = Date.UTC(2026, 11, 5, 12)
const N = 20_000

/**
 * Heap bytes retained per item by `make(i)` for N items (strings made before); the bytes of
 * array buffers (rows kept off the heap) in `offHeap`.
 */
let offHeap = 0
async function retainedPerItem(make: (i: number) => unknown | Promise<unknown>): Promise<number> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heap = () => {
    gc()
    gc()
    return process.memoryUsage()
  }
  const before = heap()
  for (let i = 0; i < N; i++) await make(i)
  const after = heap()
  offHeap = (after.arrayBuffers - before.arrayBuffers) / N
  return (after.heapUsed - before.heapUsed) / N
}

describe('memory store: retained size', () => {
  it('a window counter of one bucket is a row off the heap, found by an index off it too', async () => {
    const checks: Check[] = Array.from({ length: N }, (_, i) => ({
      type: 'window',
      key: `{acct_${i}}:k:key_${i}:q:daily`.split('').join(''),
      name: 'daily',
      limit: 1000,
      windowMs: 86_400_000,
      bucketMs: 3_600_000,
      cost: 1,
    }))
    // Measured on a new store up to three times, until one reads under the bound: the first
    // file's first calls may meet the optimizing compiler's work on a busy machine (its code
    // and metadata on the heap: 63 bytes a counter once in CI, 39-40 otherwise).
    let perCounter = Infinity
    let rowBytes = Infinity
    for (let attempt = 0; attempt < 3 && perCounter >= 50; attempt++) {
      const storage = memoryStorage()
      perCounter = await retainedPerItem((i) => storage.counters.consume([checks[i]!], T))
      rowBytes = offHeap
    }
    // On the heap: the expiry queue's entry and the row's key: 39 bytes (70 with a Map from
    // the key to its row). Kept as objects, a slot, its state and two one-element arrays were
    // 288 bytes (543 with the arrays grown by push). Off it: a row of 64 bytes, in an array
    // grown by doubling, and the index's positions (2 to 4 of 8 bytes) and hash (4 bytes).
    expect(perCounter).toBeLessThan(50)
    expect(rowBytes).toBeLessThan(2 * (64 + 4 * 8 + 4))
  })

  it("an account's hour tally is a row off the heap, and a map entry on it", async () => {
    const storage = memoryStorage({ maxEvents: 1 })
    const events = Array.from({ length: N }, (_, i) =>
      usageEvent(i, {
        accountId: `acct_${i}`.split('').join(''),
        time: T,
        ttfbMs: 1,
        ip: null,
        method: 'POST',
        path: '/',
      }),
    )
    const perAccount = await retainedPerItem((i) => storage.usage.record([events[i]!]))
    const rowBytes = offHeap
    // On the heap: the map entry of the account's first row. Kept as objects, the account's
    // tallies, its hour's and two two-element arrays were 282 bytes (554 with the arrays grown
    // by push). Off it: a row of 32 bytes and a link of 4, in arrays grown by doubling.
    expect(perAccount).toBeLessThan(100)
    expect(rowBytes).toBeLessThan(2 * 36)
  })

  it('a cached key keeps no copy of its record', async () => {
    // One account, keys with a daily quota, a route that costs nothing: the first request of
    // each key adds its cache entry (and the memo's), and little else.
    const storage = memoryStorage({ maxEvents: 1 })
    const options = {
      secret: 'retained-size-secret-retained-size-secret',
      storage,
      failedAuth: false as const,
    }
    const tb = createTollbooth({ ...options, cache: { ttlMs: 3_600_000, max: N } })
    // Every key used once first by an instance that caches nothing: what a first request
    // leaves in the store (its lastUsedAt, the account) is there before the measure.
    const cold = createTollbooth({ ...options, cache: false })
    const keys: string[] = []
    for (let i = 0; i < N; i++)
      keys.push(
        (
          await tb.keys.create({
            accountId: 'acct_1',
            metadata: { team: `t${i}` },
            limits: { quotas: { daily: 1e9 } },
          })
        ).key,
      )
    const use = async (t: typeof tb, key: string) => {
      const d = await t.authenticate(
        { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'POST', path: '/' },
        t.route({ cost: 0 }),
      )
      if (!d.allowed) throw new Error(`refused: ${d.status}`)
      await t.settle(d, { status: 200 })
    }
    for (const key of keys) await use(cold, key)
    await cold.flush()
    const perEntry = await retainedPerItem(async (i) => {
      await use(tb, keys[i]!)
      if (i === N - 1) await tb.flush()
    })
    await tb.close()
    await cold.close()
    // Entry, compiled quota, the key's face and the memo's slot: 569 bytes, of which 16 are when
    // the entry last wrote lastUsedAt and its usage tally's place (617 with its three times as
    // absolute milliseconds, each a double in a box of its own beside the entry; 649 with
    // the compiled quota a template holding its check, two objects; 688 with
    // the compiled limits in an array beside the entry rather than in it; 1,278 with
    // a copy of the record, its limits and scopes, which a request read as three more cache
    // misses; 1,076 with a slot beside the entry and the memo keeping a slice of the header;
    // 1,028 with the LRU keyed by the hash computed from the request, not the record's own;
    // 948 with the template list grown by push, room for 17, and an empty list of scopes of
    // the face's own; 785 with the memo a Map holding a copy of each key string).
    expect(perEntry).toBeLessThan(590)
    // The memo's row of the key's characters and its index, off the heap.
    expect(offHeap).toBeLessThan(140)
  })

  it('a stored key and a stored account with no metadata share one empty object', async () => {
    const tb = createTollbooth({
      secret: 'retained-size-secret-retained-size-secret',
      storage: memoryStorage({ maxEvents: 1 }),
    })
    const storage = tb.storage
    const accounts = Array.from({ length: N }, (_, i) => `acct_${i}`.split('').join(''))
    const perKey = await retainedPerItem(() => tb.keys.create({ accountId: 'acct_0' }))
    const perAccount = await retainedPerItem((i) =>
      storage.accounts.ensure({
        id: accounts[i]!,
        tier: null,
        balance: 0,
        carryover: 0,
        periodStart: T,
        tierExpiresAt: null,
        billingCustomerId: null,
        metadata: {},
      }),
    )
    await tb.close()
    // The record with its id, hash, start and name, and its places in the indexes by id and by
    // hash: 424 bytes (506 with a Map by id and one by hash, 640 with an empty metadata object
    // of its own, 585 with empty limits and scopes of its own); the account and its map entry:
    // 152 (208).
    expect(perKey).toBeLessThan(460)
    expect(perAccount).toBeLessThan(180)
  })

  it('keys with the same limits share one frozen copy of them, and a read is its own', async () => {
    const tb = createTollbooth({
      secret: 'retained-size-secret-retained-size-secret',
      storage: memoryStorage({ maxEvents: 1 }),
    })
    const limits = { quotas: { daily: 1e9 }, rateLimits: [{ limit: 1e9, windowMs: 60_000 }] }
    const created: string[] = []
    const perKey = await retainedPerItem(async () => {
      created.push((await tb.keys.create({ accountId: 'acct_0', limits })).record.id)
    })
    // What a read gives is a copy: changing it changes nothing stored, and throws nothing.
    const read = (await tb.storage.keys.get(created[0]!))!
    expect(Object.isFrozen(read.limits)).toBe(false)
    read.limits.quotas!.daily = 5
    read.limits.rateLimits!.push({ limit: 1, windowMs: 1000 })
    expect((await tb.storage.keys.get(created[0]!))!.limits).toEqual(limits)
    expect((await tb.storage.keys.get(created[1]!))!.limits).toEqual(limits)
    await tb.close()
    // The record and the maps by id and by hash, its limits shared: 517 bytes (768 with a
    // copy of the limits per key: five objects).
    expect(perKey).toBeLessThan(560)
  })

  it("an account's admission view keeps no copy of the account's record", async () => {
    const storage = memoryStorage({ maxEvents: 1 })
    const o = resolveOptions({
      secret: 'retained-size-secret-retained-size-secret',
      storage,
      plans: { pro: { monthlyCredits: 100 } },
      defaultTier: 'pro',
      cache: { ttlMs: 3_600_000, negativeTtlMs: 60_000, max: N },
    })
    const service = new AccountService(storage, o, () => T)
    const accounts = Array.from({ length: N }, (_, i) => `acct_${i}`.split('').join(''))
    for (const id of accounts) await service.load(id, T)
    for (const id of accounts) service.invalidate(id)
    // The view with its cache fields, its credit counter's name and its cache entry: 214 bytes
    // (246 with its two times as absolute milliseconds, each a boxed double; 447 with a copy
    // of the record and its metadata, which only the management read used; 278 with the cache
    // fields in a holder of their own beside the view).
    const perView = await retainedPerItem((i) => service.load(accounts[i]!, T))
    expect(perView).toBeLessThan(230)
  })

  it('names that live as long as a key are written flat, not as ropes', async () => {
    // A template literal or `+=` makes a rope of its parts (a V8 cons string of 32 bytes per
    // joint, holding each part): kept as long as the key, its counter or its cache entry.
    // Written flat, a name is its characters and one header.
    const hash = createKeyHasher('retained-size-secret-retained-size-secret')
    const limits = { quotas: { daily: 10 }, rateLimits: [{ limit: 5, windowMs: 1000 }] }
    const period = { id: '2026-12' } as Parameters<typeof creditKey>[1]
    const accounts = Array.from({ length: N }, (_, i) => `acct_${i}`.split('').join(''))
    const keys = Array.from({ length: N }, (_, i) => `sk_live_${i}`.split('').join(''))
    const names: string[] = []
    const perKey = await retainedPerItem((i) => {
      const id = newId('key', T + i)
      names.push(id, hash(keys[i]!), creditKey(accounts[i]!, period))
      for (const t of compileKeyLimits({ id, accountId: accounts[i]!, limits } as KeyRecord))
        names.push(t.key)
    })
    // Five names (24, 64, 24, 46 and 51 characters) and their places in `names`: 371 bytes
    // flat, 1,480 as ropes.
    expect(perKey).toBeLessThan(700)
  })
})
