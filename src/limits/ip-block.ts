/**
 * @module limits/ip-block
 *
 * The failed-auth guard (pipeline step 3): an IP that fails authentication `limit` times
 * within `windowMs` is refused with 403 `IP temporarily blocked` for `blockMs`, before any
 * key lookup, so credential stuffing costs the attacker and not the storage.
 *
 * Failures are counted in the shared counters (every instance sees them); the block itself
 * is held in each instance's memory, so an admitted request costs no extra I/O. Another
 * instance learns the block at that IP's next failure there.
 */

import { LRUCache } from 'lru-cache'
import type { CounterStore } from '../storage/types.js'

export interface IpGuardOptions {
  limit: number
  windowMs: number
  blockMs: number
}

export interface IpGuard {
  /** True while `ip` is blocked on this instance. */
  blocked(ip: string, now: number): boolean
  /** Counts one failure; returns true when the IP is now blocked. */
  fail(ip: string, now: number): Promise<boolean>
}

export function createIpGuard(options: IpGuardOptions, counters: CounterStore): IpGuard {
  const blockedUntil = new LRUCache<string, number>({ max: 100_000 })
  const bucketMs = Math.max(1, Math.ceil(options.windowMs / 12))
  return {
    blocked(ip, now) {
      const until = blockedUntil.get(ip)
      if (until === undefined) return false
      if (until > now) return true
      blockedUntil.delete(ip)
      return false
    },
    async fail(ip, now) {
      const r = await counters.consume(
        [
          {
            type: 'window',
            key: `{ip:${ip}}:authfail`,
            name: 'failed-auth',
            limit: options.limit - 1,
            windowMs: options.windowMs,
            bucketMs,
            cost: 1,
          },
        ],
        now,
      )
      if (r.allowed) return false
      blockedUntil.set(ip, now + options.blockMs)
      return true
    },
  }
}
