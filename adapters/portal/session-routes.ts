/**
 * @module tollbooth/portal/session-routes
 *
 * Who is signed in, and `<base>/api/session`: `GET` tells the page whether a visitor is
 * signed in (and hands it the CSRF token, setting the CSRF cookie when missing), `POST` signs
 * in with a session JWT (verified by the same jose verifier as the management API, then kept
 * in an HttpOnly cookie that expires with the session: the token's `exp`, or its `iat` plus
 * `maxAgeMs`), `DELETE` signs out: it ends the session on the server (a mark in the counter
 * store that every verification checks, so the token is refused on every instance even where
 * a copy of it survives the cookie), then clears the cookie. Sign-in and sign-out
 * both renew the CSRF token. With `authenticate`, the integrator's own session decides and
 * sign-in and sign-out happen in their application (`signInUrl`, `signOutUrl`).
 */

import type { Context, Hono } from 'hono'
import { z } from 'zod'
import { authenticatedAccount, type DenialName, isAccountId, text } from '../../src/internal.js'
import { json, parse, readJson, refusal } from '../management/http.js'
import type { SessionVerifier } from '../management/session.js'
import {
  type CookieJar,
  csrfCookie,
  jarFor,
  newCsrfToken,
  readCookie,
  sessionCookie,
  setCookie,
} from './cookies.js'
import type { PortalAuthenticate, ResolvedPortalOptions } from './options.js'

type Verifier = SessionVerifier

/**
 * The signed-in account and how (the portal's session cookie, or the integrator's
 * `authenticate`), a key source that cannot be reached (503), or nobody.
 */
export type Visitor =
  | { accountId: string; via: 'session' | 'authenticate' }
  | { unavailable: string; denial: DenialName }
  | null

/** Finds who sent `request`: the portal's session cookie first, then `authenticate`. */
export type Identify = (c: Context) => Promise<Visitor>

/** The largest session token kept in a cookie (browsers keep about 4 kB per cookie). */
const MAX_TOKEN = 3800

/**
 * The portal's `authenticate` option, its answer checked and named as the portal's option (a
 * bad one is a ConfigError: `portal: options.authenticate(request).accountId must be …`).
 */
export const checkedAuthenticate =
  (authenticate: PortalAuthenticate) =>
  async (request: Request): Promise<{ accountId: string } | null> => {
    const id = authenticatedAccount('portal', 'options.authenticate', await authenticate(request))
    return id === null ? null : { accountId: id }
  }

/** Builds {@link Identify} for the portal's options. */
export function createIdentify(o: ResolvedPortalOptions, verifier: Verifier | null): Identify {
  return async function identify(c) {
    const request = c.req.raw
    const jar = jarFor(request, o.cookieName, o.secureCookies)
    const token = verifier ? sessionCookie(c, jar) : undefined
    if (verifier && token) {
      const r = await verifier.verify(token)
      if (r.ok && isAccountId(r.accountId)) return { accountId: r.accountId, via: 'session' }
      if (!r.ok && r.status === 503) return { unavailable: r.message, denial: r.denial }
    }
    if (!o.authenticate) return null
    const who = await checkedAuthenticate(o.authenticate)(request)
    return who && { accountId: who.accountId, via: 'authenticate' }
  }
}

/** An answer that sets `cookies`. */
function withCookies(res: Response, cookies: string[]): Response {
  for (const c of cookies) res.headers.append('set-cookie', c)
  return res
}

/** `POST /api/session`: the token follows the text rule of every field (no NUL, valid Unicode). */
const signInBody = z
  .object({
    token: text(z.string().min(1).max(MAX_TOKEN, `must be at most ${MAX_TOKEN} characters`)),
  })
  .strict()

/** Registers `GET`, `POST` and `DELETE` `/api/session` on `app`. */
export function sessionRoutes(
  app: Hono,
  o: ResolvedPortalOptions,
  verifier: Verifier | null,
  identify: Identify,
  now: () => number,
): void {
  const page = {
    title: o.title,
    categories: o.categories,
    providers: o.providers,
    signInUrl: o.signInUrl,
    signOutUrl: o.signOutUrl,
    tokenSignIn: verifier !== null,
  }
  const jarOf = (c: Context): CookieJar => jarFor(c.req.raw, o.cookieName, o.secureCookies)

  app.get('/api/session', async (c) => {
    const jar = jarOf(c)
    const cookies: string[] = []
    let csrf = csrfCookie(c, jar)
    if (csrf === undefined) {
      csrf = newCsrfToken()
      cookies.push(setCookie(jar, jar.csrf, csrf))
    }
    const who = await identify(c)
    if (who && 'unavailable' in who)
      return withCookies(refusal(who.denial, who.unavailable), cookies)
    // A session cookie that no longer verifies (expired, signed with a retired key) is dropped,
    // also when authenticate() let the visitor in.
    if (who?.via !== 'session' && verifier && readCookie(c, jar.session) !== undefined)
      cookies.push(setCookie(jar, jar.session, '', 0))
    const body = {
      signedIn: who !== null,
      accountId: who?.accountId ?? null,
      csrfToken: csrf,
      secureCookies: jar.secure,
      portal: page,
    }
    return withCookies(json(body), cookies)
  })

  app.post('/api/session', async (c) => {
    if (!verifier)
      return refusal(
        'not_found',
        'This portal signs in through your application, not with a session token',
      )
    const { token } = parse(signInBody, await readJson(c), 'body')
    const r = await verifier.verify(token.trim())
    if (!r.ok) return refusal(r.denial, r.message)
    if (!isAccountId(r.accountId))
      return refusal('invalid_credentials', 'Invalid session token: the account id is not valid')
    const jar = jarOf(c)
    const csrf = newCsrfToken()
    return withCookies(json({ signedIn: true, accountId: r.accountId, csrfToken: csrf }), [
      setCookie(jar, jar.session, token.trim(), r.endsAt / 1000 - Math.floor(now() / 1000)),
      setCookie(jar, jar.csrf, csrf),
    ])
  })

  app.delete('/api/session', async (c) => {
    const jar = jarOf(c)
    const token = verifier ? sessionCookie(c, jar) : undefined
    if (verifier && token) {
      // Ended on the server first: when the store cannot be reached the session (and its
      // cookie) stay, and signing out again can finish it.
      try {
        await verifier.revoke(token)
      } catch {
        return refusal(
          'storage_unavailable',
          'Storage unavailable: the session could not be ended; try again',
        )
      }
    }
    const csrf = newCsrfToken()
    const cookies = [setCookie(jar, jar.csrf, csrf)]
    if (verifier) cookies.push(setCookie(jar, jar.session, '', 0))
    return withCookies(
      json({ signedIn: false, csrfToken: csrf, signOutUrl: o.signOutUrl }),
      cookies,
    )
  })
}
