/**
 * @module headers
 *
 * The response header families, each a pure function from figures to a header record so all
 * three adapters send the same bytes. Headers are the hot path's largest cost (each one is
 * about a microsecond in the frameworks, more than the key hash), so a route sends only the
 * families it enables, and the record is built once per decision.
 */

import { roundAmount } from './limits/amount.js'

/** Which header families a route sends. */
export interface HeaderFamilies {
  /** `X-Request-Id`. Default on. */
  requestId: boolean
  /** `X-RateLimit-Limit`, `-Remaining`, `-Reset` where a limit applies. Default on. */
  rateLimit: boolean
  /**
   * IETF `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09).
   * Default off.
   */
  ietf: boolean
  /** `X-Usage-Current`, `-Limit`, `-Remaining`, `-Bypassed`, `X-Provider-Used` where credits are metered. Default on. */
  usage: boolean
}

export const DEFAULT_HEADER_FAMILIES: HeaderFamilies = {
  requestId: true,
  rateLimit: true,
  ietf: false,
  usage: true,
}

/** The limit whose figures the rate-limit headers report. */
export interface LimitFigures {
  name: string
  limit: number
  remaining: number
  /** Milliseconds until the limit is fully available again. */
  resetMs: number
  /** The policy window in milliseconds (0: all-time). */
  windowMs: number
}

/**
 * A copy of `headers` with `name` set. Object spread with extra keys takes V8's slow path
 * (microseconds on Node 20), so header records are copied with a loop.
 */
export function withHeader(
  headers: Record<string, string>,
  name?: string,
  value?: string,
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k in headers) out[k] = headers[k]!
  if (name !== undefined && value !== undefined) out[name] = value
  return out
}

const seconds = (ms: number) => String(Math.max(0, Math.ceil(ms / 1000)))

/**
 * The de-facto `X-RateLimit-*` family (as GitHub and the seeds send it). `X-RateLimit-Reset`
 * is in seconds from now, like the IETF `t` parameter, not an epoch time.
 */
export function setRateLimitHeaders(out: Record<string, string>, f: LimitFigures): void {
  out['X-RateLimit-Limit'] = String(f.limit)
  out['X-RateLimit-Remaining'] = String(Math.max(0, f.remaining))
  if (Number.isFinite(f.resetMs)) out['X-RateLimit-Reset'] = seconds(f.resetMs)
}

/**
 * IETF `RateLimit-Policy` and `RateLimit` structured fields,
 * https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/ (draft 09):
 * `RateLimit-Policy: "per-minute";q=60;w=60` and `RateLimit: "per-minute";r=59;t=1`.
 */
export function setIetfHeaders(out: Record<string, string>, f: LimitFigures): void {
  const w = f.windowMs > 0 ? `;w=${seconds(f.windowMs)}` : ''
  out['RateLimit-Policy'] = `"${f.name}";q=${f.limit}${w}`
  const t = Number.isFinite(f.resetMs) ? `;t=${seconds(f.resetMs)}` : ''
  out['RateLimit'] = `"${f.name}";r=${Math.max(0, f.remaining)}${t}`
}

/** `Retry-After` in whole seconds (RFC 9110 §10.2.3), at least 1. */
export function setRetryAfter(out: Record<string, string>, retryAfterMs: number): void {
  if (Number.isFinite(retryAfterMs))
    out['Retry-After'] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)))
}

/** An amount as text: on the amount grid (`limits/amount`), so it reads as the decimal it is. */
const num = (n: number) => (Number.isFinite(n) ? String(roundAmount(n)) : 'unlimited')

/**
 * The usage family of `001_da102ff7c76ebfc9.txt`: credits of the current period after this
 * request's charge. Positional arguments: it runs once per metered response.
 */
export function setUsageHeaders(out: Record<string, string>, used: number, limit: number): void {
  out['X-Usage-Current'] = num(used)
  out['X-Usage-Limit'] = num(limit)
  out['X-Usage-Remaining'] = num(Math.max(0, limit - used))
}

/**
 * Whether the request ran on the caller's own provider key (BYOK), so the charge was waived,
 * and which provider served it; sent with the usage family.
 */
export function setBypassHeaders(
  out: Record<string, string>,
  bypassed: boolean,
  provider: string | null,
): void {
  out['X-Usage-Bypassed'] = bypassed ? 'true' : 'false'
  if (provider) out['X-Provider-Used'] = provider
}

/**
 * The name each of tollbooth's headers goes out under on every adapter: lowercase, as Fastify,
 * Hono (its `Headers`) and HTTP/2 send every header anyway, so the three adapters send the
 * same bytes. Header names are case-insensitive (RFC 9110 §5.1); the records keep the names
 * above. Precomputed: the frameworks and Node lowercase each name they are given, and a name
 * that changes is a new string each time, which V8 then looks up in its string table to use
 * as a property key (Fastify, eight headers: 5,650 instructions a request in that lookup,
 * 460 with these names; bench/NOTES.md, session 30); a lowercase name comes back as it is.
 * Written out, so each is a literal, which V8 keeps internalized from the start.
 */
const WIRE = new Map([
  ['X-Request-Id', 'x-request-id'],
  ['X-RateLimit-Limit', 'x-ratelimit-limit'],
  ['X-RateLimit-Remaining', 'x-ratelimit-remaining'],
  ['X-RateLimit-Reset', 'x-ratelimit-reset'],
  ['RateLimit-Policy', 'ratelimit-policy'],
  ['RateLimit', 'ratelimit'],
  ['Retry-After', 'retry-after'],
  ['X-Usage-Current', 'x-usage-current'],
  ['X-Usage-Limit', 'x-usage-limit'],
  ['X-Usage-Remaining', 'x-usage-remaining'],
  ['X-Usage-Bypassed', 'x-usage-bypassed'],
  ['X-Provider-Used', 'x-provider-used'],
  ['WWW-Authenticate', 'www-authenticate'],
  ['Content-Type', 'content-type'],
])

/** `name` as it goes out: lowercase (see `WIRE`). */
export function wireName(name: string): string {
  return WIRE.get(name) ?? name.toLowerCase()
}

/**
 * Writes an admitted request's headers the way every adapter does: under their wire names, and
 * each only where the response has no header of that name yet, in any case. So tollbooth's
 * headers are defaults: one set by a middleware in front of the guard or by the handler stays,
 * whether tollbooth writes before the handler or, for the usage figures, after it
 * (docs/headers.md). `has` and `set` are the response's own methods, called on `target`.
 */
export function setDefaultHeaders<T>(
  target: T,
  out: Record<string, string>,
  has: (this: T, name: string) => boolean,
  set: (this: T, name: string, value: string) => unknown,
): void {
  for (const name in out) {
    const wire = wireName(name)
    if (!has.call(target, wire)) set.call(target, wire, out[name]!)
  }
}

/** RFC 6750 §3: a 401 names the scheme, and the error when a token was presented. */
export function wwwAuthenticate(keyPresented: boolean): string {
  return keyPresented ? 'Bearer error="invalid_token"' : 'Bearer'
}
