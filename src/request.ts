/**
 * @module request
 *
 * The framework-neutral request the adapters hand to `authenticate()`, and the credential
 * extraction of pipeline step 1 (Bearer, `x-api-key`, or the user's own extractor).
 */

import { z } from 'zod'

/**
 * Request headers in any of the shapes adapters have at hand: a Web `Headers`, Node's
 * lowercase record, or a getter. Names are looked up in lowercase.
 */
export type HeaderSource =
  | { get(name: string): string | null }
  | Record<string, string | string[] | undefined>
  | ((name: string) => string | undefined)

/** What the core needs of a request. */
export interface TollboothRequest {
  headers: HeaderSource
  /**
   * The address of the peer that connected (the socket's). `authenticate()` replaces it with
   * the client's address behind the proxies the route's `trustProxy` trusts, so key sources,
   * cost functions and request logs see the client.
   */
  ip: string | null
  method: string
  /** The path without the query string. */
  path: string
  /**
   * The parsed body, where the framework has parsed it before the guard runs (Fastify, whose
   * `preHandler` comes after parsing), so a route's `cost` and `tokens` estimates can read it.
   */
  body?: unknown
}

/** Reads one header (lowercase name) from any {@link HeaderSource}. */
export function readHeader(headers: HeaderSource, name: string): string | undefined {
  if (typeof headers === 'function') return headers(name)
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(n: string): string | null }).get(name) ?? undefined
  }
  const v = (headers as Record<string, string | string[] | undefined>)[name]
  return Array.isArray(v) ? v[0] : v
}

/** Where a route looks for the key: built-in sources, or a function of the request. */
export type KeySource = 'bearer' | 'x-api-key' | ((request: TollboothRequest) => string | undefined)

/** The presented credential, or undefined when the request carries none. */
export function extractKey(
  request: TollboothRequest,
  sources: ReadonlyArray<KeySource>,
): string | undefined {
  for (const source of sources) {
    if (source === 'bearer') {
      const auth = readHeader(request.headers, 'authorization')
      if (auth && auth.length > 7 && auth.charCodeAt(6) === 32 && isBearer(auth)) {
        return auth.slice(7).trim()
      }
    } else if (source === 'x-api-key') {
      const v = readHeader(request.headers, 'x-api-key')
      if (v) return v.trim()
    } else {
      const v = source(request)
      if (v) return v
    }
  }
  return undefined
}

const BEARER = 'bearer'

/**
 * Whether `auth` starts with the scheme `Bearer` in any case (RFC 9110: schemes are
 * case-insensitive). Compared by character: a regular expression over a slice of the header
 * was about 450 instructions a request (bench/NOTES.md, session 26). A character ORed with
 * 0x20 equals a lower-case letter only when it is that letter in either case.
 */
function isBearer(auth: string): boolean {
  for (let i = 0; i < 6; i++) if ((auth.charCodeAt(i) | 0x20) !== BEARER.charCodeAt(i)) return false
  return true
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The incoming `X-Request-Id` when it is safe to echo (1-128 of `A-Za-z0-9._:-`). */
export function incomingRequestId(request: TollboothRequest): string | undefined {
  const v = readHeader(request.headers, 'x-request-id')
  return v !== undefined && REQUEST_ID.test(v) ? v : undefined
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/

/** What an idempotency key must be: the `Idempotency-Key` header's rule and the 400's wording. */
export const IDEMPOTENCY_KEY_RULE = 'must be 1-255 printable ASCII characters (no space)'

/** Whether `v` is an idempotency key: 1-255 printable ASCII characters, no space. */
export function isIdempotencyKey(v: unknown): v is string {
  return typeof v === 'string' && IDEMPOTENCY_KEY.test(v)
}

/**
 * The `Idempotency-Key` header: its value when printable ASCII of 1-255 characters (no space),
 * undefined when absent, null when present with any other value (the request is refused 400:
 * ignored, the client's retry would be charged again without a word).
 */
export function idempotencyKey(request: TollboothRequest): string | null | undefined {
  const v = readHeader(request.headers, 'idempotency-key')
  return v === undefined ? undefined : isIdempotencyKey(v) ? v : null
}

/**
 * Whom to believe about the client's address.
 * - `false` (the default): the socket's peer. Behind a proxy that is the proxy, shared by
 *   every client; the failed-auth guard then applies its higher `proxiedLimit` to requests
 *   that carry forwarding headers (it cannot tell a proxy from a client adding them).
 * - a number n: n proxies in front, each appending to `X-Forwarded-For`; the client is the
 *   n-th address from the right (the socket being the last proxy), so addresses a client
 *   writes to the left of what the proxies add change nothing.
 * - `{ hops, header }`: the same with the header the proxies write, `x-forwarded-for` or
 *   RFC 7239 `forwarded` (its `for=` parameters).
 * - `{ hops: 1, header: 'x-real-ip' }`: the one address the proxy in front writes in
 *   `X-Real-IP` (nginx's `proxy_set_header X-Real-IP $remote_addr`, which replaces a client's
 *   own). For a proxy that writes no `X-Forwarded-For`, which then is the client's own.
 * - `true`: every hop trusted, the left-most address wins. Only safe when the proxy in front
 *   replaces the header the client sent instead of appending to it.
 */
export type TrustProxy =
  | boolean
  | number
  | { hops: number; header: 'x-forwarded-for' | 'forwarded' }
  | { hops: 1; header: 'x-real-ip' }

const { ipv4: IPV4, ipv6: IPV6 } = z.regexes

/**
 * True for a whole IPv4 address (dotted quad, no leading zeros) or IPv6 address (with `::`,
 * or a dotted quad in its last 32 bits), as zod's `z.ipv4()`/`z.ipv6()` take them: not a hex
 * word (`cafe`), a name or junk to store.
 */
function isIp(v: string): boolean {
  if (v.length > 45) return false
  const colon = v.lastIndexOf(':')
  if (colon < 0) return IPV4.test(v)
  if (v.indexOf('.', colon) < 0) return IPV6.test(v)
  // The dotted quad stands for the last two groups.
  return IPV4.test(v.slice(colon + 1)) && IPV6.test(`${v.slice(0, colon + 1)}0:0`)
}

/** One hop of a forwarding header as a bare IP (brackets, quotes and a port removed), or null. */
function hopAddress(raw: string | undefined): string | null {
  if (raw === undefined) return null
  let v = raw.trim()
  if (v.charCodeAt(0) === 34 /* " */ && v.endsWith('"')) v = v.slice(1, -1)
  if (v.charCodeAt(0) === 91 /* [ */) {
    const end = v.indexOf(']')
    if (end < 0) return null
    v = v.slice(1, end)
  } else if (v.indexOf(':') > 0 && v.indexOf(':') === v.lastIndexOf(':')) {
    // IPv4 with a port (`203.0.113.7:4711`); IPv6 has more than one colon.
    v = v.slice(0, v.indexOf(':'))
  }
  return ipAddress(v)
}

/**
 * `v` as the guard keys an address (lowercase: one IPv6 address, one counter, as Node's
 * socket addresses are; an IPv4-mapped IPv6 address as IPv4), or null when it is not an IP.
 */
export function ipAddress(v: string): string | null {
  return isIp(v) ? unmapped(v.toLowerCase()) : null
}

/** True for an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`), which {@link clientIp} unmaps. */
export function isMapped(ip: string | null): boolean {
  return ip !== null && ip.charCodeAt(0) === 58 /* : */ && unmapped(ip) !== ip
}

/** An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack socket reports) as IPv4. */
function unmapped(ip: string): string {
  return ip.length > 7 && ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

/** The `for=` values of an RFC 7239 `Forwarded` header, one per hop (undefined: none given). */
function forwardedFor(value: string): Array<string | undefined> {
  return value.split(',').map((element) => {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=')
      if (eq > 0 && pair.slice(0, eq).trim().toLowerCase() === 'for') return pair.slice(eq + 1)
    }
    return undefined
  })
}

/**
 * The client's IP: the socket's peer, or the address `trust` says the trusted proxies saw.
 * Walking the hops from the right, a hop that is not an IP (`unknown`, an obfuscated name,
 * junk) ends the walk: what lies to its left cannot be vouched for, and the last address
 * read is the client.
 */
export function clientIp(
  socket: string | null | undefined,
  headers: HeaderSource,
  trust: TrustProxy,
): string | null {
  const peer = socket ? unmapped(socket) : null
  if (trust === false) return peer
  const header = typeof trust === 'object' ? trust.header : 'x-forwarded-for'
  const raw = readHeader(headers, header)
  if (!raw) return peer
  // X-Real-IP is one address, the proxy's replacing any other: never a list to walk.
  const hops =
    header === 'forwarded' ? forwardedFor(raw) : header === 'x-real-ip' ? [raw] : raw.split(',')
  const n = trust === true ? hops.length : typeof trust === 'number' ? trust : trust.hops
  let ip = peer
  for (let i = hops.length - 1; i >= 0 && i >= hops.length - n; i--) {
    const hop = hopAddress(hops[i])
    if (hop === null) break
    ip = hop
  }
  return ip
}

/**
 * The address the failed-auth guard counts a request under when it has none (the socket has no
 * address, as a Unix socket's peer, and no trusted proxy named the client): the unspecified
 * address, which no client connects from, shared by every such request and held to
 * `failedAuth.proxiedLimit` as a proxy's address is. Without it such requests were never counted.
 */
export const NO_ADDRESS = '0.0.0.0'

/**
 * True when a request carries `X-Forwarded-For`, `Forwarded` or `X-Real-IP`: on a route that
 * does not trust proxies, its socket address may be a proxy's, shared by many clients (nginx's
 * common `proxy_set_header X-Real-IP $remote_addr` writes only the last).
 */
export function isForwarded(headers: HeaderSource): boolean {
  return (
    readHeader(headers, 'x-forwarded-for') !== undefined ||
    readHeader(headers, 'forwarded') !== undefined ||
    readHeader(headers, 'x-real-ip') !== undefined
  )
}
