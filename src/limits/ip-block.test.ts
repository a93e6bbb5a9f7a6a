/**
 * @module limits/ip-block.test
 *
 * Unit tests of the failed-auth guard on the memory store's counters.
 */

import { describe, expect, it } from 'vitest'
import { memoryStorage } from '../storage/memory.js'
import { createIpGuard } from './ip-block.js'

const T0 = 1_700_000_000_000

describe('failed-auth guard', () => {
  it('blocks an IP at its limit-th failure within the window, for blockMs', async () => {
    const g = createIpGuard(
      { limit: 3, windowMs: 60_000, blockMs: 600_000 },
      memoryStorage().counters,
    )
    expect(await g.fail('1.1.1.1', T0)).toBe(false)
    expect(await g.fail('1.1.1.1', T0 + 1)).toBe(false)
    expect(g.blocked('1.1.1.1', T0 + 2)).toBe(false)
    expect(await g.fail('1.1.1.1', T0 + 2)).toBe(true)
    expect(g.blocked('1.1.1.1', T0 + 600_001)).toBe(true)
    expect(g.blocked('1.1.1.1', T0 + 600_002)).toBe(false)
  })

  it('counts each IP on its own', async () => {
    const g = createIpGuard({ limit: 2, windowMs: 60_000, blockMs: 1000 }, memoryStorage().counters)
    await g.fail('1.1.1.1', T0)
    expect(await g.fail('2.2.2.2', T0)).toBe(false)
    expect(await g.fail('1.1.1.1', T0)).toBe(true)
    expect(g.blocked('2.2.2.2', T0)).toBe(false)
  })

  it('forgets failures older than the window', async () => {
    const g = createIpGuard({ limit: 2, windowMs: 60_000, blockMs: 1000 }, memoryStorage().counters)
    await g.fail('1.1.1.1', T0)
    // The window is kept in 12 buckets of 5 s: a failure is forgotten at most 5 s late.
    expect(await g.fail('1.1.1.1', T0 + 65_000)).toBe(false)
  })

  it('blocks at the first failure with a limit of 1', async () => {
    const g = createIpGuard({ limit: 1, windowMs: 60_000, blockMs: 1000 }, memoryStorage().counters)
    expect(await g.fail('1.1.1.1', T0)).toBe(true)
  })
})
