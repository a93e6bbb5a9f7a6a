/**
 * @module request
 *
 * The framework-neutral request the adapters hand to `authenticate()`, and the credential
 * extraction of pipeline step 1 (Bearer, `x-api-key`, or the user's own extractor).
 */

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
  /** The client's IP as the adapter determined it (socket address, or proxy-aware by option). */
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
      if (
        auth &&
        auth.length > 7 &&
        auth.charCodeAt(6) === 32 &&
        /^bearer$/i.test(auth.slice(0, 6))
      ) {
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

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The incoming `X-Request-Id` when it is safe to echo (1-128 of `A-Za-z0-9._:-`). */
export function incomingRequestId(request: TollboothRequest): string | undefined {
  const v = readHeader(request.headers, 'x-request-id')
  return v !== undefined && REQUEST_ID.test(v) ? v : undefined
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/

/** The `Idempotency-Key` header when present and printable ASCII of 1-255 characters. */
export function idempotencyKey(request: TollboothRequest): string | undefined {
  const v = readHeader(request.headers, 'idempotency-key')
  return v !== undefined && IDEMPOTENCY_KEY.test(v) ? v : undefined
}

/**
 * Whom to believe about the client's address. `false` (the default): the socket's peer.
 * `true`: the leftmost `X-Forwarded-For` entry. A number n: the n-th entry from the right
 * (n trusted proxies in front). Trusting the header without a proxy lets anyone pick their IP.
 */
export type TrustProxy = boolean | number

/** The client IP from the socket address and, only when trusted, `X-Forwarded-For`. */
export function clientIp(
  socket: string | null | undefined,
  forwardedFor: string | undefined,
  trust: TrustProxy,
): string | null {
  if (trust !== false && forwardedFor) {
    const hops = forwardedFor.split(',')
    const pick = trust === true ? hops[0] : hops[Math.max(0, hops.length - trust)]
    const ip = pick?.trim()
    if (ip) return ip
  }
  if (!socket) return null
  return socket.startsWith('::ffff:') ? socket.slice(7) : socket
}
