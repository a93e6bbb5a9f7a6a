/**
 * @module tollbooth/portal/cookies
 *
 * The portal's two cookies: the session (the session JWT, HttpOnly) and the CSRF token of the
 * double-submit check (also HttpOnly: the page learns the token from `GET <base>/api/session`,
 * which another site cannot read). Both are `SameSite=Strict`, `Path=/`, and `Secure` with the
 * `__Host-` name prefix outside localhost, so no subdomain and no plain-HTTP page can set or
 * read them. Pure functions of a request; nothing here knows about keys or accounts.
 */

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

/** The jar for `request`: `Secure` and `__Host-` names unless served on localhost (`'auto'`). */
export function jarFor(request: Request, base: string, secure: boolean | 'auto'): CookieJar {
  const s = secure === 'auto' ? !isLocalHost(new URL(request.url).hostname) : secure
  const prefix = s ? '__Host-' : ''
  return { secure: s, session: `${prefix}${base}`, csrf: `${prefix}${base}-csrf` }
}

/** The value of cookie `name` on `request`, or undefined. */
export function readCookie(request: Request, name: string): string | undefined {
  for (const part of (request.headers.get('cookie') ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined
  }
  return undefined
}

/**
 * A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when the jar is.
 *
 * @param maxAgeS seconds until it expires; 0 deletes it; undefined makes a browser-session cookie
 */
export function setCookie(jar: CookieJar, name: string, value: string, maxAgeS?: number): string {
  const parts = [`${name}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict']
  if (jar.secure) parts.push('Secure')
  if (maxAgeS !== undefined) parts.push(`Max-Age=${Math.max(0, Math.floor(maxAgeS))}`)
  return parts.join('; ')
}

/** A fresh CSRF token: 256 random bits, base64url. */
export function newCsrfToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

const TOKEN = /^[A-Za-z0-9_-]{43}$/

/** The CSRF cookie's token when it is one the portal could have made, else undefined. */
export function csrfCookie(request: Request, jar: CookieJar): string | undefined {
  const v = readCookie(request, jar.csrf)
  return v !== undefined && TOKEN.test(v) ? v : undefined
}

/** Compares two strings in time that depends on their length only. */
export function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}
