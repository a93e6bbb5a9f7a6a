/**
 * @module limits/ip-block.test
 *
 * Unit tests of the failed-auth guard on the memory store: the block at `limit`, the
 * in-process count that spares the store (its calls counted by a pass-through wrapper around
 * the real store), the proxied limit, two instances sharing one store, and a lift reaching an
 * instance that holds the block.
 */

import { describe, expect, it } from 'vitest'
import { memoryIpBlocks } from '../storage/memory-ip-blocks.js'
import type { IpBlockStore } from '../storage/types.js'
import { createIpGuard, type IpGuardOptions, RECHECK_MS } from './ip-block.js'

const T0 = 1_700_000_000_000
const rethrow = (err: unknown) => {
  throw err
}

/** The real memory store, with its `fail` calls counted. */
function counted(store: IpBlockStore = memoryIpBlocks()) {
  const calls = { fail: 0 }
  const s: IpBlockStore = {
    ...store,
    fail: (...a) => {
      calls.fail++
      return store.fail(...a)
    },
  }
  return { store: s, calls }
}

const opts = (o: Partial<IpGuardOptions> = {}): IpGuardOptions => ({
  limit: 20,
  windowMs: 60_000,
  blockMs: 600_000,
  proxiedLimit: 1000,
  ...o,
})

describe('failed-auth guard', () => {
  it('blocks an IP at its limit-th failure within the window, for blockMs', async () => {
    const g = createIpGuard(opts({ limit: 3 }), memoryIpBlocks(), rethrow)
    expect(await g.fail('1.1.1.1', T0, false)).toBe(0)
    expect(await g.fail('1.1.1.1', T0 + 1, false)).toBe(0)
    expect(g.blocked('1.1.1.1', T0 + 2)).toBe(0)
    expect(await g.fail('1.1.1.1', T0 + 2, false)).toBe(600_000)
    expect(g.blocked('1.1.1.1', T0 + 600_001)).toBe(1)
    expect(g.blocked('1.1.1.1', T0 + 600_002)).toBe(0)
  })

  it('counts in process: the store hears of an address only from ceil(limit / 2) failures', async () => {
    const { store, calls } = counted()
    const g = createIpGuard(opts(), store, rethrow)
    // 1,000 addresses, 9 failures each: nothing reaches the store.
    for (let i = 0; i < 1000; i++)
      for (let k = 0; k < 9; k++)
        expect(await g.fail(`10.0.${i >> 8}.${i & 255}`, T0, false)).toBe(0)
    expect(calls.fail).toBe(0)
    // One address that keeps failing: the store is told at its 10th failure (with all ten)
    // and at each one after, and it is blocked at the 20th, as without the local count.
    for (let k = 1; k <= 19; k++) expect(await g.fail('192.0.2.1', T0, false)).toBe(0)
    expect(calls.fail).toBe(10)
    expect(await g.fail('192.0.2.1', T0, false)).toBe(600_000)
    expect(calls.fail).toBe(11)
    // A blocked address costs the store nothing more.
    expect(g.blocked('192.0.2.1', T0 + 1)).toBe(599_999)
    expect(calls.fail).toBe(11)
    expect(await store.get('192.0.2.1', T0)).toEqual({ ip: '192.0.2.1', until: T0 + 600_000 })
  })

  it('counts each IP on its own, and forgets failures older than the window', async () => {
    const g = createIpGuard(opts({ limit: 2 }), memoryIpBlocks(), rethrow)
    await g.fail('1.1.1.1', T0, false)
    expect(await g.fail('2.2.2.2', T0, false)).toBe(0)
    expect(await g.fail('1.1.1.1', T0 + 60_000, false)).toBe(0)
    expect(await g.fail('1.1.1.1', T0 + 60_001, false)).toBe(600_000)
    expect(g.blocked('2.2.2.2', T0 + 60_002)).toBe(0)
  })

  it('blocks at the first failure with a limit of 1', async () => {
    const g = createIpGuard(opts({ limit: 1 }), memoryIpBlocks(), rethrow)
    expect(await g.fail('1.1.1.1', T0, false)).toBe(600_000)
  })

  it('blocks a proxied address only at proxiedLimit', async () => {
    const g = createIpGuard(opts({ limit: 3, proxiedLimit: 60 }), memoryIpBlocks(), rethrow)
    for (let i = 1; i < 60; i++) expect(await g.fail('10.0.0.1', T0, true)).toBe(0)
    expect(await g.fail('10.0.0.1', T0, true)).toBe(600_000)
  })

  it('blocks an address failing on two instances that share the store', async () => {
    const shared = memoryIpBlocks()
    const a = createIpGuard(opts(), shared, rethrow)
    const b = createIpGuard(opts(), shared, rethrow)
    let blockedAt = 0
    for (let i = 1; i <= 40 && !blockedAt; i++) {
      const ms = await (i % 2 ? a : b).fail('198.51.100.4', T0 + i, false)
      if (ms > 0) blockedAt = i
    }
    expect(blockedAt).toBe(20)
    // The instance that did not decide learns of the block at its next failure.
    const other = blockedAt % 2 ? b : a
    expect(await other.fail('198.51.100.4', T0 + 50, false)).toBeGreaterThan(0)
    expect(other.blocked('198.51.100.4', T0 + 51)).toBeGreaterThan(0)
  })

  it('ends a held block on another instance within RECHECK_MS of a lift', async () => {
    const shared = memoryIpBlocks()
    const a = createIpGuard(opts({ limit: 1 }), shared, rethrow)
    const b = createIpGuard(opts({ limit: 1 }), shared, rethrow)
    await a.fail('203.0.113.9', T0, false)
    expect(await b.fail('203.0.113.9', T0, false)).toBe(600_000)
    expect(await b.lift('203.0.113.9', T0 + 1)).toBe(true)
    expect(b.blocked('203.0.113.9', T0 + 2)).toBe(0)
    expect(a.blocked('203.0.113.9', T0 + 2)).toBeGreaterThan(0)
    // Re-read in the background once RECHECK_MS has passed; still refused on that request.
    expect(a.blocked('203.0.113.9', T0 + RECHECK_MS)).toBeGreaterThan(0)
    await new Promise((r) => setTimeout(r, 0))
    expect(a.blocked('203.0.113.9', T0 + RECHECK_MS + 1)).toBe(0)
    expect(await a.lift('203.0.113.9', T0 + 2)).toBe(false)
  })
})
