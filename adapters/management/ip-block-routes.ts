/**
 * @module tollbooth/management/ip-block-routes
 *
 * `/ip-blocks`: the addresses the failed-auth guard refuses, shown and lifted. Blocks span
 * every account (an address is not an account's), so these routes take only a management
 * key that carries the `ip-blocks` scope: give it to the operator's key, never to a
 * customer's. A lift takes effect at once on the instance that serves it and within 5 s on
 * the others.
 */

import type { Hono } from 'hono'
import { NotFoundError, type Tollbooth, TollboothError } from '../../src/internal.js'
import type { Guard, Principal } from './auth.js'
import { json, noContent, parse, queryOf } from './http.js'
import { ipBlocksQuery, ipParam, noQuery } from './schemas.js'
import { iso } from './views.js'

/** The scope a management key needs on these routes. */
export const IP_BLOCKS_SCOPE = 'ip-blocks'

function operatorOnly(p: Principal): void {
  if (p.via !== 'management_key' || !p.scopes.includes(IP_BLOCKS_SCOPE))
    throw new TollboothError(
      'forbidden',
      403,
      `IP blocks span every account: these routes take only a management key with scope ${IP_BLOCKS_SCOPE}`,
    )
}

/** Registers `GET /ip-blocks`, `GET /ip-blocks/:ip` and `DELETE /ip-blocks/:ip` on `app`. */
export function ipBlockRoutes(app: Hono, tb: Tollbooth, guard: Guard): void {
  app.get(
    '/ip-blocks',
    guard(async (c, p) => {
      operatorOnly(p)
      const q = parse(ipBlocksQuery, queryOf(c), 'query')
      const page = await tb.ipBlocks.list({ limit: q.limit ?? 100, cursor: q.cursor ?? null })
      return json({
        data: page.data.map((b) => ({ ip: b.ip, until: iso(b.until) })),
        nextCursor: page.nextCursor,
      })
    }),
  )

  app.get(
    '/ip-blocks/:ip',
    guard(async (c, p) => {
      operatorOnly(p)
      parse(noQuery, queryOf(c), 'query')
      const ip = parse(ipParam, c.req.param('ip'), 'ip')
      const b = await tb.ipBlocks.get(ip)
      return json({ ip, blocked: b !== null, until: b ? iso(b.until) : null })
    }),
  )

  app.delete(
    '/ip-blocks/:ip',
    guard(async (c, p) => {
      operatorOnly(p)
      parse(noQuery, queryOf(c), 'query')
      const ip = parse(ipParam, c.req.param('ip'), 'ip')
      if (!(await tb.ipBlocks.lift(ip))) throw new NotFoundError(`${ip} is not blocked`)
      return noContent()
    }),
  )
}
