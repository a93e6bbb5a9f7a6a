/**
 * @module tollbooth/hono
 *
 * `requireApiKey` for Hono: authenticates with the core, answers a denial from its prepared
 * record, exposes the admission as `c.get('apiKey')`, writes the response headers after the
 * handler (so usage figures include a cost the handler reported) and settles exactly once,
 * also when the handler throws.
 */

import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import {
  type Admission,
  ConfigError,
  clientIp,
  type RouteOptions,
  type Tollbooth,
  type TrustProxy,
} from '../../src/index.js'

declare module 'hono' {
  interface ContextVariableMap {
    /** The admitted request: key, account, provider keys, `charge()` and `report()`. */
    apiKey: Admission
  }
}

export interface HonoRouteOptions extends RouteOptions {
  /** Believe `X-Forwarded-For` (true, or the number of proxies in front). Default false. */
  trustProxy?: TrustProxy
  /** The client's socket address; by default read from `@hono/node-server`'s `c.env.incoming`. */
  socketAddress?: (c: Context) => string | null | undefined
}

type NodeEnv = { incoming?: { socket?: { remoteAddress?: string } } }

const nodeSocket = (c: Context) => (c.env as NodeEnv | undefined)?.incoming?.socket?.remoteAddress

/**
 * Requires a valid API key on the routes it guards.
 *
 * @param tb the tollbooth instance
 * @param [options.kind='consumption'] the key kind the route takes
 * @param [options.cost] credits held at admission and charged after the response
 * @throws {ConfigError} at construction, naming a bad option
 * @example
 * ```ts
 * app.use('/v1/*', requireApiKey(tb, { cost: 1, category: 'tts' }))
 * app.post('/v1/synthesize', (c) => c.json({ account: c.get('apiKey').accountId }))
 * ```
 */
export function requireApiKey(tb: Tollbooth, options: HonoRouteOptions = {}): MiddlewareHandler {
  const { trustProxy = false, socketAddress = nodeSocket, ...routeOptions } = options
  if (
    trustProxy !== true &&
    trustProxy !== false &&
    !(Number.isInteger(trustProxy) && trustProxy > 0)
  ) {
    throw new ConfigError(
      `Invalid route options: trustProxy must be a boolean or a positive integer, got ${String(trustProxy)}`,
    )
  }
  const route = tb.route(routeOptions)

  return async function requireApiKey(c, next) {
    const headers = c.req.raw.headers
    const decision = await tb.authenticate(
      {
        headers,
        ip: clientIp(
          socketAddress(c),
          trustProxy === false ? undefined : (headers.get('x-forwarded-for') ?? undefined),
          trustProxy,
        ),
        method: c.req.method,
        path: c.req.path,
      },
      route,
    )
    if (!decision.allowed) {
      const res = new Response(decision.body, {
        status: decision.status,
        headers: decision.headers,
      })
      res.headers.set('content-type', 'application/json')
      throw new HTTPException(decision.status as ContentfulStatusCode, { res })
    }
    c.set('apiKey', decision)
    try {
      await next()
    } catch (err) {
      void tb.settle(decision, { status: 500 })
      throw err
    }
    const out = decision.responseHeaders()
    for (const name in out) c.header(name, out[name])
    void tb.settle(decision, { status: c.res.status })
  }
}
