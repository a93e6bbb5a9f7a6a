/**
 * @module postgres/ip-blocks
 *
 * The failed-auth guard's counts and blocks in the `ip_blocks` table: `fail` is one
 * `INSERT … ON CONFLICT DO UPDATE`, so concurrent failures of one address serialize on its
 * row. Rows that mean nothing any more are deleted every {@link PRUNE_EVERY} calls of `fail`
 * and before each list.
 */

import type { IpBlock, IpBlockStore } from '../../src/internal.js'
import { type Db, num } from './db.js'

const PRUNE_EVERY = 64

// $1 ip, $2 count, $3 now, $4 limit, $5 windowMs, $6 blockMs. In SET, `b.` is the old row.
const ACTIVE = 'b.blocked_until > $3::bigint'
const FRESH = '(b.blocked_until IS NOT NULL OR b.window_start + $5::bigint <= $3::bigint)'
const N = `(CASE WHEN ${FRESH} THEN $2::integer ELSE b.failures + $2::integer END)`
const START = `(CASE WHEN ${FRESH} THEN $3::bigint ELSE b.window_start END)`

export function postgresIpBlocks(db: Db): IpBlockStore {
  const t = db.table('ip_blocks')
  const failSql = `
    INSERT INTO ${t} AS b (ip, window_start, failures, blocked_until, expires_at)
    VALUES ($1, $3::bigint,
      CASE WHEN $2::integer >= $4::integer THEN 0 ELSE $2::integer END,
      CASE WHEN $2::integer >= $4::integer THEN $3::bigint + $6::bigint END,
      $3::bigint + CASE WHEN $2::integer >= $4::integer THEN $6::bigint ELSE $5::bigint END)
    ON CONFLICT (ip) DO UPDATE SET
      window_start = CASE WHEN ${ACTIVE} THEN b.window_start ELSE ${START} END,
      failures = CASE WHEN ${ACTIVE} THEN b.failures WHEN ${N} >= $4::integer THEN 0 ELSE ${N} END,
      blocked_until = CASE WHEN ${ACTIVE} THEN b.blocked_until
        WHEN ${N} >= $4::integer THEN $3::bigint + $6::bigint END,
      expires_at = CASE WHEN ${ACTIVE} THEN b.expires_at
        WHEN ${N} >= $4::integer THEN $3::bigint + $6::bigint ELSE ${START} + $5::bigint END
    RETURNING blocked_until`
  const prune = (now: number) => db.execute(`DELETE FROM ${t} WHERE expires_at <= $1`, [now])
  let calls = 0
  return {
    async fail(ip, count, now, rule) {
      if (++calls % PRUNE_EVERY === 0) await prune(now)
      const rows = await db.query<{ blocked_until: string | null }>(
        failSql,
        [ip, count, now, rule.limit, rule.windowMs, rule.blockMs],
        'ip_fail',
      )
      const until = num(rows[0]?.blocked_until ?? null)
      return until !== null && until > now ? until : null
    },
    async get(ip, now) {
      const rows = await db.query<{ blocked_until: string }>(
        `SELECT blocked_until FROM ${t} WHERE ip = $1 AND blocked_until > $2`,
        [ip, now],
      )
      return rows[0] ? { ip, until: Number(rows[0].blocked_until) } : null
    },
    async list(now, { limit, cursor }) {
      await prune(now)
      const rows = await db.query<{ ip: string; blocked_until: string }>(
        `SELECT ip, blocked_until FROM ${t}
         WHERE blocked_until > $1 AND ($2::text IS NULL OR ip > $2::text)
         ORDER BY ip LIMIT $3`,
        [now, cursor ?? null, limit + 1],
      )
      const data: IpBlock[] = rows.map((r) => ({ ip: r.ip, until: Number(r.blocked_until) }))
      const more = data.length > limit
      if (more) data.length = limit
      return { data, nextCursor: more ? data[data.length - 1]!.ip : null }
    },
    async lift(ip, now) {
      const rows = await db.query<{ blocked_until: string | null }>(
        `DELETE FROM ${t} WHERE ip = $1 RETURNING blocked_until`,
        [ip],
      )
      const until = num(rows[0]?.blocked_until ?? null)
      return until !== null && until > now
    },
  }
}
