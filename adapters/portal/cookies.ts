/**
 * @module tollbooth/portal/cookies
 *
 * The portal's two cookies: the session (the session JWT, HttpOnly) and the CSRF token of the
 * double-submit check (also HttpOnly: the page learns the token from `GET <base>/api/session`,
 * which another site cannot read). Both are `SameSite=Strict`, `Path=/`, and `Secure` with the
 * `__Host-` name prefix outside localhost, so no subdomain and no plain-HTTP page can set or
 * read them. Reading and writing them is Hono's cookie helper's (`hono/cookie`); this module
 * decides their names and attributes. Nothing here knows about keys or accounts.
 */

import type { Context } from 'hono'
import { generateCookie, getCookie } from 'hono/cookie'
import { looksLikeJwt } from '../management/session.js'

/** The cookie names and attributes that apply to one request. */
export interface CookieJar {
  secure: boolean
  session: string
  csrf: string
}

/** True for hosts a browser treats as this machine (where `Secure` cookies are not needed). */
export function isLocalHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return (
    h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h)
  )
}

/**
 * True when a proxy in front says the browser reached it over HTTPS (`X-Forwarded-Proto` or
 * RFC 7239 `Forwarded: proto=`, any hop). Only ever makes the cookies stricter, so it needs no
 * trust in the proxy: a browser cannot be made to send either header to another site.
 */
function forwardedHttps(headers: Headers): boolean {
  const xfp = headers.get('x-forwarded-proto')
  if (xfp?.split(',').some((p) => p.trim().toLowerCase() === 'https')) return true
  const fwd = headers.get('forwarded')
  return fwd !== null && /(?:^|[;,\s])proto="?https"?(?:$|[;,\s])/i.test(fwd)
}

/**
 * The jar for `request`. `'auto'`: `Secure` and `__Host-` names unless the browser is on this
 * machine, i.e. the host is local, the URL is not `https:`, and no proxy says the browser
 * came over HTTPS (a proxy that sends `Host: 127.0.0.1` says nothing of the browser's host).
 */
export function jarFor(request: Request, base: string, secure: boolean | 'auto'): CookieJar {
  const url = new URL(request.url)
  const s =
    secure === 'auto'
      ? !isLocalHost(url.hostname) || url.protocol === 'https:' || forwardedHttps(request.headers)
      : secure
  const prefix = s ? '__Host-' : ''
  return { secure: s, session: `${prefix}${base}`, csrf: `${prefix}${base}-csrf` }
}

/** The value of cookie `name` on the request of `c`, or undefined (an empty value too). */
export function readCookie(c: Context, name: string): string | undefined {
  return getCookie(c, name) || undefined
}

/** Browsers keep a cookie at most 400 days (RFC 6265bis), and Hono refuses a longer Max-Age. */
const MAX_AGE_S = 400 * 24 * 3600

/**
 * A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when the jar is.
 *
 * @param maxAgeS seconds until it expires (at most 400 days); 0 deletes it; undefined makes a
 *   browser-session cookie
 */
export function setCookie(jar: CookieJar, name: string, value: string, maxAgeS?: number): string {
  return generateCookie(name, value, {
    path: '/',
    httpOnly: true,
    sameSite: 'Strict',
    secure: jar.secure,
    ...(maxAgeS === undefined
      ? {}
      : { maxAge: Math.min(MAX_AGE_S, Math.max(0, Math.floor(maxAgeS))) }),
  })
}

/** A fresh CSRF token: 256 random bits, base64url. */
export function newCsrfToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

const TOKEN = /^[A-Za-z0-9_-]{43}$/

/**
 * The session cookie's token when it is one the portal could have written (a compact JWT that
 * signed in), else undefined: a value with a NUL or a line break once decoded (`%00`) is no
 * session, and never reaches a header of the inner call as `Bearer …`.
 */
export function sessionCookie(c: Context, jar: CookieJar): string | undefined {
  const v = readCookie(c, jar.session)
  return v !== undefined && looksLikeJwt(v) ? v : undefined
}

/** The CSRF cookie's token when it is one the portal could have made, else undefined. */
export function csrfCookie(c: Context, jar: CookieJar): string | undefined {
  const v = readCookie(c, jar.csrf)
  return v !== undefined && TOKEN.test(v) ? v : undefined
}

/** Compares two strings in time that depends on their length only. */
export function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}
