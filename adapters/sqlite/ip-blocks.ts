/**
 * @module sqlite/ip-blocks
 *
 * The failed-auth guard's counts and blocks in `ip_blocks`: `fail` reads and writes the
 * address's row in one `BEGIN IMMEDIATE` transaction, so failures counted by several processes
 * on one file all count. Rows that mean nothing any more are deleted every
 * {@link PRUNE_EVERY} calls of `fail` and before each list.
 */

import type { IpBlock, IpBlockStore } from '../../src/internal.js'
import type { Db } from './db.js'

const PRUNE_EVERY = 64

interface Row {
  window_start: number
  failures: number
  blocked_until: number | null
}

export function sqliteIpBlocks(d: Db): IpBlockStore {
  const prune = (now: number) => d.stmt('DELETE FROM ip_blocks WHERE expires_at <= ?').run(now)
  let calls = 0
  return {
    async fail(ip, count, now, rule) {
      return d.tx(() => {
        if (++calls % PRUNE_EVERY === 0) prune(now)
        const r = d
          .stmt('SELECT window_start, failures, blocked_until FROM ip_blocks WHERE ip = ?')
          .get(ip) as Row | undefined
        if (r?.blocked_until != null && r.blocked_until > now) return r.blocked_until
        // A new window after a block, or once the last one is over.
        const fresh = !r || r.blocked_until !== null || r.window_start + rule.windowMs <= now
        const start = fresh ? now : r.window_start
        const n = (fresh ? 0 : r.failures) + count
        const blocked = n >= rule.limit
        const until = blocked ? now + rule.blockMs : null
        d.stmt(
          `INSERT INTO ip_blocks (ip, window_start, failures, blocked_until, expires_at)
           VALUES (@ip, @start, @n, @until, @expires)
           ON CONFLICT (ip) DO UPDATE SET window_start = excluded.window_start,
             failures = excluded.failures, blocked_until = excluded.blocked_until,
             expires_at = excluded.expires_at`,
        ).run({
          ip,
          start,
          n: blocked ? 0 : n,
          until,
          expires: until ?? start + rule.windowMs,
        })
        return until
      })
    },
    async get(ip, now) {
      const r = (await d.run(() =>
        d
          .stmt('SELECT blocked_until FROM ip_blocks WHERE ip = ? AND blocked_until > ?')
          .get(ip, now),
      )) as { blocked_until: number } | undefined
      return r ? { ip, until: r.blocked_until } : null
    },
    async list(now, { limit, cursor }) {
      const rows = await d.run(() => {
        prune(now)
        return d
          .stmt(
            `SELECT ip, blocked_until FROM ip_blocks
             WHERE blocked_until > @now AND (@cursor IS NULL OR ip > @cursor)
             ORDER BY ip LIMIT @limit`,
          )
          .all({ now, cursor: cursor ?? null, limit: limit + 1 }) as Array<{
          ip: string
          blocked_until: number
        }>
      })
      const data: IpBlock[] = rows.map((r) => ({ ip: r.ip, until: r.blocked_until }))
      const more = data.length > limit
      if (more) data.length = limit
      return { data, nextCursor: more ? data[data.length - 1]!.ip : null }
    },
    async lift(ip, now) {
      const r = (await d.run(() =>
        d.stmt('DELETE FROM ip_blocks WHERE ip = ? RETURNING blocked_until').get(ip),
      )) as { blocked_until: number | null } | undefined
      return r?.blocked_until != null && r.blocked_until > now
    },
  }
}
