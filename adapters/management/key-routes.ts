/**
 * @module tollbooth/management/key-routes
 *
 * `/keys` (consumption keys) and `/management-keys`: create (the plaintext shown once), list
 * with a cursor, get, update (deactivate, reactivate, rename, limits), revoke (soft, 204),
 * delete for good (only a key never used, else 409), rotate, and a key's request log. Every
 * lookup is scoped to the caller's account: another account's key answers 404 exactly like a
 * missing one, and a key of the other kind is not found on these routes either.
 */

import type { Context, Hono } from 'hono'
import {
  type KeyKind,
  type KeyView,
  type NameRule,
  NotFoundError,
  parsedKeyEntries,
  type Tollbooth,
  TollboothError,
} from '../../src/internal.js'
import type { Guard, Principal } from './auth.js'
import { json, noContent, parse, queryOf, readJson } from './http.js'
import { IP_BLOCKS_SCOPE } from './ip-block-routes.js'
import {
  createKeyBody,
  createManagementKeyBody,
  deleteQuery,
  listQuery,
  logsQuery,
  noQuery,
  rotateBody,
  updateKeyBody,
} from './schemas.js'
import { createdView, keyView, logView } from './views.js'

/**
 * The `ip-blocks` scope spans every account: only a caller whose own key holds it may give it
 * to a key (a customer's key, a consumption key or a session would mint themselves the
 * operator's routes). Other scopes mean what the integrator makes them mean, in one account.
 */
function checkGrant(p: Principal, scopes: ReadonlyArray<string> | undefined): void {
  if (!scopes?.includes(IP_BLOCKS_SCOPE)) return
  if (p.via === 'management_key' && p.scopes.includes(IP_BLOCKS_SCOPE)) return
  throw new TollboothError(
    'forbidden',
    403,
    `scopes: ${IP_BLOCKS_SCOPE} spans every account; only a management key that holds it may give it`,
  )
}

/** Registers the key routes on `app`; `rule` goes with every create and rename to `tb.keys`. */
export function keyRoutes(app: Hono, tb: Tollbooth, guard: Guard, rule: NameRule = {}): void {
  // Bodies are parsed here, once, by the core's schemas: tb.keys takes them as they are.
  const keys = parsedKeyEntries(tb.keys)
  /** The caller's key of this kind, or 404 (missing, another account's, or the other kind). */
  const own = async (id: string, p: Principal, kind: KeyKind): Promise<KeyView> => {
    const k = await tb.keys.get(id, { accountId: p.accountId })
    if (k.kind !== kind) throw new NotFoundError('API key not found')
    return k
  }

  for (const [base, kind] of [
    ['/keys', 'consumption'],
    ['/management-keys', 'management'],
  ] as const) {
    const create = kind === 'consumption' ? createKeyBody : createManagementKeyBody
    /** Management keys mint more management keys: a consumption key may not manage them. */
    const check = (p: Principal) => {
      if (kind === 'management' && p.via === 'consumption_key')
        throw new TollboothError(
          'forbidden',
          403,
          'Management keys can only be managed with a management key or a session',
        )
    }

    app.post(
      base,
      guard(async (c, p) => {
        check(p)
        parse(noQuery, queryOf(c), 'query')
        const body = parse(create, await readJson(c), 'body')
        checkGrant(p, body.scopes)
        const draft = { category: null, limits: {}, ...body, accountId: p.accountId, kind }
        const { key, record } = await keys.create({ ...draft, active: true }, rule)
        return json(createdView(key, record), 201)
      }),
    )

    app.get(
      base,
      guard(async (c, p) => {
        check(p)
        const q = parse(listQuery, queryOf(c), 'query')
        const page = await tb.keys.list(p.accountId, { ...q, kind })
        return json({
          data: page.data.map(keyView),
          nextCursor: page.nextCursor,
          hasMore: page.hasMore,
        })
      }),
    )

    app.get(
      `${base}/:id`,
      guard(async (c, p) => {
        check(p)
        parse(noQuery, queryOf(c), 'query')
        return json(keyView(await own(c.req.param('id')!, p, kind)))
      }),
    )

    app.patch(
      `${base}/:id`,
      guard(async (c, p) => {
        check(p)
        parse(noQuery, queryOf(c), 'query')
        const body = parse(updateKeyBody, await readJson(c), 'body')
        const k = await own(c.req.param('id')!, p, kind)
        // A key that has the scope keeps it; adding it is a grant.
        if (!k.scopes.includes(IP_BLOCKS_SCOPE)) checkGrant(p, body.scopes)
        const updated = await keys.update(k.id, body, {
          accountId: p.accountId,
          ...rule,
        })
        return json(keyView(updated))
      }),
    )

    app.delete(
      `${base}/:id`,
      guard(async (c, p) => {
        check(p)
        const q = parse(deleteQuery, queryOf(c), 'query')
        const k = await own(c.req.param('id')!, p, kind)
        const scope = { accountId: p.accountId }
        if (q.permanent) await tb.keys.delete(k.id, scope)
        else await tb.keys.revoke(k.id, scope)
        return noContent()
      }),
    )

    app.post(
      `${base}/:id/rotate`,
      guard(async (c, p) => {
        check(p)
        parse(noQuery, queryOf(c), 'query')
        const body = parse(rotateBody, await readJson(c), 'body')
        const k = await own(c.req.param('id')!, p, kind)
        const { key, record } = await keys.rotate(k.id, body, { accountId: p.accountId })
        return json({ ...createdView(key, record), rotatedFrom: k.id })
      }),
    )

    app.get(
      `${base}/:id/logs`,
      guard(async (c: Context, p) => {
        check(p)
        const q = parse(logsQuery, queryOf(c), 'query')
        const k = await own(c.req.param('id')!, p, kind)
        const page = await tb.usage.logs(k.id, q, { accountId: p.accountId })
        return json({
          data: page.data.map((e) => logView(e, k)),
          nextCursor: page.nextCursor,
          hasMore: page.hasMore,
        })
      }),
    )
  }
}
