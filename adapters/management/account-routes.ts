/**
 * @module tollbooth/management/account-routes
 *
 * The caller's account: `/usage` (the current period, or `?month=YYYY-MM`; broken down by
 * `?groupBy=category|keyCategory`, filtered by `?category=` and `?keyCategory=`) and the stored
 * BYOK provider keys (`/provider-keys`: store, list masked, verify, delete). A provider key
 * goes in once and never comes back out: answers show `••••` and its last four characters.
 */

import type { Hono } from 'hono'
import { z } from 'zod'
import { storeParsedProviderKey, type Tollbooth, usageQuerySchema } from '../../src/internal.js'
import type { Guard } from './auth.js'
import { json, noContent, parse, queryOf, readJson } from './http.js'
import { noQuery, providerKeyBody } from './schemas.js'
import { iso, providerKeyView, usageView } from './views.js'

const emptyBody = z.object({}).strict()

/** Registers `/usage` and `/provider-keys` on `app`. */
export function accountRoutes(app: Hono, tb: Tollbooth, guard: Guard): void {
  app.get(
    '/usage',
    guard(async (c, p) => {
      // Parsed here for the 400's wording (`query: …`); `usage.get` takes the same schema.
      const report = await tb.usage.get(p.accountId, parse(usageQuerySchema, queryOf(c), 'query'))
      return json(usageView(report))
    }),
  )

  app.post(
    '/provider-keys',
    guard(async (c, p) => {
      parse(noQuery, queryOf(c), 'query')
      const body = parse(providerKeyBody, await readJson(c), 'body')
      const stored = await storeParsedProviderKey(tb.providerKeys, p.accountId, body)
      return json(providerKeyView(stored), 201)
    }),
  )

  app.get(
    '/provider-keys',
    guard(async (c, p) => {
      parse(noQuery, queryOf(c), 'query')
      const list = await tb.providerKeys.list(p.accountId)
      return json({ data: list.map(providerKeyView) })
    }),
  )

  app.post(
    '/provider-keys/:provider/verify',
    guard(async (c, p) => {
      parse(noQuery, queryOf(c), 'query')
      parse(emptyBody, await readJson(c), 'body')
      const r = await tb.providerKeys.verify(p.accountId, c.req.param('provider')!)
      return json({ provider: r.provider, valid: r.valid, verifiedAt: iso(r.verifiedAt) })
    }),
  )

  app.delete(
    '/provider-keys/:provider',
    guard(async (c, p) => {
      parse(noQuery, queryOf(c), 'query')
      await tb.providerKeys.delete(p.accountId, c.req.param('provider')!)
      return noContent()
    }),
  )
}
