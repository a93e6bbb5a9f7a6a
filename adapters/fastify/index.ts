/**
 * @module tollbooth/fastify
 *
 * tollbooth for Fastify 5: the `tollbooth` plugin guards the routes that ask for it (in
 * `config.tollbooth`, or all of them with `global: true`), and `requireApiKey` is the same
 * guard as a route's `preHandler`. The admission is `request.apiKey`; the response headers go
 * out in `onSend` (after the handler's charges); the request settles exactly once, at the true
 * end of the response (src/response-end.ts): when the response closes, with the reply's status
 * if it finished, or, when the client went away first, 499 once the handler's payload was sent
 * or the stream it returned closed. A `@fastify/websocket` session settles (101) when its socket
 * closes (adapters/node/session.ts). Only guarded routes get these hooks, so the others pay
 * nothing.
 */

import type {
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onErrorHookHandler,
  onSendHookHandler,
  preHandlerAsyncHookHandler,
  preHandlerHookHandler,
} from 'fastify'
import fp from 'fastify-plugin'
import {
  type Admission,
  ConfigError,
  checkTollboothArg,
  clientGone,
  type Decision,
  drainBody,
  endWork,
  guardedTwice,
  handlerFailed,
  headersFollowHandler,
  headSent,
  optionError,
  type ResolvedRoute,
  type RouteOptions,
  responseEnded,
  responseStarted,
  type Settlement,
  setDefaultHeaders,
  settlementOf,
  type Tollbooth,
  watchBody,
} from '../../src/internal.js'
import { watchQueued } from '../node/queued.js'
import {
  asksWebSocket,
  type HeadersEmitter,
  handedOver,
  isSession,
  sendUsageHeaders,
  type UpgradeSocket,
  watchSession,
} from '../node/session.js'
import { closedAlready, writtenInFull } from '../node/written.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The admitted request on guarded routes: key, account, `charge()` and `report()`. */
    apiKey: Admission
  }
  interface FastifyInstance {
    /** The tollbooth instance the plugin was registered with. */
    tollbooth: Tollbooth
    /** A route `preHandler` with the plugin's options, overridden by `options`. */
    requireApiKey(options?: FastifyRouteOptions): preHandlerAsyncHookHandler
  }
  interface FastifyContextConfig {
    /** Route options (merged over the plugin's), or false to leave a route unguarded. */
    tollbooth?: FastifyRouteOptions | false
  }
}

/** The route options of every adapter (the same names in tollbooth/hono and tollbooth/express). */
export type FastifyRouteOptions = RouteOptions

/** The plugin's options: the instance, whether every route is guarded, and route defaults. */
export interface TollboothPluginOptions extends FastifyRouteOptions {
  /** The tollbooth instance (`createTollbooth()`). */
  tb: Tollbooth
  /** Guard every route but those with `config: { tollbooth: false }`. Default false. */
  global?: boolean
}

const GUARD = Symbol('tollbooth.guard')
type Tag = { tb: Tollbooth; route: ResolvedRoute } | true
type Tagged = { [GUARD]?: Tag }

/**
 * The guard itself: authenticate, answer a denial, or leave the admission on the request.
 * Callback-style, so a decision made without I/O continues the request with no promise.
 */
function guard(tb: Tollbooth, route: ResolvedRoute): preHandlerHookHandler {
  const late = headersFollowHandler(route)

  function proceed(
    decision: Decision,
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    if (!decision.allowed) {
      // A hook in front answered while the admission was in flight (a request timeout's 503,
      // sent or hijacked): a denial adds nothing to that answer. Sent anyway, `reply.code()`
      // gave the response its status (what a logger reads at its end) and Fastify warned of a
      // reply sent twice, blaming the route. An admission needs nothing of the kind: Fastify
      // runs no handler on a sent reply, and it settles with the status that went out.
      if (reply.sent) return
      // A reply sent from a hook ends the request there: done() is not called.
      reply.code(decision.status).headers(decision.headers).send(decision.body)
      return
    }
    request.apiKey = decision
    // A handler that takes the response over (`reply.hijack()`) writes reply.raw itself: no
    // onSend, so Fastify's Reply learns to tell it (once per process, see `hijacked`).
    if (reply.hijack !== hijackGiven) extendReply(reply)
    ;(settlementOf(decision) as Settlement).adapter = tb
    // Before the handler, which may set any of them itself.
    if (!late) setDefaultHeaders(reply, decision.headers, reply.hasHeader, reply.header)
    // The end of the response: `close` follows `finish` on every response, or comes alone
    // when the client went away first (Fastify's onRequestAbort is not enough, as it fires
    // only while the request body is unread: a parsed POST body never aborts). One listener
    // for both, where an `onResponse` hook as well cost a hook run per request.
    const raw = reply.raw
    const onClose = () => {
      // A WebSocket session: settled when its socket closes (see `hijacked`). Looked up for
      // an upgrade only, not on every request.
      if (handedOver(request.raw) && isSession(decision)) return
      if (writtenInFull(raw) || injectedEnd(raw)) responseEnded(tb, decision, raw.statusCode)
      else {
        // A handler that wrote the head on reply.raw itself (no onSend has run), without
        // reply.hijack(): nothing of Fastify's ends its work, its `reply.raw.end()` does.
        if (raw.headersSent && (settlementOf(decision) as Settlement).ttfb < 0)
          endsWithRaw(raw, decision)
        clientGone(tb, decision, route)
      }
    }
    raw.on('close', onClose)
    // A client that left while the admission was in flight (a store's round trip): its
    // `close` has been emitted already (HTTP/2: its stream is gone).
    if (closedAlready(raw)) onClose()
    // A response queued behind a pipelined one gets no `close` if the connection goes first.
    else watchQueued(request.raw, raw)
    done()
  }

  const handler = function requireApiKey(
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    const headers = request.headers
    const url = request.url
    const q = url.indexOf('?')
    if (request.apiKey) {
      done(guardedTwice(request.method, q === -1 ? url : url.slice(0, q)))
      return
    }
    let d: Decision | Promise<Decision>
    try {
      d = tb.decide(
        {
          headers,
          ip: request.raw.socket.remoteAddress ?? null,
          method: request.method,
          path: q === -1 ? url : url.slice(0, q),
          body: request.body,
        },
        route,
      )
    } catch (err) {
      done(err as Error)
      return
    }
    if (d instanceof Promise)
      d.then((decision) => proceed(decision, request, reply, done), done as (e: unknown) => void)
    else proceed(d, request, reply, done)
  }
  ;(handler as Tagged)[GUARD] = true
  return handler as preHandlerHookHandler
}

/**
 * Requires a valid API key on one route, as its `preHandler`. The `tollbooth` plugin must be
 * registered: it gives the route the hooks that write the headers and settle.
 *
 * @param tb the tollbooth instance
 * @param [options] route options (kind, scopes, cost, category, headers, quotaStatus, byok,
 *   keySources, trustProxy), as in every adapter
 * @throws {ConfigError} at construction, naming a bad option, or a `tb` that is not a tollbooth
 *   instance: `requireApiKey: tb must be a tollbooth instance from createTollbooth(), got …`
 * @example
 * ```ts
 * await app.register(tollbooth, { tb })
 * app.post('/v1/chat', { preHandler: requireApiKey(tb, { cost: 1 }) }, async (request) => {
 *   request.apiKey.report({ cost: 3 })
 *   return { account: request.apiKey.accountId }
 * })
 * ```
 */
export function requireApiKey(
  tb: Tollbooth,
  options: FastifyRouteOptions = {},
): preHandlerAsyncHookHandler {
  checkTollboothArg('requireApiKey', tb)
  const tag = { tb, route: tb.route(options) }
  const missing = () =>
    new ConfigError(
      "tollbooth/fastify: a route uses requireApiKey(tb) but the tollbooth plugin is not registered before it: add `await app.register(tollbooth, { tb })` (import { tollbooth } from 'tollbooth/fastify') before declaring the route; for a whole scope, register the plugin with global: true",
    )
  // The plugin's onRoute swaps this for the real guard; running it means the plugin is missing.
  const unhooked = async function requireApiKey() {
    throw missing()
  }
  // Fastify binds each route hook to its instance at `preReady`: reaching that with this
  // function still in place means no plugin swapped it, so `ready()` (and `listen()`) fail
  // there, before any request is answered with a 500.
  Object.defineProperty(unhooked, 'bind', {
    value: () => {
      throw missing()
    },
  })
  ;(unhooked as Tagged)[GUARD] = tag
  return unhooked
}

/**
 * The hooks of a guarded route. `onSend` sees the handler's payload: the headers go out (after
 * its charges), the time to first byte is taken, and the handler's work ends there, or, for a
 * stream it returned, when that stream closes (Fastify destroys it when the client goes away).
 */
function hooksOf(tb: Tollbooth, route: ResolvedRoute) {
  const onSend: onSendHookHandler = (request, reply, payload, next) => {
    const decision = request.apiKey
    if (decision === null) {
      next(null, payload)
      return
    }
    // A web Response (an upstream's fetch() answer passed on): Fastify sends its status, its
    // headers and its body, which is watched as a returned web stream is.
    const answer = isResponse(payload) ? payload : null
    const status = answer === null ? reply.statusCode : answer.status
    if (!decision.headersFinal) {
      const out = decision.responseHeaders(status)
      setDefaultHeaders(reply, out, reply.hasHeader, reply.header)
    }
    responseStarted(tb, decision)
    const p = payload as { pipe?: unknown; once?: unknown; getReader?: unknown } | null
    const head = request.method === 'HEAD'
    if (p !== null && typeof p === 'object' && typeof p.pipe === 'function') {
      const stream = payload as NodeJS.ReadableStream & { errored?: unknown }
      stream.once('close', () => {
        // Failed on its own (an upstream's error; Fastify destroys it without one when the
        // client goes away): Fastify breaks the response off, a failed response (500, not
        // billed), as a web stream's failure and as on Express and Hono.
        if (stream.errored != null && !reply.raw.writableFinished) handlerFailed(tb, decision)
        endWork(decision)
      })
      // A HEAD: Fastify reads the stream to its end and drops it; settled when it closes.
      if (head) headSent(tb, decision, route, status)
    } else if (head && (answer?.body || (p !== null && typeof p.getReader === 'function'))) {
      // A HEAD's web body, produced as for the GET and dropped (Fastify would cancel it): the
      // request settles with what the handler reports at its end. A Response's status and
      // headers go on the reply, as Fastify's HEAD route cannot send a Response.
      const body = answer?.body ?? (payload as ReadableStream<Uint8Array>)
      if (answer !== null) {
        reply.code(status)
        for (const [name, value] of answer.headers) reply.header(name, value)
      }
      payload = drainBody(tb, decision, { route, body, status })
      endWork(decision)
    } else if (p !== null && typeof p === 'object' && typeof p.getReader === 'function') {
      const body = payload as ReadableStream<Uint8Array>
      payload = watchBody(tb, decision, { route, body, status })
      endWork(decision)
    } else if (answer?.body) {
      const body = watchBody(tb, decision, { route, body: answer.body, status })
      // Its status and headers as the init, not the Response itself, which a Response class
      // other than the global one (`@hono/node-server`'s, installed in the same process) may
      // not take as an init.
      payload = new Response(body, { status, headers: answer.headers })
      endWork(decision)
    } else endWork(decision)
    next(null, payload)
  }
  /**
   * A handler that failed after its response's head went out (written to `reply.raw`): Fastify
   * cannot answer the error and ends the connection, which is not a client gone away but a
   * failed response (500, not billed by default), as on Express and Hono. Before the head, the
   * error's own answer settles the request as any response.
   */
  const onError: onErrorHookHandler = (request, reply, _error, done) => {
    const decision = request.apiKey
    if (decision !== null && reply.raw.headersSent) handlerFailed(tb, decision)
    done()
  }
  return { onSend, onError }
}

/**
 * True for a response of `fastify.inject()` (light-my-request) that has ended: its `end()`
 * emits `finish` itself, and `close` a tick later while its stand-in socket still holds the
 * bytes, so `writableFinished` stays false and every injected request looked like a client
 * gone away (499, the route's cost not charged).
 */
function injectedEnd(raw: FastifyReply['raw']): boolean {
  return raw.writableEnded && (raw as { _lightMyRequest?: unknown })._lightMyRequest !== undefined
}

/** The `hijack` given to Fastify's Reply prototype, once it is (see {@link extendReply}). */
let hijackGiven: FastifyReply['hijack'] | undefined
/** The Reply prototypes whose `hijack` this module wrapped (or could not). */
const extendedReplies = new WeakSet<object>()

/**
 * Gives the Reply prototype that holds Fastify's `hijack` (every context's Reply inherits it)
 * one that tells tollbooth, on a guarded request, that the handler took the response over
 * ({@link hijacked}); a reply of an unguarded route goes straight on. Once per process.
 */
function extendReply(reply: FastifyReply): void {
  let p = Object.getPrototypeOf(reply) as Record<string, unknown> | null
  while (p !== null && !Object.hasOwn(p, 'hijack')) p = Object.getPrototypeOf(p)
  // Once per prototype: another copy of this module (its CommonJS build) may wrap it after.
  if (p === null || extendedReplies.has(p)) return
  extendedReplies.add(p)
  const original = p['hijack'] as FastifyReply['hijack'] | undefined
  if (typeof original !== 'function' || !Object.isExtensible(p)) return
  const given = function hijack(this: FastifyReply): FastifyReply {
    const r = original.call(this)
    const decision = this.request.apiKey as Admission | null
    if (decision !== null && decision !== undefined) hijacked(this.raw, decision)
    return r
  }
  p['hijack'] = given
  hijackGiven = given
}

/**
 * The handler took the response over with `reply.hijack()` and writes `reply.raw` itself, so
 * neither onSend nor Fastify's end of the handler comes: the usage headers go into its head
 * when it writes one (after its charges, with its status), and the handler has finished when it
 * calls `reply.raw.end()`, as on Express (call it also after the client went away).
 */
function hijacked(raw: FastifyReply['raw'], decision: Admission): void {
  // Undefined for an admission of another copy of this module (its CommonJS build beside this
  // one), whose own `hijack` in the chain handles it.
  const s = settlementOf(decision)
  const tb = s?.adapter as Tollbooth | undefined
  if (s === undefined || tb === undefined || decision.settled) return
  s.adapter = undefined
  // `@fastify/websocket` hijacks the reply of an upgrade and hands its socket to `ws`, which
  // writes the 101 there: the handler's work is done, and the session settles with 101 when
  // that socket closes. A socket already gone was a client gone away (the response's `close`).
  // Only a request Node handed over as an upgrade: a plain one that names `Upgrade: websocket`
  // (no `Connection: upgrade`) is answered on its keep-alive connection as any other.
  const req = raw.req
  if (handedOver(req) && asksWebSocket(req.headers)) {
    watchSession(tb, decision, req, req.socket as unknown as UpgradeSocket)
    endWork(decision)
    return
  }
  const writeHead = raw.writeHead
  raw.writeHead = function writeHeadWithUsage(
    this: typeof raw,
    status: number,
    ...rest: unknown[]
  ) {
    this.writeHead = writeHead
    const out = decision.responseHeaders(status)
    setDefaultHeaders(this, out, this.hasHeader, this.setHeader)
    responseStarted(tb, decision)
    return (writeHead as (...a: unknown[]) => typeof raw).call(this, status, ...rest)
  } as typeof raw.writeHead
  endsWithRaw(raw, decision)
}

/**
 * The handler writes `reply.raw` itself: its work ends when it calls `reply.raw.end()` (now,
 * if it has), as on Express, since no onSend will end it.
 */
function endsWithRaw(raw: FastifyReply['raw'], decision: Admission): void {
  if (raw.writableEnded) {
    endWork(decision)
    return
  }
  const end = raw.end
  raw.end = function endAndSettle(this: typeof raw, ...args: unknown[]) {
    this.end = end
    const r = (end as (...a: unknown[]) => typeof raw).apply(this, args)
    endWork(decision)
    return r
  } as typeof raw.end
}

/** A web `Response`, as Fastify tells one (whichever realm or implementation made it). */
function isResponse(payload: unknown): payload is Response {
  return (
    payload !== null &&
    typeof payload === 'object' &&
    Object.prototype.toString.call(payload) === '[object Response]'
  )
}

/** A route hook option (absent, one function or a list) with `fn` added. */
const withHook = (hook: unknown, fn: unknown, first = false): unknown[] =>
  first ? [fn].concat(hook ?? []) : ([] as unknown[]).concat(hook ?? [], fn)

const plugin: FastifyPluginAsync<TollboothPluginOptions> = async (fastify, options) => {
  const { tb, global = false, ...defaults } = options
  if (typeof tb?.authenticate !== 'function' || typeof tb.route !== 'function')
    throw optionError(
      'tollbooth/fastify plugin',
      'options.tb',
      'must be a tollbooth instance from createTollbooth()',
      tb,
    )
  tb.route(defaults)

  fastify.decorateRequest('apiKey', null as unknown as Admission)
  // `@fastify/websocket`'s server: tollbooth's headers go on the 101 of a guarded session.
  fastify.addHook('onReady', function addUsageHeaders(done) {
    const wss = (this as unknown as { websocketServer?: HeadersEmitter }).websocketServer
    if (typeof wss?.on === 'function') sendUsageHeaders(wss)
    done()
  })
  fastify.decorate('tollbooth', tb)
  fastify.decorate('requireApiKey', (o: FastifyRouteOptions = {}) =>
    requireApiKey(tb, { ...defaults, ...o }),
  )
  fastify.addHook('onRoute', (routeOptions) => {
    const r = routeOptions as unknown as Record<string, unknown>
    const pre = ([] as Tagged[]).concat((r['preHandler'] ?? []) as Tagged[])
    // A HEAD route copied from its GET comes through again, already guarded.
    if (pre.some((f) => f[GUARD] === true)) return
    const tag = pre.find((f) => f[GUARD] !== undefined)?.[GUARD] as Exclude<Tag, true> | undefined
    const config = routeOptions.config?.tollbooth
    let hooks: ReturnType<typeof hooksOf>
    if (tag) {
      hooks = hooksOf(tag.tb, tag.route)
      r['preHandler'] = pre.map((f) => {
        const t = f[GUARD] as Exclude<Tag, true> | undefined
        return t ? guard(t.tb, t.route) : f
      })
    } else if (config !== false && (global || config !== undefined)) {
      const route = tb.route({ ...defaults, ...config })
      hooks = hooksOf(tb, route)
      r['preHandler'] = withHook(pre, guard(tb, route), true)
    } else return
    // Before the one Fastify gives a HEAD route copied from its GET, which drops the payload
    // (reads a stream to its end, cancels a web one): the guard sees the handler's.
    r['onSend'] = withHook(r['onSend'], hooks.onSend, routeOptions.method === 'HEAD')
    r['onError'] = withHook(r['onError'], hooks.onError)
  })
}

/**
 * The Fastify plugin: decorates `request.apiKey`, `fastify.tollbooth` and
 * `fastify.requireApiKey()`, and guards routes with `config: { tollbooth: options }` (or every
 * route with `global: true`).
 *
 * @param options.tb the tollbooth instance
 * @param [options.global=false] guard every route but those with `config.tollbooth: false`
 * @throws {ConfigError} at registration or route registration, naming a bad option
 * @example
 * ```ts
 * await app.register(tollbooth, { tb, cost: 1 })
 * app.post('/v1/tts', { config: { tollbooth: { category: 'tts' } } }, async (request) => ({
 *   account: request.apiKey.accountId,
 * }))
 * ```
 */
export const tollbooth = fp(plugin, { fastify: '5.x', name: 'tollbooth' })

export { type FetchHandler, mountFetch, type NodeBindings } from './mount.js'
