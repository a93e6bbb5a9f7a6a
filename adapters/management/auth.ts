/**
 * @module tollbooth/management/auth
 *
 * Who may call the management API, and as which account. A credential is, by the first
 * thing that fits:
 * - a management key (by its prefix): checked by `tb.authenticate` on a management route, so
 *   revocation, expiry, scopes, the key's own limits and the failed-auth guard all apply;
 * - a consumption key (by its prefix), only where `consumptionKeys` allows it;
 * - a session JWT (three base64url parts, or the session cookie), where `session` is set;
 * - anything else, handed to the user's own `authenticate(request)`, where given.
 * A kind of credential these routes do not take is refused with 403 and a message naming
 * what they do take. The account comes from the credential, never from the request body.
 */

import type { Context } from 'hono'
import { getCookie } from 'hono/cookie'
import { csrf } from 'hono/csrf'
import {
  type Admission,
  authenticatedAccount,
  type DenialName,
  isAccountId,
  type ResolvedRoute,
  reparsedBody,
  type Tollbooth,
  type TrustProxy,
} from '../../src/internal.js'
import { refusal } from './http.js'
import { createSessionVerifier, looksLikeJwt, type SessionOptions, storeMarks } from './session.js'

/** Key credentials: allowed or not, and the scopes a key must carry. */
export type KeyAccess = boolean | { scopes?: string[] }

/** Who may call the management API. Default: management keys, and sessions when configured. */
export interface ManagementAuthOptions {
  /** Management keys (kind `management`). Default true. */
  managementKeys?: KeyAccess
  /** Consumption keys, as in `001_da102ff7c76ebfc9.txt`. Default false. */
  consumptionKeys?: KeyAccess
  /** Session JWTs (`Authorization: Bearer <jwt>` or a cookie). Off unless given. */
  session?: SessionOptions
  /** Your own check, for any other credential: the account, or null to refuse (401). */
  authenticate?: (
    request: Request,
  ) => Promise<{ accountId: string } | null> | { accountId: string } | null
}

/** The authenticated caller of a management route. */
export interface Principal {
  accountId: string
  via: 'management_key' | 'consumption_key' | 'session' | 'custom'
  /** The key that made the call, for key credentials. */
  keyId: string | null
  /** The key's scopes, for key credentials (empty otherwise). */
  scopes: ReadonlyArray<string>
}

/** Either the caller, with headers to add and a settle hook, or the refusal to send. */
export type AuthOutcome =
  | { ok: true; principal: Principal; headers: Record<string, string>; done(status: number): void }
  | { ok: false; response: Response }

type NodeEnv = { incoming?: { socket?: { remoteAddress?: string } } }

/** The socket address under `@hono/node-server` and the Express and Fastify mount helpers. */
export const nodeSocket = (c: Context): string | undefined =>
  (c.env as NodeEnv | undefined)?.incoming?.socket?.remoteAddress

const noop = () => {}

function bearer(req: Request): string | undefined {
  const h = req.headers.get('authorization')
  if (h && /^bearer /i.test(h)) return h.slice(7).trim() || undefined
  return req.headers.get('x-api-key')?.trim() || undefined
}

const sameOrigin = csrf()

/** `c` as Hono's `csrf` check reads it (method, URL, headers), with another `Content-Type`. */
const withContentType = (c: Context, type: string | null): Context =>
  ({
    req: {
      method: c.req.method,
      url: c.req.url,
      header: (name: string) =>
        name.toLowerCase() === 'content-type' ? (type ?? undefined) : c.req.header(name),
    },
  }) as unknown as Context

/**
 * True when a browser sent this change from another site (Hono's `csrf` check: a simple
 * body, i.e. a form, `text/plain` or none, without `Sec-Fetch-Site: same-origin` or an
 * `Origin` of this server). Only asked of a POST, the one change another site can send
 * without a CORS preflight (a form, a no-cors fetch): a cross-origin PATCH or DELETE passed
 * the preflight the application configured. And only of a request that names where it comes
 * from (a `Sec-Fetch-Site` or an `Origin`): every browser sends one on a cross-site POST, and
 * a client that is not a browser, which sends neither, is no forgery.
 */
async function forgedCrossSite(c: Context): Promise<boolean> {
  if (c.req.method !== 'POST') return false
  const h = c.req.raw.headers
  if (!h.has('sec-fetch-site') && !h.has('origin')) return false
  // A body parser in front (Express) may have turned a form into JSON: judge the type sent.
  const sent = reparsedBody(c.req.raw)
  try {
    await sameOrigin(sent ? withContentType(c, sent.contentType) : c, async () => {})
    return false
  } catch {
    return true
  }
}

const scopesOf = (a: KeyAccess | undefined): string[] =>
  typeof a === 'object' ? (a.scopes ?? []) : []

/**
 * Builds the authenticator once (validating the session options; throws ConfigError).
 *
 * @param tb the tollbooth instance whose keys and clock are used
 */
export function createAuthenticator(
  tb: Tollbooth,
  auth: ManagementAuthOptions,
  network: { trustProxy: TrustProxy; socketAddress: (c: Context) => string | null | undefined },
): (c: Context) => Promise<AuthOutcome> {
  const now = () => (tb.options.clock ? tb.options.clock.now() : Date.now())
  const session = auth.session
    ? createSessionVerifier(auth.session, now, undefined, storeMarks(tb))
    : null
  const mgmt = auth.managementKeys ?? true
  const cons = auth.consumptionKeys ?? false
  const routes: Record<'management' | 'consumption', ResolvedRoute | null> = {
    // The token is the one read below: hand it over as a Bearer whatever the instance reads.
    management: mgmt
      ? tb.route({
          kind: 'management',
          scopes: scopesOf(mgmt),
          keySources: ['bearer'],
          trustProxy: network.trustProxy,
        })
      : null,
    consumption: cons
      ? tb.route({
          kind: 'consumption',
          scopes: scopesOf(cons),
          keySources: ['bearer'],
          trustProxy: network.trustProxy,
        })
      : null,
  }
  const accepted: string[] = []
  if (mgmt) accepted.push('a management key')
  if (cons) {
    const s = scopesOf(cons)
    accepted.push(s.length ? `an API key with scope ${s.join(', ')}` : 'an API key')
  }
  if (session) accepted.push('a session token')
  if (auth.authenticate) accepted.push('your account session')
  const what =
    accepted.length > 1 ? `${accepted.slice(0, -1).join(', ')} or ${accepted.at(-1)}` : accepted[0]
  const acceptMessage = `these routes accept ${what}`
  const { prefixes } = tb.options

  const refuse = (name: DenialName, message: string): AuthOutcome => ({
    ok: false,
    response: refusal(name, message),
  })

  /** Nothing we know: a token that fits no credential (401 invalid), or none at all. */
  const unknown = (token: string | undefined): AuthOutcome =>
    token
      ? refuse('invalid_credentials', `Invalid credentials; ${acceptMessage}`)
      : refuse('unauthorized', `Missing credentials; ${acceptMessage}`)

  const byKey = async (
    c: Context,
    token: string,
    kind: 'management' | 'consumption',
  ): Promise<AuthOutcome> => {
    const route = routes[kind]
    if (!route) {
      const label = kind === 'management' ? 'Management keys' : 'API keys'
      return refuse('wrong_key_kind', `${label} cannot be used on these routes; ${acceptMessage}`)
    }
    const headers = c.req.raw.headers
    const decision = await tb.authenticate(
      {
        headers: (name) =>
          name === 'authorization' ? `Bearer ${token}` : (headers.get(name) ?? undefined),
        ip: network.socketAddress(c) ?? null,
        method: c.req.method,
        path: c.req.path,
      },
      route,
    )
    if (!decision.allowed) {
      return {
        ok: false,
        response: new Response(decision.body, {
          status: decision.status,
          headers: decision.headers,
        }),
      }
    }
    const admission: Admission = decision
    return {
      ok: true,
      principal: {
        accountId: admission.accountId,
        via: kind === 'management' ? 'management_key' : 'consumption_key',
        keyId: admission.key.id,
        scopes: admission.key.scopes,
      },
      headers: admission.responseHeaders(),
      // Settled for the key's limits and lastUsedAt, but not recorded as usage: management
      // calls are not what the product meters, so /usage counts only product requests.
      done: (status) => void tb.settle(admission, { status, record: false }).catch(noop),
    }
  }

  const bySession = async (token: string): Promise<AuthOutcome> => {
    const r = await session!.verify(token)
    if (!r.ok) return refuse(r.denial, r.message)
    if (!isAccountId(r.accountId))
      return refuse('invalid_credentials', 'Invalid session token: the account id is not valid')
    return {
      ok: true,
      principal: { accountId: r.accountId, via: 'session', keyId: null, scopes: [] },
      headers: {},
      done: noop,
    }
  }

  /**
   * A credential the browser sends by itself (a cookie, or whatever the user's authenticate
   * reads) does not show that the page asking is the account's: a change from another site
   * is refused before the credential is even looked at.
   */
  const ambient = async (c: Context): Promise<AuthOutcome | null> =>
    (await forgedCrossSite(c))
      ? refuse(
          'forbidden',
          'Cross-site requests cannot make changes with a browser session; call from the same origin with a JSON body, or send the credential in Authorization',
        )
      : null

  return async function authenticateManagement(c) {
    const req = c.req.raw
    const token = bearer(req)
    if (token?.startsWith(prefixes.management)) return byKey(c, token, 'management')
    if (token && prefixes.consumptionAll.some((p) => token.startsWith(p)))
      return byKey(c, token, 'consumption')
    if (session && token && looksLikeJwt(token)) return bySession(token)
    if (session?.cookie && !token) {
      const t = getCookie(c, session.cookie) || undefined
      if (t) return (await ambient(c)) ?? bySession(t)
    }
    if (auth.authenticate) {
      // A header credential cannot come from another site without passing CORS first.
      const forged = token ? null : await ambient(c)
      if (forged) return forged
      const accountId = authenticatedAccount(
        'managementApi',
        'options.auth.authenticate',
        await auth.authenticate(req),
      )
      if (accountId === null) return unknown(token)
      return {
        ok: true,
        principal: { accountId, via: 'custom', keyId: null, scopes: [] },
        headers: {},
        done: noop,
      }
    }
    return unknown(token)
  }
}

/** Wraps a route handler: authenticate, run, answer errors as JSON, settle the key's request. */
export type Guard = (
  handler: (c: Context, principal: Principal) => Promise<Response>,
) => (c: Context) => Promise<Response>
