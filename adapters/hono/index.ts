/**
 * @module tollbooth/hono
 *
 * `requireApiKey` for Hono: authenticates with the core, answers a denial from its prepared
 * record, exposes the admission as `c.get('apiKey')`, writes the response headers after the
 * handler (so usage figures include a cost the handler reported) and settles exactly once, at
 * the true end of the response (src/response-end.ts): on Node, the `ServerResponse`'s `close`
 * after `finish` (the body was written) or alone (the client went away); on Bun, Deno and
 * Workers, the end or the cancellation of the body, passed through a stream that sees both (on
 * Workers, kept alive with `ctx.waitUntil` until it settles, or workerd stops a Worker whose
 * client left and never cancels its body). A
 * request whose client went away settles (499) once the handler's work is done: the handler,
 * its body's cancel, and the callback of `streamSSE` / `stream` / `streamText` from here.
 */

import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import {
  type Admission,
  clientGone,
  endWork,
  type HeaderSource,
  type RouteOptions,
  responseEnded,
  responseStarted,
  type Tollbooth,
  watchBody,
} from '../../src/internal.js'

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
    statusCode: number
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

  /** `close` of the ServerResponse: after `finish`, the end of the body; alone, a client gone. */
  function onClose(this: Tracked): void {
    const decision = this[ADMISSION]!
    if (this.writableFinished) responseEnded(tb, decision, this.statusCode)
    else clientGone(tb, decision, route)
  }

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
    // On Node the ServerResponse tells how the response ended: `close` after `finish` (the body
    // was written in full) or alone (the client went away). One listener per middleware and
    // one property per response, no closure per request.
    const outgoing = node?.outgoing as Tracked | undefined
    if (outgoing) {
      outgoing[ADMISSION] = decision
      outgoing.on('close', onClose)
    }
    try {
      await next()
    } catch (err) {
      // No response to write: the handler's own end is the response's.
      if (!decision.settled) tb.settleLater(decision, { status: 500, outcome: 'error' })
      throw err
    }
    const status = c.res.status
    const out = decision.responseHeaders(status)
    responseStarted(tb, decision)
    if (outgoing) {
      if (!outgoing.headersSent) {
        // Straight onto the ServerResponse: @hono/node-server's writeHead() merges them, and
        // its fast path (a plain header record, no Web Headers) stays fast. Reading
        // c.res.headers would build a Headers object and, for most bodies, a whole Response.
        for (const name in out) outgoing.setHeader(name, out[name]!)
      } else writeHeaders(c, out)
      endWork(decision)
      return
    }
    writeHeaders(c, out)
    // Elsewhere (Bun, Deno, Workers), the body is passed through a stream that sees its end or
    // its cancellation, or whose request's signal aborts first (Deno, before the answer). A
    // response without a body (or a HEAD one, whose body is dropped) ends here.
    const body = c.res.body
    if (body === null || c.req.method === 'HEAD') responseEnded(tb, decision, status)
    else {
      const signal = c.req.raw.signal as AbortSignal | undefined
      c.res = new Response(
        watchBody(tb, decision, route, body, status, signal, workerWaitUntil(c)),
        c.res,
      )
    }
    endWork(decision)
  }
}

/**
 * A Worker's `ctx.waitUntil`, bound; undefined elsewhere (Hono's getter throws without one, and
 * Bun hands the server as the context).
 */
function workerWaitUntil(c: Context): ((until: Promise<void>) => void) | undefined {
  let ctx: { waitUntil?: unknown } | undefined
  try {
    ctx = c.executionCtx as { waitUntil?: unknown } | undefined
  } catch {
    return undefined
  }
  const waitUntil = ctx?.waitUntil
  return typeof waitUntil === 'function'
    ? (until) => (waitUntil as (p: Promise<void>) => void).call(ctx, until)
    : undefined
}

const ADMISSION = Symbol('tollbooth.admission')
type Tracked = NonNullable<NodeBindings['outgoing']> & { [ADMISSION]?: Admission }

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

export { stream, streamSSE, streamText } from './streaming.js'
