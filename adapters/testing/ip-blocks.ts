/**
 * @module tollbooth/testing/ip-blocks
 *
 * Conformance tests of `IpBlockStore`: failures add up within a window and block at the
 * limit, a block in force is returned as it is, windows and blocks end, concurrent failures
 * all count, blocks list by address with a cursor, and a lift ends a block and its count.
 * Addresses are random IPv6 ones, so a store shared with other tests still passes (lists
 * are filtered to the test's own addresses).
 */

import { describe, expect, it } from 'vitest'
import type { IpBlock } from '../../src/internal.js'
import { type GetStorage, randomId } from './fixtures.js'

const T0 = 1_900_000_000_000
const RULE = { limit: 5, windowMs: 60_000, blockMs: 600_000 }

/** A random address in the documentation range 2001:db8::/32. */
function randomIp(): string {
  const hex = randomId(12)
    .split('')
    .map((c) => (c.charCodeAt(0) % 16).toString(16))
    .join('')
  return `2001:db8:${hex.slice(0, 4)}:${hex.slice(4, 8)}::${hex.slice(8, 12)}`
}

export function ipBlockStoreTests(get: GetStorage): void {
  describe('ipBlocks', () => {
    it('adds failures within the window and blocks at the limit, until now + blockMs', async () => {
      const ip = randomIp()
      const s = get().ipBlocks
      expect(await s.fail(ip, 3, T0, RULE)).toBeNull()
      expect(await s.get(ip, T0)).toBeNull()
      expect(await s.fail(ip, 1, T0 + 10, RULE)).toBeNull()
      expect(await s.fail(ip, 1, T0 + 20, RULE)).toBe(T0 + 20 + 600_000)
      expect(await s.get(ip, T0 + 30)).toEqual({ ip, until: T0 + 600_020 })
      // In force: returned as it is, not extended.
      expect(await s.fail(ip, 10, T0 + 40, RULE)).toBe(T0 + 600_020)
      expect(await s.get(ip, T0 + 600_020)).toBeNull()
    })

    it('blocks at once when one call brings the limit', async () => {
      const ip = randomIp()
      expect(await get().ipBlocks.fail(ip, 5, T0, RULE)).toBe(T0 + 600_000)
    })

    it('starts a new window once windowMs has passed, and a new count after a block', async () => {
      const ip = randomIp()
      const s = get().ipBlocks
      expect(await s.fail(ip, 4, T0, RULE)).toBeNull()
      expect(await s.fail(ip, 4, T0 + 60_000, RULE)).toBeNull()
      expect(await s.fail(ip, 1, T0 + 60_001, RULE)).toBe(T0 + 660_001)
      expect(await s.fail(ip, 4, T0 + 660_001, RULE)).toBeNull()
    })

    it('counts every one of 50 concurrent failures', async () => {
      const ip = randomIp()
      const rule = { ...RULE, limit: 50 }
      const all = await Promise.all(
        Array.from({ length: 50 }, () => get().ipBlocks.fail(ip, 1, T0, rule)),
      )
      expect(all.filter((u) => u !== null)).toHaveLength(1)
      expect(await get().ipBlocks.get(ip, T0)).toEqual({ ip, until: T0 + 600_000 })
    })

    it('lists blocks in force by address, page by page', async () => {
      const mine = new Set<string>()
      for (let i = 0; i < 5; i++) {
        const ip = randomIp()
        mine.add(ip)
        await get().ipBlocks.fail(ip, 5, T0 + i, RULE)
      }
      const ended = randomIp()
      await get().ipBlocks.fail(ended, 5, T0 - 600_000, RULE)
      const seen: IpBlock[] = []
      let cursor: string | null = null
      for (let page = 0; page < 1000; page++) {
        const r = await get().ipBlocks.list(T0 + 10, { limit: 2, cursor })
        expect(r.data.length).toBeLessThanOrEqual(2)
        seen.push(...r.data)
        cursor = r.nextCursor
        if (cursor === null) break
      }
      const ips = seen.map((b) => b.ip)
      expect([...ips].sort()).toEqual(ips)
      expect(new Set(ips).size).toBe(ips.length)
      expect(ips).not.toContain(ended)
      const ours = seen.filter((b) => mine.has(b.ip))
      expect(ours.map((b) => b.ip)).toEqual([...mine].sort())
      for (const b of ours) expect(b.until).toBeGreaterThan(T0 + 599_999)
    })

    it('lifts a block and forgets the failures; false when none was in force', async () => {
      const ip = randomIp()
      const s = get().ipBlocks
      await s.fail(ip, 5, T0, RULE)
      expect(await s.lift(ip, T0 + 1)).toBe(true)
      expect(await s.get(ip, T0 + 1)).toBeNull()
      expect(await s.lift(ip, T0 + 1)).toBe(false)
      const counting = randomIp()
      await s.fail(counting, 4, T0, RULE)
      expect(await s.lift(counting, T0)).toBe(false)
      expect(await s.fail(counting, 1, T0, RULE)).toBeNull()
    })
  })
}
