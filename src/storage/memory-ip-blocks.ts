/**
 * @module storage/memory-ip-blocks
 *
 * The failed-authentication counts and blocks of `memoryStorage()`. Counts sit in an LRU
 * bounded by entries (an address past it starts over, as if its window had ended); blocks in
 * a map in the order they were made, which with one `blockMs` is the order they end, so each
 * new block first drops the ones already over.
 */

import { LRUCache } from 'lru-cache'
import type { IpBlock, IpBlockStore, Page } from './types.js'

interface Count {
  start: number
  n: number
}

/** Entries of the count LRU: about 100 bytes each. */
const MAX_COUNTS = 100_000
const SWEEP = 16

export function memoryIpBlocks(): IpBlockStore {
  // Made at the first failure: an LRU allocates its slots for `max` entries up front (about
  // 2 MB and 20 ms here), which a storage that never sees a failed key should not pay.
  let lru: LRUCache<string, Count> | undefined
  const counts = () => {
    lru ??= new LRUCache<string, Count>({ max: MAX_COUNTS })
    return lru
  }
  const blocks = new Map<string, number>()

  const sweep = (now: number) => {
    let n = 0
    for (const [ip, until] of blocks) {
      if (until > now || ++n > SWEEP) break
      blocks.delete(ip)
    }
  }
  const inForce = (ip: string, now: number): number | null => {
    const until = blocks.get(ip)
    if (until === undefined) return null
    if (until > now) return until
    blocks.delete(ip)
    return null
  }

  return {
    async fail(ip, count, now, rule) {
      const until = inForce(ip, now)
      if (until !== null) return until
      let c = counts().get(ip)
      if (!c || now - c.start >= rule.windowMs) {
        c = { start: now, n: 0 }
        counts().set(ip, c)
      }
      c.n += count
      if (c.n < rule.limit) return null
      counts().delete(ip)
      sweep(now)
      const end = now + rule.blockMs
      blocks.set(ip, end)
      return end
    },
    async get(ip, now) {
      const until = inForce(ip, now)
      return until === null ? null : { ip, until }
    },
    async list(now, { limit, cursor }): Promise<Page<IpBlock>> {
      const live: IpBlock[] = []
      for (const [ip, until] of blocks) {
        if (until > now && (!cursor || ip > cursor)) live.push({ ip, until })
      }
      live.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))
      const data = live.slice(0, limit)
      return { data, nextCursor: live.length > limit ? data[data.length - 1]!.ip : null }
    },
    async lift(ip, now) {
      lru?.delete(ip)
      const was = inForce(ip, now) !== null
      blocks.delete(ip)
      return was
    },
  }
}
