/**
 * @module tollbooth/portal/alias
 *
 * A key's alias (its `name`) is unique per account in the portal, as `002_2f2523503321cfc2.txt`
 * says ("Unique label per account"). The core allows repeated names (seed 000 creates several
 * "Production Key"s through the API), so the portal checks before it hands a create or a
 * rename to the management API: an alias already worn by another live key of the account,
 * compared without case, answers 409 naming the field, and nothing is created. Checks of one
 * account run one at a time in this process, so two tabs cannot slip the same alias through.
 */

import type { Context, Hono, Next } from 'hono'
import type { Tollbooth } from '../../src/index.js'
import { json } from '../management/http.js'
import type { Identify } from './session-routes.js'

/** The message of a taken alias. */
export const aliasTaken = (alias: string): string =>
  `An API key with the alias "${alias}" already exists; choose another alias`

const norm = (s: string) => s.trim().toLowerCase()

/** Whether another live key of the account (not `exceptId`) is named `alias`. */
async function taken(
  tb: Tollbooth,
  accountId: string,
  alias: string,
  exceptId: string | null,
): Promise<boolean> {
  const want = norm(alias)
  let cursor: string | null = null
  do {
    const page: Awaited<ReturnType<Tollbooth['keys']['list']>> = await tb.keys.list(accountId, {
      limit: 100,
      cursor,
    })
    if (page.data.some((k) => k.id !== exceptId && norm(k.name) === want)) return true
    cursor = page.nextCursor
  } while (cursor)
  return false
}

/** Registers the alias check before `POST /api/keys` and `PATCH /api/keys/:id`. */
export function aliasCheck(app: Hono, tb: Tollbooth, identify: Identify): void {
  const queues = new Map<string, Promise<unknown>>()

  /** Runs `task` after every earlier task of `accountId` has finished. */
  const serial = <T>(accountId: string, task: () => Promise<T>): Promise<T> => {
    const prev = queues.get(accountId) ?? Promise.resolve()
    const run = prev.then(task, task)
    const tail = run.catch(() => {})
    queues.set(accountId, tail)
    void tail.then(() => {
      if (queues.get(accountId) === tail) queues.delete(accountId)
    })
    return run
  }

  const check = (exceptParam: boolean) =>
    async function portalAliasCheck(c: Context, next: Next) {
      let body: unknown
      try {
        // As text: Hono keeps it, so the management API still gets the body.
        body = JSON.parse(await c.req.text())
      } catch {
        return next() // Not JSON: the management API answers the 400.
      }
      const name = (body as { name?: unknown } | null)?.name
      if (typeof name !== 'string' || name.trim() === '') return next()
      const who = await identify(c.req.raw)
      if (!who || 'unavailable' in who) return next() // Refused by the management API.
      const exceptId = exceptParam ? (c.req.param('id') ?? null) : null
      return serial(who.accountId, async () => {
        if (await taken(tb, who.accountId, name, exceptId)) {
          return json(
            {
              error: aliasTaken(name.trim()),
              code: 'conflict',
              issues: [{ path: 'name', message: 'is already used by another key of this account' }],
            },
            409,
          )
        }
        await next()
        return c.res
      })
    }

  app.post('/api/keys', check(false))
  app.patch('/api/keys/:id', check(true))
}
