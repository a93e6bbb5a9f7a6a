/**
 * @module tollbooth/hono
 *
 * `requireApiKey` for Hono: authenticates with the core, answers a denial from its prepared
 * record, exposes the admission as `c.get('apiKey')`, writes the response headers after the
 * handler (so usage figures include a cost the handler reported) and settles exactly once:
 * after the handler, also when it throws, or with status 499 as soon as the client goes away.
 */

import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { Admission, HeaderSource, RouteOptions, Tollbooth } from '../../src/index.js'

declare module 'hono' {
  interface ContextVariableMap {
    /** The admitted request: key, account, provider keys, `charge()` and `report()`. */
    apiKey: Admission
  }
}

/** The route options of every adapter, plus where Hono finds the client's socket address. */
export interface HonoRouteOptions extends RouteOptions {
  /** The client's socket address; by default read from `@hono/node-server`'s `c.env.incoming`. */
  socketAddress?: (c: Context) => string | null | undefined
}

/** What `@hono/node-server` puts in `c.env` (its `HttpBindings`), read without importing it. */
interface NodeBindings {
  incoming?: {
    headers: Record<string, string | string[] | undefined>
    socket?: { remoteAddress?: string }
  }
  outgoing?: {
    writableFinished: boolean
    headersSent: boolean
    setHeader(name: string, value: string): unknown
    on(event: 'close', listener: (this: never) => void): unknown
  }
}

const nodeSocket = (c: Context) =>
  (c.env as NodeBindings | undefined)?.incoming?.socket?.remoteAddress

/**
 * Requires a valid API key on the routes it guards.
 *
 * @param tb the tollbooth instance
 * @param [options.kind='consumption'] the key kind the route takes
 * @param [options.scopes=[]] scopes the key must all have
 * @param [options.cost] credits held at admission and charged after the response
 * @param [options.trustProxy=false] the proxies in front: their number (`X-Forwarded-For`),
 *   `{ hops, header: 'forwarded' }` (RFC 7239), or true for every hop (see `TrustProxy`)
 * @returns a middleware named `requireApiKey`
 * @throws {ConfigError} at construction, naming a bad option
 * @example
 * ```ts
 * app.use('/v1/*', requireApiKey(tb, { cost: 1, category: 'tts' }))
 * app.post('/v1/synthesize', (c) => c.json({ account: c.get('apiKey').accountId }))
 * ```
 */
export function requireApiKey(tb: Tollbooth, options: HonoRouteOptions = {}): MiddlewareHandler {
  const { socketAddress = nodeSocket, ...routeOptions } = options
  const route = tb.route(routeOptions)

  return async function requireApiKey(c, next) {
    const node = c.env as NodeBindings | undefined
    // On Node, the lowercase header record as it came: building a Web Headers costs more.
    const headers: HeaderSource = node?.incoming?.headers ?? c.req.raw.headers
    const d = tb.decide(
      {
        headers,
        ip: socketAddress(c) ?? null,
        method: c.req.method,
        path: c.req.path,
      },
      route,
    )
    // Synchronous on a cached key with in-process counters: no promise, no microtask.
    const decision = d instanceof Promise ? await d : d
    if (!decision.allowed) {
      // Every header (the content type too) goes in the init: @hono/node-server's Response
      // would drop a later set().
      const res = new Response(decision.body, {
        status: decision.status,
        headers: decision.headers,
      })
      throw new HTTPException(decision.status as ContentfulStatusCode, { res })
    }
    c.set('apiKey', decision)
    // The client going away settles at once (499), so a lease or credit hold does not wait for
    // the handler. On Node the socket tells (a shared listener: no closure per request);
    // elsewhere the request's abort signal does. Admissions holding nothing settle after next().
    if (decision.holds) {
      const outgoing = node?.outgoing as Tracked | undefined
      if (outgoing) {
        outgoing[ADMISSION] = decision
        outgoing[TB] = tb
        outgoing.on('close', settleOnClose)
      } else {
        c.req.raw.signal?.addEventListener(
          'abort',
          () => {
            if (!decision.settled) tb.settleLater(decision, { status: 499 })
          },
          { once: true },
        )
      }
    }
    try {
      await next()
    } catch (err) {
      if (!decision.settled) tb.settleLater(decision, { status: 500 })
      throw err
    }
    const status = c.res.status
    const out = decision.responseHeaders(status)
    const outgoing = node?.outgoing
    if (outgoing && !outgoing.headersSent) {
      // On Node, straight onto the ServerResponse: @hono/node-server's writeHead() merges
      // them, and its fast path (a plain header record, no Web Headers) stays fast. Reading
      // c.res.headers would build a Headers object and, for most bodies, a whole Web Response.
      for (const name in out) outgoing.setHeader(name, out[name]!)
    } else {
      writeHeaders(c, out)
    }
    if (!decision.settled) tb.settleLater(decision, { status })
  }
}

const ADMISSION = Symbol('tollbooth.admission')
const TB = Symbol('tollbooth.tb')
type Tracked = NonNullable<NodeBindings['outgoing']> & { [ADMISSION]?: Admission; [TB]?: Tollbooth }

/** A shared `close` listener: settles with 499 when the response did not finish. */
function settleOnClose(this: Tracked): void {
  const decision = this[ADMISSION]!
  if (!this.writableFinished && !decision.settled) this[TB]!.settleLater(decision, { status: 499 })
}

/** Sets the headers on `c.res` itself, as hono's cors does (c.header() after the handler rebuilds the Response). */
function writeHeaders(c: Context, out: Record<string, string>): void {
  try {
    const resHeaders = c.res.headers
    for (const name in out) resHeaders.set(name, out[name]!)
  } catch {
    // A proxied fetch() Response has immutable headers: Hono's c.res setter makes a copy.
    c.res = new Response(c.res.body, c.res)
    for (const name in out) c.res.headers.set(name, out[name]!)
  }
}
