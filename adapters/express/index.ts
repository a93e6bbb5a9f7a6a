/**
 * @module tollbooth/express
 *
 * `requireApiKey` for Express 5 (and 4): authenticates with the core, answers a denial from its
 * prepared record, exposes the admission as `req.apiKey`, writes the response headers when the
 * head is written (so usage figures include a cost the handler reported) and settles exactly
 * once, at the true end of the response (src/response-end.ts): when it finishes (its status,
 * so an error handler's 500 is not billed), or, when the client went away first, with 499 once
 * the handler has called `res.end()` (`res.send`/`res.json` do).
 */

import type { NextFunction, Request, RequestHandler, Response } from 'express'
import {
  type Admission,
  clientGone,
  type Decision,
  endWork,
  guardedTwice,
  type RouteOptions,
  responseEnded,
  responseStarted,
  type Settlement,
  settlementOf,
  type Tollbooth,
} from '../../src/internal.js'

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
 *   `{ hops, header: 'forwarded' }` (RFC 7239), or true for every hop (see `TrustProxy`);
 *   Express's own `trust proxy` setting is not consulted, so all three adapters agree
 * @returns a middleware named `requireApiKey`
 * @throws {ConfigError} at construction, naming a bad option
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
  const route = tb.route(options)

  /**
   * One listener per middleware, not per request: `close` follows `finish` on every response
   * (the body was written in full), or comes alone when the client went away. Then the
   * handler has finished if it called `res.end()` (`res.send`/`res.json` do); if not yet, its
   * call to `res.end()` is what settles the request.
   */
  function onClose(this: Response): void {
    const decision = this.req.apiKey
    if (!decision || decision.settled) return
    if (this.writableFinished) responseEnded(tb, decision, this.statusCode)
    else {
      if (this.writableEnded) endWork(decision)
      else {
        // Only on this rare path: a closure, and the end found now (a compression middleware
        // may have replaced it).
        const end = this.end
        this.end = function endAndSettle(this: Response, ...args: unknown[]) {
          this.end = end
          const r = (end as (...a: unknown[]) => Response).apply(this, args)
          endWork(decision)
          return r
        } as Response['end']
      }
      clientGone(tb, decision, route)
    }
  }

  /**
   * Every head goes through writeHead (res.end/res.write call it implicitly), so hooking it once
   * per response sees the handler's charges and the final status before a byte is sent, and
   * the time to first byte. The writeHead it replaced is kept in the admission.
   */
  function writeHeadWithUsage(this: Response, a?: unknown, b?: unknown, c?: unknown): Response {
    const decision = this.req.apiKey
    const original = (settlementOf(decision) as Settlement).adapter as Response['writeHead']
    this.writeHead = original
    if (!decision.headersFinal) {
      const out = decision.responseHeaders(typeof a === 'number' ? a : this.statusCode)
      for (const name in out) this.setHeader(name, out[name]!)
    }
    responseStarted(tb, decision)
    return (original as (a?: unknown, b?: unknown, c?: unknown) => Response).call(this, a, b, c)
  }

  /** Answers a denial, or guards the response and passes the admitted request on. */
  function proceed(decision: Decision, req: Request, res: Response, next: NextFunction): void {
    if (!decision.allowed) {
      res.statusCode = decision.status
      const h = decision.headers
      for (const name in h) res.setHeader(name, h[name]!)
      res.end(decision.body)
      return
    }
    req.apiKey = decision
    if (decision.headersFinal) {
      const h = decision.headers
      for (const name in h) res.setHeader(name, h[name]!)
    }
    // Usage figures follow the handler's charges and the final status, and the time to first
    // byte is taken: both with the head.
    const s = settlementOf(decision) as Settlement
    s.adapter = res.writeHead
    res.writeHead = writeHeadWithUsage as Response['writeHead']
    res.on('close', onClose)
    next()
  }

  return function requireApiKey(req: Request, res: Response, next: NextFunction): void {
    const headers = req.headers
    // originalUrl, not path: under app.use('/v1', …) req.path has lost its mount point.
    const url = req.originalUrl
    const q = url.indexOf('?')
    if (req.apiKey !== undefined) {
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
    if (d instanceof Promise) d.then((decision) => proceed(decision, req, res, next), next)
    else proceed(d, req, res, next)
  }
}

export { type FetchHandler, mountFetch, type NodeBindings } from './mount.js'
