/**
 * @module limits/ip-block
 *
 * The failed-auth guard (pipeline step 3): an address that fails authentication `limit`
 * times within `windowMs` is refused with 403 `IP temporarily blocked` for `blockMs`, before
 * any key lookup. Keys are 160-bit random, so the guard is a brake on floods and on stuffing
 * with leaked keys, never what makes keys unguessable.
 *
 * Failures are counted in this process first: an address reaches the shared store
 * (`storage.ipBlocks`) only once it has failed `ceil(limit / 2)` times here within the window,
 * with everything counted so far, and then at each further failure. So a malformed or
 * guessed key from a new address costs no storage call, while on one instance an address is
 * still blocked at exactly `limit`. A block decided in the store reaches another instance
 * when that address crosses the threshold there (at most `ceil(limit / 2) - 1` more failures
 * per instance and window). Checking a block costs no I/O: blocks are held in memory, and a
 * held block is re-read from the store in the background, on a request of that address at
 * least {@link RECHECK_MS} after the last read, so a block lifted on one instance ends on the
 * others from the request after that one.
 */

import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import { pageSize, text } from '../input.js'
import { ipAddress } from '../request.js'
import type { IpBlock, IpBlockStore, ListOptions, Page } from '../storage/types.js'

const IP_MESSAGE = 'must be an IPv4 or IPv6 address, e.g. 203.0.113.7 or 2001:db8::1'

/**
 * An address as `tb.ipBlocks` (and `/ip-blocks/:ip`) take it, to the form the guard keys
 * blocks by ({@link ipAddress}): `::FFFF:203.0.113.7` finds the block of `203.0.113.7`.
 */
export const ipAddressSchema = z.string({ error: IP_MESSAGE }).transform((v, ctx) => {
  const ip = ipAddress(v)
  if (ip === null) {
    ctx.addIssue({ code: 'custom', message: IP_MESSAGE })
    return z.NEVER
  }
  return ip
})

/**
 * `tb.ipBlocks.list`'s options: at most 100 blocks a page, the cursor a page gave (an
 * address, so at most 64 characters of valid Unicode without NUL).
 */
export const ipBlocksListSchema = z
  .object({
    limit: pageSize.default(100),
    cursor: text(z.string().min(1).max(64)).nullable().default(null),
  })
  .strict()

export interface IpGuardOptions {
  limit: number
  windowMs: number
  blockMs: number
  /** The limit for requests that may come through an untrusted proxy (see `TrustProxy`). */
  proxiedLimit: number
}

export interface IpGuard {
  /** Milliseconds until `ip`'s block ends, as this instance knows it; 0 when not blocked. */
  blocked(ip: string, now: number): number
  /**
   * Counts one failure of `ip` (`proxied`: counted against `proxiedLimit`); resolves to the
   * milliseconds of the block it is now under, or 0.
   */
  fail(ip: string, now: number, proxied: boolean): Promise<number>
  /** Ends `ip`'s block here and in the store; false when the store had none. */
  lift(ip: string, now: number): Promise<boolean>
  /** The blocks in force, from the store. */
  list(now: number, options: ListOptions): Promise<Page<IpBlock>>
  /** `ip`'s block in force, from the store. */
  get(ip: string, now: number): Promise<IpBlock | null>
}

/** How often a held block is checked against the store (a lift on another instance). */
export const RECHECK_MS = 5_000

/** Addresses counted in process, and blocks held, at most (about 100 bytes each). */
const MAX_ADDRESSES = 100_000

interface Count {
  start: number
  /** Failures in the window. */
  n: number
  /** How many of them the store has been told of. */
  sent: number
}

interface Held {
  until: number
  checkedAt: number
}

export function createIpGuard(
  options: IpGuardOptions,
  store: IpBlockStore,
  report: (err: unknown) => void,
): IpGuard {
  const counts = new LRUCache<string, Count>({ max: MAX_ADDRESSES })
  const held = new LRUCache<string, Held>({ max: MAX_ADDRESSES })

  const recheck = (ip: string, h: Held, now: number) => {
    h.checkedAt = now
    store.get(ip, now).then((b) => {
      if (held.get(ip) !== h) return
      if (b === null) held.delete(ip)
      else h.until = b.until
    }, report)
  }

  return {
    blocked(ip, now) {
      const h = held.get(ip)
      if (h === undefined) return 0
      if (h.until <= now) {
        held.delete(ip)
        return 0
      }
      if (now - h.checkedAt >= RECHECK_MS) recheck(ip, h, now)
      return h.until - now
    },
    async fail(ip, now, proxied) {
      const limit = proxied ? options.proxiedLimit : options.limit
      let c = counts.get(ip)
      if (!c || now - c.start >= options.windowMs) {
        c = { start: now, n: 0, sent: 0 }
        counts.set(ip, c)
      }
      c.n++
      if (c.n < Math.ceil(limit / 2)) return 0
      const count = c.n - c.sent
      c.sent = c.n
      let until: number | null
      try {
        until = await store.fail(ip, count, now, {
          limit,
          windowMs: options.windowMs,
          blockMs: options.blockMs,
        })
      } catch (err) {
        c.sent -= count
        throw err
      }
      if (until === null || until <= now) return 0
      counts.delete(ip)
      held.set(ip, { until, checkedAt: now })
      return until - now
    },
    async lift(ip, now) {
      held.delete(ip)
      counts.delete(ip)
      return store.lift(ip, now)
    },
    list: (now, o) => store.list(now, o),
    get: (ip, now) => store.get(ip, now),
  }
}
