/**
 * @module tollbooth/express
 *
 * `requireApiKey` for Express 5 (and 4): authenticates with the core, answers a denial from its
 * prepared record, exposes the admission as `req.apiKey`, writes the response headers when the
 * head is written (so usage figures include a cost the handler reported) and settles exactly
 * once, at the true end of the response (src/response-end.ts): when it finishes (its status,
 * so an error handler's 500 is not billed), or, when the client went away first, with 499 once
 * the handler has called `res.end()` (`res.send`/`res.json` do).
 *
 * It adds no property to Express's request or response objects, each of which costs V8 2-3 µs
 * once Express has set their prototype: Express's own `request` and `response` prototypes (which
 * every app's inherit from, and which Express documents as the place to extend) get, once per
 * process, an `apiKey` getter and a `writeHead` that writes a guarded response's headers before
 * the one it shadows; an unguarded response pays one `WeakMap` lookup there.
 */

import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import {
  type Admission,
  checkTollboothArg,
  clientGone,
  type Decision,
  endWork,
  guardedTwice,
  handlerFailed,
  headSent,
  type RouteOptions,
  responseEnded,
  responseStarted,
  type Settlement,
  setDefaultHeaders,
  settlementOf,
  type Tollbooth,
  wireName,
} from '../../src/internal.js'
import { watchQueued } from '../node/queued.js'
import { writtenInFull } from '../node/written.js'

declare module 'express-serve-static-core' {
  interface Request {
    /**
     * The admitted request on routes guarded by `requireApiKey`: key, account, provider keys,
     * `charge()` and `report()`. Undefined on routes it does not guard.
     */
    apiKey: Admission
  }
}

/** The route options of every adapter (the same names in tollbooth/hono and tollbooth/fastify). */
export type ExpressRouteOptions = RouteOptions

/**
 * Requires a valid API key on the routes it guards.
 *
 * @param tb the tollbooth instance
 * @param [options.kind='consumption'] the key kind the route takes
 * @param [options.scopes=[]] scopes the key must all have
 * @param [options.cost] credits held at admission and charged after the response
 * @param [options.trustProxy=false] the proxies in front: their number (`X-Forwarded-For`),
 *   `{ hops, header: 'forwarded' }` (RFC 7239), `{ hops: 1, header: 'x-real-ip' }`, or true
 *   for every hop (see `TrustProxy`);
 *   Express's own `trust proxy` setting is not consulted, so all three adapters agree
 * @returns a middleware named `requireApiKey`
 * @throws {ConfigError} at construction, naming a bad option, or a `tb` that is not a tollbooth
 *   instance: `requireApiKey: tb must be a tollbooth instance from createTollbooth(), got …`
 * @example
 * ```ts
 * app.use('/v1', requireApiKey(tb, { cost: 1, category: 'tts' }))
 * app.post('/v1/synthesize', (req, res) => {
 *   req.apiKey.charge(3)
 *   res.json({ account: req.apiKey.accountId })
 * })
 * ```
 */
export function requireApiKey(tb: Tollbooth, options: ExpressRouteOptions = {}): RequestHandler {
  checkTollboothArg('requireApiKey', tb)
  const route = tb.route(options)

  /**
   * One listener per middleware, not per request: `close` follows `finish` on every response
   * (the body was written in full), or comes alone when the client went away. Then the
   * handler has finished if it called `res.end()` (`res.send`/`res.json` do); if not yet, its
   * call to `res.end()` is what settles the request. A connection this server closed itself,
   * the client still there, is a response broken off here: settled now (500, `error`), as
   * nothing will end it (see {@link closedHere}).
   */
  function onClose(this: Response): void {
    const decision = admissions.get(this.req)
    if (!decision || decision.settled) return
    if (writtenInFull(this)) responseEnded(tb, decision, this.statusCode)
    else {
      if (this.writableEnded) endWork(decision)
      else if (closedHere(this)) {
        handlerFailed(tb, decision)
        return
      } else {
        // Only on this rare path: closures, and the end found now (a compression middleware
        // may have replaced it).
        let done = false
        const handlerDone = () => {
          if (done) return
          done = true
          endWork(decision)
        }
        const end = this.end
        this.end = function endAndSettle(this: Response, ...args: unknown[]) {
          this.end = end
          const r = (end as (...a: unknown[]) => Response).apply(this, args)
          handlerDone()
          return r
        } as Response['end']
        // A stream piped into the response (`res.sendFile`, `src.pipe(res)`, `pipeline`) is
        // unpiped by this same `close`, after this listener: see `pipedAway`.
        this.once('unpipe', (src: unknown) => pipedAway(src, handlerDone))
      }
      // A HEAD's response is complete with its head: settled with its status once the handler
      // ends, whether or not its client stayed (it has what it asked for).
      if (this.req.method === 'HEAD' && this.headersSent)
        headSent(tb, decision, route, this.statusCode)
      else clientGone(tb, decision, route)
    }
  }

  /** Answers a denial, or guards the response and passes the admitted request on. */
  function proceed(decision: Decision, req: Request, res: Response, next: NextFunction): void {
    // A middleware in front answered while the admission was in flight (a request timeout's
    // 503): a denial has nothing to add to that answer, and an admitted request's headers
    // can no longer be set; it is guarded as any other, settled with the status that went out.
    const answered = res.headersSent
    if (!decision.allowed) {
      if (answered) return
      res.statusCode = decision.status
      const h = decision.headers
      for (const name in h) res.setHeader(wireName(name), h[name]!)
      res.end(decision.body)
      return
    }
    if (decision.headersFinal && !answered) {
      // Before the handler, which may set any of them itself.
      setDefaultHeaders(res, decision.headers, res.hasHeader, res.setHeader)
    }
    // Usage figures follow the handler's charges and the final status, and the time to first
    // byte is taken: both with the head, which Express's prototypes (extended once, see
    // `extended`) or, where they cannot be, a hook of this response's own, hand to `atHead`.
    ;(settlementOf(decision) as Settlement).adapter = tb
    admissions.set(req, decision)
    if (!extended(req, res)) {
      req.apiKey = decision
      const original = res.writeHead
      const withUsage: WriteHead = function writeHeadWithUsage(a, b, c) {
        this.writeHead = original
        atHead(this, decision, a)
        return (original as WriteHead).call(this, a, b, c)
      }
      res.writeHead = withUsage as Response['writeHead']
    }
    res.on('close', onClose)
    // A server that times out idle sockets (`server.setTimeout`): see `timedOut`.
    const socket = req.socket as Socket | undefined
    if (socket?.timeout) watchTimeout(socket)
    // A client that left while the admission was in flight (a store's round trip): its
    // `close` has been emitted already.
    if (res.closed) onClose.call(res)
    // A response queued behind a pipelined one gets no `close` if the connection goes first.
    else watchQueued(req, res)
    next()
  }

  return function requireApiKey(req: Request, res: Response, next: NextFunction): void {
    const headers = req.headers
    // originalUrl, not path: under app.use('/v1', …) req.path has lost its mount point.
    const url = req.originalUrl
    const q = url.indexOf('?')
    if (admissions.has(req)) {
      next(guardedTwice(req.method, q === -1 ? url : url.slice(0, q)))
      return
    }
    let d: ReturnType<Tollbooth['decide']>
    try {
      d = tb.decide(
        {
          headers,
          ip: req.socket.remoteAddress ?? null,
          method: req.method,
          path: q === -1 ? url : url.slice(0, q),
        },
        route,
      )
    } catch (err) {
      next(err)
      return
    }
    // Synchronous on a cached key with in-process counters: no promise, no microtask.
    // Never a rejection, which nothing would catch (Express does not see this promise): what
    // fails goes to next(err). Synchronously, Express catches what proceed throws.
    if (d instanceof Promise)
      d.then((decision) => {
        try {
          proceed(decision, req, res, next)
        } catch (err) {
          next(err)
        }
      }, next)
    else proceed(d, req, res, next)
  }
}

/**
 * A stream the handler piped into its response was unpiped by the client's departure: the
 * handler had handed the response to it, and its `res.end()` would have come from that stream,
 * which writes nothing more now. The handler's work then ends when that stream has closed: at
 * once for one left open (`src.pipe(res)` leaves its source paused), or when the one being
 * destroyed (by `send` for `res.sendFile`, by `pipeline`) has closed, so what it reports on its
 * way out (an async generator's `finally`) is charged. Without this, such a request waited for
 * a `res.end()` that never comes, until `abortSettleMs`.
 */
function pipedAway(src: unknown, handlerDone: () => void): void {
  const stream = src as { destroyed?: boolean; closed?: boolean; once?: unknown } | null
  if (stream === null || typeof stream !== 'object' || typeof stream.once !== 'function') return
  // Who destroys it (send's on-finished, pipeline) does so within this turn of the loop.
  setImmediate(() => {
    if (stream.destroyed === true && stream.closed !== true)
      (stream as NodeJS.EventEmitter).once('close', handlerDone)
    else handlerDone()
  })
}

/**
 * True when the response's connection was closed by this server, the client neither gone nor
 * gone wrong: its socket destroyed here, with no error (`res.destroy()`, Express's final
 * handler for an error after the head was sent, which destroys the socket) or with one of the
 * app's own (`res.destroy(err)`, a `pipeline` whose upstream failed). Nothing ends such a
 * response any more (the handler threw, or broke it off itself), so waiting for its
 * `res.end()` would hold the request's credit hold and concurrency slot until `abortSettleMs`.
 * A client that went away has ended the socket's readable side (it closed the connection) or
 * failed a system call on it (a reset, a write to a closed connection: `ECONNRESET`, `EPIPE`,
 * which carry `syscall`). A connection Node's server timed out (`server.setTimeout`, see
 * `timedOut`; `requestTimeout`, whose error is `ERR_HTTP_REQUEST_TIMEOUT`) is not the handler's
 * doing either: the handler still runs and ends the response itself, as for a departed client.
 */
function closedHere(res: Response): boolean {
  const socket = res.req.socket as
    | { readableEnded?: boolean; errored?: { syscall?: unknown; code?: unknown } | null }
    | undefined
  if (socket === undefined || socket.readableEnded === true) return false
  const err = socket.errored
  if (err == null) return !timedOut.has(socket)
  return typeof err.syscall !== 'string' && err.code !== 'ERR_HTTP_REQUEST_TIMEOUT'
}

/**
 * The sockets Node's server destroyed for being idle past `server.timeout`
 * (`server.setTimeout(ms)`): it destroys them without an error, as `res.destroy()` does, so
 * their `timeout` is watched (once per socket, only on servers that set one). A socket whose
 * timeout the application handles itself (a `timeout` listener on the server, the request or
 * the response) is not destroyed, and not marked.
 */
const timedOut = new WeakSet<object>()
const watched = new WeakSet<Socket>()

function watchTimeout(socket: Socket): void {
  if (watched.has(socket)) return
  watched.add(socket)
  // After the server's own listener, which destroys the socket unless the app handles it.
  socket.on('timeout', onSocketTimeout)
}

function onSocketTimeout(this: Socket): void {
  if (this.destroyed) timedOut.add(this)
}

/**
 * The head of an admitted response, once: its usage headers (unless they were final at
 * admission), then the time to first byte. Every head goes through `writeHead` (`res.write` and
 * `res.end` call it when the handler did not), so this sees the handler's charges and the final
 * status before a byte is sent. The settlement's `adapter` holds the instance until then.
 */
function atHead(res: Response, decision: Admission, status: unknown): void {
  const s = settlementOf(decision) as Settlement
  const tb = s.adapter as Tollbooth | undefined
  if (tb === undefined) return
  s.adapter = undefined
  if (!decision.headersFinal) {
    const out = decision.responseHeaders(typeof status === 'number' ? status : res.statusCode)
    setDefaultHeaders(res, out, res.hasHeader, res.setHeader)
  }
  responseStarted(tb, decision)
}

/*
 * Express's request and response objects are Node's, whose prototype Express sets to the app's
 * own (`app.request`, `app.response`) on every request. V8 then gives each a map of its own, so
 * a property added to one afterwards costs 2-3 µs (`bench/NOTES.md`, session 23): `req.apiKey`
 * and a `writeHead` of the response's own were two of them on every request. Instead, the
 * prototype every app's request and response inherit from (Express's `request` and `response`,
 * which Express documents as the place to extend) gets, once, an `apiKey` getter that reads
 * this module's map of admissions, and a `writeHead` that writes a guarded response's usage
 * headers before calling the one it shadows. A response of an unguarded route pays one map
 * lookup in `writeHead`. Where that prototype cannot be found or its `writeHead` is not the
 * one a response reaches (an app that shadows it), the request and the response get their
 * own properties, as before.
 */

/**
 * The admitted requests, read where the adapter needs its own (a property read on an Express
 * request is a lookup of its own too, as its map is new) and by `req.apiKey` on extended
 * prototypes.
 */
const admissions = new WeakMap<object, Admission>()
type WriteHead = (this: Response, a?: unknown, b?: unknown, c?: unknown) => Response

/**
 * Express's request prototypes this module extended (true) or cannot (false), and its
 * response prototypes with the `writeHead` given them (null: cannot).
 */
const requestBases = new WeakMap<object, boolean>()
const responseBases = new WeakMap<object, WriteHead | null>()
/** The request and response prototypes seen last, and whether `extended` holds for them. */
let lastReq: object | null = null
let lastRes: object | null = null
let lastExtended = false

/**
 * True when `req.apiKey` reads `admissions` and the `writeHead` of the response's prototypes is
 * this module's: Express's prototypes are extended (done here the first time an app's
 * prototypes are seen), and no app shadows that `writeHead` below them. A middleware's hook on
 * the response itself (`on-headers`) calls the one it replaced: this module's.
 */
function extended(req: Request, res: Response): boolean {
  const pq = Object.getPrototypeOf(req) as object | null
  const ps = Object.getPrototypeOf(res) as object | null
  if (pq !== lastReq || ps !== lastRes) {
    lastReq = pq
    lastRes = ps
    const given = extendRequest(base(pq, IncomingMessage.prototype))
      ? extendResponse(base(ps, ServerResponse.prototype))
      : null
    lastExtended = given !== null && (ps as Response).writeHead === given
  }
  return lastExtended
}

/** The object just above Node's `proto` in a prototype chain from `p`: Express's own. */
function base(p: object | null, proto: object): object | null {
  if (p === proto) return null
  while (p !== null) {
    const up = Object.getPrototypeOf(p) as object | null
    if (up === proto) return p
    p = up
  }
  return null
}

/** Gives Express's `request` an `apiKey` getter, once; false if it cannot. */
function extendRequest(p: object | null): boolean {
  if (p === null) return false
  const known = requestBases.get(p)
  if (known !== undefined) return known
  // Another copy of this module (its CommonJS build beside this one) may have been first.
  const prev = Object.getOwnPropertyDescriptor(p, 'apiKey')
  const prevGet = prev?.get
  const ok =
    Object.isExtensible(p) &&
    (prev === undefined || (prevGet !== undefined && prev.configurable === true))
  if (ok)
    Object.defineProperty(p, 'apiKey', {
      configurable: true,
      enumerable: false,
      get(this: object) {
        return admissions.get(this) ?? prevGet?.call(this)
      },
      // Assigned by an application: a property of that request's own, as without the getter.
      set(this: object, value: unknown) {
        Object.defineProperty(this, 'apiKey', {
          value,
          writable: true,
          configurable: true,
          enumerable: true,
        })
      },
    })
  requestBases.set(p, ok)
  return ok
}

/** Gives Express's `response` a `writeHead` that heads guarded responses, once; null if it cannot. */
function extendResponse(p: object | null): WriteHead | null {
  if (p === null) return null
  const known = responseBases.get(p)
  if (known !== undefined) return known
  const prev = Object.getOwnPropertyDescriptor(p, 'writeHead')
  let given: WriteHead | null = null
  if (
    Object.isExtensible(p) &&
    (prev === undefined || (typeof prev.value === 'function' && prev.writable === true))
  ) {
    // The `writeHead` it shadows: one of its own (another copy's), else Node's, found at each
    // call so a later change to Node's prototype is honoured.
    const own = prev?.value as WriteHead | undefined
    const parent = Object.getPrototypeOf(p) as Response
    given = function writeHead(this: Response, a?: unknown, b?: unknown, c?: unknown): Response {
      const req = this.req as Request | undefined
      const decision = req === undefined ? undefined : admissions.get(req)
      if (decision !== undefined) atHead(this, decision, a)
      return (own ?? (parent.writeHead as WriteHead)).call(this, a, b, c)
    }
    Object.defineProperty(p, 'writeHead', {
      configurable: true,
      enumerable: false,
      writable: true,
      value: given,
    })
  }
  responseBases.set(p, given)
  return given
}

export { sendUsageHeaders } from '../node/session.js'
export { type FetchHandler, mountFetch, type NodeBindings } from './mount.js'
export { requireApiKeyOnUpgrade, type UpgradeGuard } from './upgrade.js'
