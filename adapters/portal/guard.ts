/**
 * @module tollbooth/portal/guard
 *
 * The portal's request guards, run before any route:
 * - security headers on every answer: a strict Content-Security-Policy (scripts, styles and
 *   connections from the portal's own origin only; no inline script or style; Trusted Types),
 *   `nosniff`, no referrer, and a same-origin opener policy;
 * - API keys are refused on every portal route (`001_da102ff7c76ebfc9.txt`: "Portal routes
 *   are not accessible with API keys"), whichever way the instance reads a key;
 * - changes (any method but GET, HEAD, OPTIONS) need the double-submit CSRF token in
 *   `X-CSRF-Token`, equal to the portal's CSRF cookie, and a browser that says the request is
 *   cross-site (`Sec-Fetch-Site`) is refused whatever it carries.
 */

import type { MiddlewareHandler } from 'hono'
import { readHeader, type Tollbooth, type TollboothRequest } from '../../src/internal.js'
import { refusal } from '../management/http.js'
import { csrfCookie, jarFor, sameToken } from './cookies.js'
import type { ResolvedPortalOptions } from './options.js'

/** The Content-Security-Policy of every portal answer. */
export function contentSecurityPolicy(frameAncestors: string[]): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    `frame-ancestors ${frameAncestors.join(' ')}`,
    "require-trusted-types-for 'script'",
    'trusted-types none',
  ].join('; ')
}

/** Sets the security headers on the answer (unless a route chose its own). */
export function securityHeaders(o: ResolvedPortalOptions): MiddlewareHandler {
  const fixed: Record<string, string> = {
    'content-security-policy': contentSecurityPolicy(o.frameAncestors),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
  }
  const apply = (headers: Headers) => {
    for (const name in fixed) if (!headers.has(name)) headers.set(name, fixed[name]!)
  }
  return async function portalSecurityHeaders(c, next) {
    await next()
    try {
      apply(c.res.headers)
    } catch {
      // A Response with immutable headers (a proxied fetch): copy it once.
      c.res = new Response(c.res.body, c.res)
      apply(c.res.headers)
    }
  }
}

/**
 * Refuses any request that presents an API key: `Authorization: Bearer`, `X-API-Key`, or one
 * of the instance's own key sources. `Authorization: Basic` (a staging site's password) passes.
 */
export function refuseApiKeys(tb: Tollbooth): MiddlewareHandler {
  const custom = tb.options.keySources.filter(
    (s): s is (r: TollboothRequest) => string | undefined => typeof s === 'function',
  )
  return async function portalRefuseApiKeys(c, next) {
    const h = c.req.raw.headers
    const auth = h.get('authorization')
    let key = (auth !== null && /^bearer\s/i.test(auth)) || (h.get('x-api-key') ?? '') !== ''
    if (!key && custom.length > 0) {
      const request: TollboothRequest = {
        headers: (name) => readHeader(h, name),
        ip: null,
        method: c.req.method,
        path: c.req.path,
      }
      key = custom.some((source) => {
        try {
          return Boolean(source(request))
        } catch {
          return false
        }
      })
    }
    if (key)
      return refusal(
        'forbidden',
        'Portal routes are not accessible with API keys; sign in to the portal instead',
      )
    return next()
  }
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

/** The double-submit CSRF check of every change. */
export function requireCsrf(o: ResolvedPortalOptions): MiddlewareHandler {
  return async function portalCsrf(c, next) {
    if (SAFE.has(c.req.method)) return next()
    const req = c.req.raw
    const site = req.headers.get('sec-fetch-site')
    const cookie = csrfCookie(c, jarFor(req, o.cookieName, o.secureCookies))
    const header = req.headers.get('x-csrf-token') ?? ''
    if (site === 'cross-site' || site === 'same-site')
      return refusal('forbidden', 'Cross-site requests cannot change the portal')
    if (cookie === undefined || !sameToken(cookie, header))
      return refusal(
        'forbidden',
        'Missing or invalid CSRF token (X-CSRF-Token); reload the portal and try again',
      )
    return next()
  }
}
