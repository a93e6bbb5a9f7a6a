/**
 * Numbers written again and again into long-lived objects (a counter's expiry, a key's
 * lastUsedAt) go into their field in place. The build keeps `useDefineForClassFields` off so a
 * class field is first written by its constructor with its real value: a field declared
 * without a value starts as `undefined`, and V8 then boxes every number written to it later in
 * a new heap number.
 */

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { counterSlots } from '../../src/storage/counter-slots.js'
import { memoryStorage } from '../../src/storage/memory.js'

const T = Date.UTC(2026, 11, 4, 12)
const state = () => ({ level: 1, at: T })

/** A stored key record of `id` (its hash made from the id). */
const keyRecord = (id: string) => ({
  id,
  hash: id.padEnd(64, 'h'),
  start: 'sk_live_aaaa',
  name: id,
  accountId: 'acct_a',
  kind: 'consumption' as const,
  category: null,
  scopes: [],
  metadata: {},
  active: true,
  createdAt: T,
  expiresAt: null,
  lastUsedAt: null,
  revokedAt: null,
  limits: {},
})

/**
 * Bytes the heap grows by per call of `f`, in optimized code. A write of a number into a
 * field that holds numbers in place allocates nothing; a field declared without a value
 * (`x: number` under `useDefineForClassFields`) is first `undefined`, and V8 then boxes every
 * number written to it in a new heap number: among a million slots, an old object pointing
 * at a young one per write, which every scavenge must visit (`bench/memory-scale.ts`).
 */
function bytesPerCall(f: (i: number) => void, enough: number): number {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  let i = 0
  const loop = (n: number) => {
    for (const end = i + n; i < end; i++) f(i)
  }
  // Optimized code, as a server runs after its first requests (unoptimized code boxes every
  // intermediate double, wherever it goes). The optimizing compiler works beside the loop and
  // may come in late, later still on a machine busy with other tests (one CI run measured 8.8
  // bytes a write after five rounds): rounds go on, with more calls between them, until one
  // measures `enough` or less, for at most 40. Code that boxes by design allocates in every
  // round. 2,000 calls allocate too little to fill the young generation (a collection in a
  // round would hide what it allocated).
  loop(200_000)
  let least = Infinity
  for (let r = 0; r < 40 && least > enough; r++) {
    gc()
    const before = process.memoryUsage().heapUsed
    loop(2000)
    least = Math.min(least, (process.memoryUsage().heapUsed - before) / 2000)
    loop(50_000)
  }
  return least
}

describe('numbers kept in place (no heap number per write)', () => {
  it('a counter slot written again takes its new expiry in place', () => {
    const slots = counterSlots()
    const keys = Array.from({ length: 64 }, (_, i) => `k${i}`)
    // Its own shape (expiry first): one object of the usual shape with a null expiry, anywhere
    // in the process, makes that field hold any value, and box each number this test writes.
    const values = keys.map(() => ({ expiresAt: T + 0.5, state: state() }))
    for (let i = 0; i < keys.length; i++) slots.write(keys[i]!, values[i]!, -1)
    const perWrite = bytesPerCall((i) => {
      const k = keys[i & 63]!
      const v = values[i & 63]!
      v.expiresAt = T + i + 0.5
      slots.write(k, v, slots.find(k))
    }, 2)
    expect(perWrite).toBeLessThan(4)
  })

  it('a key touched again takes its lastUsedAt in place', async () => {
    const { keys } = memoryStorage()
    const ids = Array.from({ length: 64 }, (_, i) => `key_${i}`)
    for (const id of ids) await keys.insert(keyRecord(id))
    const update = [{ id: '', lastUsedAt: 0 }]
    // sign 1: a later time each call (stored); -1: an earlier one (nothing changes).
    const touch = (sign: 1 | -1) => (i: number) => {
      update[0]!.id = ids[i & 63]!
      update[0]!.lastUsedAt = T + sign * (i + 0.5)
      void keys.touch(update)
    }
    // Against touches that change nothing: the promise `touch` returns is the same in both.
    const unchanged = bytesPerCall(touch(-1), 0)
    const stored = bytesPerCall(touch(1), unchanged + 4)
    expect(stored - unchanged).toBeLessThan(8)
  })
})

describe('memory keys: lastUsedAt', () => {
  it('keeps the latest touch, null until the first, through updates and copies', async () => {
    const { keys } = memoryStorage()
    await keys.insert(keyRecord('key_a'))
    expect((await keys.get('key_a'))!.lastUsedAt).toBeNull()
    await keys.touch([{ id: 'key_a', lastUsedAt: T + 5 }])
    await keys.touch([{ id: 'key_a', lastUsedAt: T + 2 }])
    expect((await keys.getByHash('key_a'.padEnd(64, 'h')))!.lastUsedAt).toBe(T + 5)
    expect((await keys.list('acct_a', { limit: 10 }))!.data[0]!.lastUsedAt).toBe(T + 5)
    expect((await keys.update('key_a', { name: 'b' }))!.lastUsedAt).toBe(T + 5)
    // A copy handed out does not change the stored record.
    const copy = (await keys.get('key_a'))!
    copy.lastUsedAt = 0
    expect((await keys.get('key_a'))!.lastUsedAt).toBe(T + 5)
  })
})
