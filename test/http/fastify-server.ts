/**
 * @module test/http/fastify-server
 *
 * The behaviour suite's routes on Fastify 5 (shared by the Fastify suite and the suites behind a
 * proxy): `startWithConfig` guards them through the plugin's `config.tollbooth`,
 * `startWithPreHandler` with `requireApiKey` as their preHandler.
 */

import { Readable } from 'node:stream'
import Fastify, { type FastifyReply, type RouteHandlerMethod } from 'fastify'
import { requireApiKey, tollbooth } from '../../adapters/fastify/index.js'
import type { RouteOptions, Tollbooth } from '../../src/index.js'
import { serveFastify } from '../support/servers.js'
import type { StartServer, TestRoute } from './behaviour.js'
import { sleep, webEvents } from './harness.js'

/**
 * The route's handler: its JSON result, or for a streamed route a returned Node stream of
 * server-sent events, whose generator Fastify destroys when the client goes away.
 */
function handlerOf(r: TestRoute): RouteHandlerMethod {
  const { stream } = r
  if (stream && r.web)
    return async (request, reply) => {
      const body = webEvents(r, request.apiKey, stream)
      // A fetch() Response passed on as it is: Fastify sends its status, headers and body.
      return reply.send(new Response(body, { headers: { 'content-type': 'text/event-stream' } }))
    }
  if (!stream)
    return async (request, reply) => {
      const body = await r.handle(request.apiKey)
      if (r.headers) reply.headers(r.headers)
      return body
    }
  return async (request, reply) => {
    const apiKey = request.apiKey
    async function* events() {
      let sent = 0
      let done = false
      try {
        for (; sent < stream!.count; sent++) {
          if (sent > 0) await sleep(stream!.intervalMs)
          yield `data: ${sent}\n\n`
          stream!.each?.(apiKey, sent + 1)
        }
        done = true
      } finally {
        await r.handle(apiKey, { sent, aborted: !done })
      }
    }
    return reply.type('text/event-stream').send(Readable.from(events()))
  }
}

/** A route's `before` headers, set in its `onRequest` hook (in front of every preHandler). */
const beforeOf = (r: TestRoute) => {
  const before = r.before
  return before
    ? {
        onRequest: (_: unknown, reply: FastifyReply, done: () => void) => {
          reply.headers(before)
          done()
        },
      }
    : {}
}

/**
 * Serves `routes` on a Fastify app with the plugin registered, each route guarded as `guardOf`
 * gives it; a route with two guards (`outer`) has them as two preHandlers, as config cannot
 * write them.
 */
export function startFastify(
  guardOf: (
    tb: Tollbooth,
    options: RouteOptions | undefined,
  ) => { preHandler: ReturnType<typeof requireApiKey> } | { config: { tollbooth: RouteOptions } },
): StartServer {
  return async (tb, routes) => {
    const app = Fastify()
    await app.register(tollbooth, { tb })
    for (const r of routes) {
      app.route({
        method: r.method ?? 'GET',
        url: r.path,
        ...beforeOf(r),
        ...(r.outer
          ? { preHandler: [requireApiKey(tb, r.outer), requireApiKey(tb, r.options)] }
          : guardOf(tb, r.options)),
        handler: handlerOf(r),
      })
    }
    return serveFastify(app)
  }
}

/** The guard as `config.tollbooth`, the plugin's own. */
export const startWithConfig = startFastify((_, options) => ({
  config: { tollbooth: options ?? {} },
}))
/** The guard as the route's `preHandler`. */
export const startWithPreHandler = startFastify((tb, options) => ({
  preHandler: requireApiKey(tb, options),
}))
