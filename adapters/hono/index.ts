/**
 * @module tollbooth/hono
 *
 * `requireApiKey` for Hono: authenticates with the core, answers a denial from its prepared
 * record, exposes the admission as `c.get('apiKey')`, writes the response headers after the
 * handler (so usage figures include a cost the handler reported) and settles exactly once, at
 * the true end of the response (src/response-end.ts): on Node, the `ServerResponse`'s `close`
 * after `finish` (the body was written) or alone (the client went away); on Bun, Deno and
 * Workers, the end or the cancellation of the body, passed through a stream that sees both (on
 * Workers, kept alive with `ctx.waitUntil` from admission until it settles, or workerd stops a
 * Worker whose client left; there a body left unread for `abortSettleMs` counts as a departed
 * client, as workerd neither reads nor cancels the answer of a client it did not see leave). A
 * request whose client went away settles (499) once the handler's work is done: the handler,
 * its body's cancel, and the callback of `streamSSE` / `stream` / `streamText` from here. A
 * WebSocket upgrade on `@hono/node-ws` settles (101) when its socket closes, and a refused one
 * is answered on the socket (adapters/node/session.ts); on Bun and Deno too (./sessions.ts).
 */

import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { matchedRoutes } from 'hono/route'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import {
  type Admission,
  argumentError,
  ConfigError,
  checkTollboothArg,
  clientGone,
  drainBody,
  endWork,
  guardedTwice,
  type HeaderSource,
  handlerFailed,
  headSent,
  keepAlive,
  type RouteOptions,
  responseEnded,
  responseStarted,
  setDefaultHeaders,
  type Tollbooth,
  watchBody,
} from '../../src/internal.js'
import { watchQueued } from '../node/queued.js'
import {
  catchSocketErrors,
  handedOver,
  refuseUpgrade,
  type UpgradeSocket,
  watchSession,
} from '../node/session.js'
import { closedAlready, writtenInFull } from '../node/written.js'
import { sessionOpened, watchUpgrade } from './sessions.js'

declare module 'hono' {
  interface ContextVariableMap {
    /** The admitted request: key, account, provider keys, `charge()` and `report()`. */
    apiKey: Admission
  }
}

/** The route options of every adapter, plus where Hono finds the client's socket address. */
export interface HonoRouteOptions extends RouteOptions {
  /**
   * The client's socket address (before `trustProxy` applies). By default: `@hono/node-server`'s
   * socket, Bun's `server.requestIP()` (`Bun.serve({ fetch: app.fetch })`), Deno's `remoteAddr`
   * (`Deno.serve(app.fetch)`), `CF-Connecting-IP` on Workers. Pass your own where the runtime
   * hands the app none of these, e.g. `(c) => getConnInfo(c).remote.address`.
   */
  socketAddress?: (c: Context) => string | null | undefined
}

/** What `@hono/node-server` puts in `c.env` (its `HttpBindings`), read without importing it. */
interface NodeBindings {
  incoming?: {
    headers: Record<string, string | string[] | undefined>
    socket: ({ remoteAddress?: string } & UpgradeSocket) | null
    closed: boolean
    once(event: 'close', listener: () => void): unknown
  }
  outgoing?: {
    /** True once `close` was emitted (HTTP/1.1; see `closedAlready`). */
    closed?: boolean
    /** HTTP/2's stream. */
    stream?: { destroyed: boolean } | null
    /** Null while queued behind a pipelined response on its connection. */
    socket: unknown
    writableFinished: boolean
    writableEnded: boolean
    headersSent: boolean
    statusCode: number
    hasHeader(name: string): boolean
    setHeader(name: string, value: string): unknown
    writeHead(status: number, a?: unknown, b?: unknown): unknown
    on(event: 'close', listener: (this: never) => void): unknown
    emit(event: 'close'): boolean
  }
}

/** What Bun (its server) and Deno (the handler's info) pass as `c.env`, read without their types. */
interface RuntimeBindings {
  requestIP?: (request: Request) => { address: string } | null
  remoteAddr?: { hostname?: string }
}

/** The client's socket address as the runtime hands it to the app (see `socketAddress`). */
function runtimeAddress(c: Context): string | null | undefined {
  const env = c.env as (NodeBindings & RuntimeBindings) | undefined
  if (env?.incoming) return env.incoming.socket?.remoteAddress
  if (typeof env?.requestIP === 'function') return env.requestIP(c.req.raw)?.address
  if (typeof env?.remoteAddr?.hostname === 'string') return env.remoteAddr.hostname
  // Workers: the edge sets it (a client's own value is overwritten); `cf` marks a Worker.
  if ((c.req.raw as { cf?: unknown }).cf) return c.req.raw.headers.get('cf-connecting-ip')
  return undefined
}

/**
 * Requires a valid API key on the routes it guards.
 *
 * @param tb the tollbooth instance
 * @param [options.kind='consumption'] the key kind the route takes
 * @param [options.scopes=[]] scopes the key must all have
 * @param [options.cost] credits held at admission and charged after the response
 * @param [options.trustProxy=false] the proxies in front: their number (`X-Forwarded-For`),
 *   `{ hops, header: 'forwarded' }` (RFC 7239), `{ hops: 1, header: 'x-real-ip' }`, or true
 *   for every hop (see `TrustProxy`)
 * @returns a middleware named `requireApiKey`
 * @throws {ConfigError} at construction, naming a bad option, or a `tb` that is not a tollbooth
 *   instance: `requireApiKey: tb must be a tollbooth instance from createTollbooth(), got …`
 * @example
 * ```ts
 * app.use('/v1/*', requireApiKey(tb, { cost: 1, category: 'tts' }))
 * app.post('/v1/synthesize', (c) => c.json({ account: c.get('apiKey').accountId }))
 * ```
 */
export function requireApiKey(tb: Tollbooth, options: HonoRouteOptions = {}): MiddlewareHandler {
  checkTollboothArg('requireApiKey', tb)
  const { socketAddress = runtimeAddress, ...routeOptions } = options
  if (typeof socketAddress !== 'function')
    throw argumentError(
      'requireApiKey',
      'options.socketAddress',
      'must be a function of the Hono context, e.g. (c) => getConnInfo(c).remote.address',
      socketAddress,
    )
  const route = tb.route(routeOptions)

  /**
   * `close` of the ServerResponse: after `finish`, the end of the body; alone, a client gone.
   * A body written in full settles with its status once the handler's work is done (at once,
   * but for an answer a middleware in front gave while the handler still runs: `timeout()`'s
   * 504, whose handler keeps its slot until it ends).
   */
  function onClose(this: Tracked): void {
    const decision = this[ADMISSION]!
    if (writtenInFull(this)) headSent(tb, decision, route, this.statusCode)
    else clientGone(tb, decision, route)
  }

  const consumption = (routeOptions.kind ?? 'consumption') === 'consumption'

  /**
   * An admitted upgrade on `@hono/node-ws`: its `upgradeWebSocket` answers an empty 200, after
   * which the library completes the upgrade (the 101) on the socket; the session settles with
   * 101 when that socket closes (`watchSession`). Any other answer (a route that is not a
   * WebSocket's, an upgrade to another protocol) is written as its status line alone, and the
   * connection closed: it settles now, with its status.
   */
  async function upgraded(
    c: Context,
    next: () => Promise<void>,
    decision: Admission,
    incoming: NonNullable<NodeBindings['incoming']>,
  ): Promise<void> {
    try {
      await next()
    } catch (err) {
      handlerFailed(tb, decision)
      throw err
    }
    const res = c.res
    const socket = incoming.socket
    if ((res.status === 200 && res.body === null) || res.status === 101) {
      if (socket === null || !watchSession(tb, decision, incoming, socket))
        clientGone(tb, decision, route)
    } else responseEnded(tb, decision, res.status)
    endWork(decision)
  }

  return async function requireApiKey(c, next) {
    if (c.get('apiKey') !== undefined) throw guardedTwice(c.req.method, c.req.path)
    if (consumption) managementBehind(c)
    const node = c.env as NodeBindings | undefined
    // On Node, the lowercase header record as it came: building a Web Headers costs more.
    const headers: HeaderSource = node?.incoming?.headers ?? c.req.raw.headers
    // `@hono/node-ws` runs the app for a server's `upgrade` event: a request with no response
    // object, its socket handed over (see `upgraded`), no one listening for its errors. Any
    // upgrade, not only to a WebSocket (`curl --http2` asks for h2c): the library writes the
    // answer's status line alone, and never reads its body, so it settles by its status.
    const upgrade = node?.incoming && !node.outgoing && handedOver(node.incoming)
    if (upgrade && node.incoming!.socket !== null) catchSocketErrors(node.incoming!.socket)
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
      if (upgrade) refuseOnSocket(node.incoming!.socket, decision)
      // Every header (the content type too) goes in the init: @hono/node-server's Response
      // would drop a later set().
      const res = new Response(decision.body, {
        status: decision.status,
        headers: decision.headers,
      })
      throw new HTTPException(decision.status as ContentfulStatusCode, { res })
    }
    c.set('apiKey', decision)
    if (upgrade) return upgraded(c, next, decision, node.incoming!)
    // On Node the ServerResponse tells how the response ended: `close` after `finish` (the body
    // was written in full) or alone (the client went away). One listener per middleware and
    // one property per response, no closure per request.
    const outgoing = node?.outgoing as Tracked | undefined
    let waitUntil: ((until: Promise<void>) => void) | undefined
    let session: ReturnType<typeof watchUpgrade> | undefined
    if (outgoing) {
      outgoing[ADMISSION] = decision
      outgoing.on('close', onClose)
      // A client that left while the admission was in flight (a store's round trip): its
      // `close` has been emitted already (HTTP/2: its stream is gone).
      if (closedAlready(outgoing)) onClose.call(outgoing)
      // A response queued behind a pipelined one gets no `close` if the connection goes first.
      else if (node?.incoming) watchQueued(node.incoming, outgoing)
    } else {
      // On Workers, kept alive from here: a Worker whose client left is stopped at once,
      // handler included, unless something waits for it.
      waitUntil = workerWaitUntil(c)
      if (waitUntil) keepAlive(decision, waitUntil)
      // Bun, Deno: a WebSocket session settles when its socket closes (./sessions.ts).
      if (c.req.raw.headers.get('upgrade')?.toLowerCase() === 'websocket')
        session = watchUpgrade(tb, decision, c.req.raw, c.env)
    }
    try {
      await next()
    } catch (err) {
      // No response to write: the handler's own end is the response's.
      handlerFailed(tb, decision)
      throw err
    }
    const status = c.res.status
    const out = decision.responseHeaders(status)
    responseStarted(tb, decision)
    if (outgoing) {
      const body = streamedBody(c.res)
      // An answer already in the server's hands (see `answeredInFront`): settled by its close.
      if (answeredInFront(body)) {
        endWork(decision)
        return
      }
      if (!outgoing.headersSent) {
        // Into the head @hono/node-server writes next, in its own writeHead() call: reading
        // c.res.headers would build a Headers object and, for most bodies, a whole Response;
        // and a setHeader() first would take Node's writeHead() off its fast path (every
        // header of the response set one by one again): 3-5 µs of CPU a request with 10
        // headers (bench/NOTES.md, session 10).
        outgoing[HEAD] = out
        outgoing[WRITE_HEAD] = outgoing.writeHead
        outgoing.writeHead = writeHeadWithUsage
      } else writeHeaders(c, out)
      // A streamed body (an upstream's passed on, a ReadableStream of the handler's) is the
      // handler's work until it ends or its cancel has finished, as elsewhere: a client gone
      // mid-stream then settles with what the stream reported on its way out.
      // Its status and headers as the init, not the response itself: `@hono/node-server`'s own
      // Response made without an init (`new Response(stream)`) keeps none, and one given as the
      // init of another throws reading it. (The server writes no status text.)
      if (body !== null && c.req.method === 'HEAD') {
        // Produced as for the GET, and dropped: the HEAD is charged what the handler reports.
        const init = { status, headers: c.res.headers }
        c.res = new Response(drainBody(tb, decision, { route, body, status }), init)
      } else if (body !== null) {
        const init = { status, headers: c.res.headers }
        c.res = new Response(watchBody(tb, decision, { route, body, status }), init)
      }
      endWork(decision)
      return
    }
    if (answeredInFront(c.res.body)) {
      responseEnded(tb, decision, status)
      endWork(decision)
      return
    }
    writeHeaders(c, out)
    if (session !== undefined && sessionOpened(session, c.req.raw, c.res)) {
      endWork(decision)
      return
    }
    // Elsewhere (Bun, Deno, Workers), the body is passed through a stream that sees its end or
    // its cancellation, or whose request's signal aborts first (Deno, before the answer). A
    // response without a body ends here; a HEAD one's body is produced as for the GET and
    // dropped, and the request settles when it ends.
    const body = c.res.body
    if (body === null) responseEnded(tb, decision, status)
    else if (c.req.method === 'HEAD')
      c.res = new Response(drainBody(tb, decision, { route, body, status, waitUntil }), c.res)
    else {
      const signal = c.req.raw.signal as AbortSignal | undefined
      c.res = new Response(
        watchBody(tb, decision, { route, body, status, signal, waitUntil }),
        c.res,
      )
    }
    endWork(decision)
  }
}

/**
 * Answers a refused upgrade on its socket with the refusal's status, headers and JSON body:
 * `@hono/node-ws` writes only a status line for the app's answer, and ends the socket itself
 * after this (its `end` is then dropped: a write after the end would throw on a socket that
 * has no `error` listener during an upgrade).
 */
function refuseOnSocket(socket: UpgradeSocket | null, denial: Parameters<typeof refuseUpgrade>[1]) {
  if (socket === null) return
  refuseUpgrade(socket, denial)
  ;(socket as { end: unknown }).end = function ended(this: UpgradeSocket) {
    return this
  }
}

/** The symbol under which `@hono/node-server`'s Response keeps its parts, once seen. */
let partsKey: symbol | undefined

/** `@hono/node-server`'s parts of a Response not built yet: `[status, body, headers]`. */
const isParts = (v: unknown): v is [number, unknown, unknown] =>
  Array.isArray(v) && v.length === 3 && typeof v[0] === 'number'

const streamOf = (body: unknown): ReadableStream<Uint8Array> | null =>
  typeof (body as { getReader?: unknown } | null)?.getReader === 'function'
    ? (body as ReadableStream<Uint8Array>)
    : null

/**
 * The body of a response on Node when it is a stream, else null, read without building a whole
 * Response for a string body: `@hono/node-server`'s own Response keeps `[status, body,
 * headers]` under a symbol of its own until something reads its body (reading it builds the
 * global Response, which the server then writes from the parts instead). Its symbol is found
 * once, by that shape. Any other response (a fetch()'s, one already built, a body the server
 * keeps no parts for) is read as it is: the server builds the same global Response to write it.
 */
function streamedBody(res: Response): ReadableStream<Uint8Array> | null {
  const own = res as unknown as Record<symbol, unknown>
  if (partsKey !== undefined) {
    const parts = own[partsKey]
    if (isParts(parts)) return streamOf(parts[1])
  }
  const symbols = Object.getOwnPropertySymbols(res)
  for (let i = 0; i < symbols.length; i++) {
    const parts = own[symbols[i]!]
    if (isParts(parts)) {
      partsKey = symbols[i]
      return streamOf(parts[1])
    }
  }
  return res.body
}

/**
 * True when the response's body is being read already, when the handler has only just ended:
 * a middleware in front answered while the handler still ran (`timeout()`'s 504, which Hono
 * keeps as `c.res` and the runtime reads), so this response went out as it is, and the
 * handler's own result is dropped. Its body cannot be passed through a watcher any more (its
 * reader is taken); it settles with its status (on Node, when its `close` comes).
 */
const answeredInFront = (body: ReadableStream<Uint8Array> | null): boolean => body?.locked === true

/** Set by tollbooth/management on each of its routes' handlers. */
const MANAGEMENT_ROUTE = Symbol.for('tollbooth.managementRoute')

/**
 * Throws a ConfigError when a management API route comes after this consumption guard for the
 * request: each key kind would be told to use the other (a management key refused here, a
 * consumption key charged here and then refused by the management API).
 */
function managementBehind(c: Context): void {
  const routes = matchedRoutes(c)
  for (let i = c.req.routeIndex + 1; i < routes.length; i++) {
    // app.route() wraps a sub-app's handler in its onError, keeping the original under
    // `__COMPOSED_HANDLER` (once per level of nesting).
    let handler = routes[i]!.handler as { __COMPOSED_HANDLER?: unknown } | undefined
    while (handler && !(MANAGEMENT_ROUTE in handler))
      handler = handler.__COMPOSED_HANDLER as typeof handler
    if (!handler) continue
    throw new ConfigError(
      `requireApiKey(tb) (consumption keys) runs before the management API route ${c.req.method} ${routes[i]!.path}, ` +
        'so no key can reach it. Mount the management API first (app.route(base, managementApi(tb)) ' +
        'before app.use(..., requireApiKey(tb))), or give requireApiKey a path that leaves the ' +
        "management API out (app.use('/v1/chat/*', requireApiKey(tb))).",
    )
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
/** The usage headers for the head, and the writeHead they wait in front of. */
const HEAD = Symbol('tollbooth.head')
const WRITE_HEAD = Symbol('tollbooth.writeHead')
type Outgoing = NonNullable<NodeBindings['outgoing']>
type Tracked = Outgoing & {
  [ADMISSION]?: Admission
  [HEAD]?: Record<string, string> | undefined
  [WRITE_HEAD]?: Outgoing['writeHead']
}

/**
 * The ServerResponse's writeHead for one head: tollbooth's headers go in with the response's
 * own (which win over a header of the same name, as they did when tollbooth's were set first),
 * so Node writes them all at once. writeHead(status, [message,] headers), as Node takes it;
 * raw header arrays are set one by one, as before.
 */
function writeHeadWithUsage(this: Tracked, status: number, a?: unknown, b?: unknown): unknown {
  const original = this[WRITE_HEAD]!
  this.writeHead = original
  const out = this[HEAD]!
  this[HEAD] = undefined
  const message = typeof a === 'string'
  const given = message ? b : a
  if (
    given !== undefined &&
    (typeof given !== 'object' || given === null || Array.isArray(given))
  ) {
    setDefaultHeaders(this, out, this.hasHeader, this.setHeader)
    return original.call(this, status, a, b)
  }
  const theirs = given as Record<string, unknown> | undefined
  // tollbooth's under their lowercase names, but for one set on the ServerResponse already;
  // the response's own (lowercase from @hono/node-server) then replace them, and one it has in
  // another case replaces it too (the rule of `setDefaultHeaders`).
  const head: Record<string, unknown> = {}
  setDefaultHeaders(this, out, this.hasHeader, (name, value) => {
    head[name] = value
  })
  if (theirs)
    for (const name in theirs) {
      const lower = name.toLowerCase()
      if (lower !== name && lower in head) delete head[lower]
      head[name] = theirs[name]
    }
  return message ? original.call(this, status, a, head) : original.call(this, status, head)
}

/**
 * Sets the headers on `c.res` itself, as hono's cors does (c.header() after the handler
 * rebuilds the Response); a header the response has already (set in front of the guard or
 * by the handler) stays.
 */
function writeHeaders(c: Context, out: Record<string, string>): void {
  let headers = c.res.headers
  try {
    setDefaultHeaders(headers, out, headers.has, headers.set)
  } catch {
    // A proxied fetch() Response has immutable headers: Hono's c.res setter makes a copy.
    c.res = new Response(c.res.body, c.res)
    headers = c.res.headers
    setDefaultHeaders(headers, out, headers.has, headers.set)
  }
}

export { sendUsageHeaders } from '../node/session.js'
export { stream, streamSSE, streamText } from './streaming.js'
