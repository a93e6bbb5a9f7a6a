/**
 * @module tollbooth/fastify/mount
 *
 * `mountFetch(handler)`: a Fastify plugin that serves a Web-standard fetch handler (such as
 * `managementApi(tb).fetch`) under the prefix it is registered with. It adds a wildcard route
 * for every method and, in its own encapsulated context only, a content-type parser that
 * keeps the raw body stream, so the handler reads the body exactly as sent. The handler sees
 * paths relative to the prefix and gets `{ incoming, outgoing }` (the Node request and
 * response) as its second argument, like under `@hono/node-server`.
 */

import { Readable } from 'node:stream'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import {
  abortOnClose,
  checkHandler,
  type FetchHandler,
  nodeBody,
  nodeHeaders,
  webRequest,
} from '../node/web-bridge.js'

export type { FetchHandler, NodeBindings } from '../node/web-bridge.js'

// HEAD is added by Fastify for every GET route.
const METHODS = ['DELETE', 'GET', 'PATCH', 'POST', 'PUT', 'OPTIONS']

function toWebRequest(request: FastifyRequest, prefix: string, signal: AbortSignal): Request {
  const url = request.raw.url ?? '/'
  let path = prefix && url.startsWith(prefix) ? url.slice(prefix.length) : url
  if (!path.startsWith('/')) path = `/${path}`
  const base = `${request.protocol}://${request.host || 'localhost'}`
  // The wildcard parser below keeps the raw stream: anything else means no body.
  const body = request.body instanceof Readable ? request.body : undefined
  return webRequest({ url: new URL(path, base), req: request.raw, signal, body })
}

function send(reply: FastifyReply, r: Response): FastifyReply {
  reply.status(r.status)
  for (const [name, value] of nodeHeaders(r)) reply.header(name, value)
  const body = nodeBody(r)
  return body ? reply.send(body) : reply.send()
}

/**
 * A Fastify plugin serving `handler` under the prefix it is registered with. Register it
 * without `fastify-plugin`: its body parser must stay inside its own context.
 *
 * @param handler e.g. `managementApi(tb).fetch`; gets the request with the prefix removed
 * @example
 * ```ts
 * await app.register(mountFetch(managementApi(tb).fetch), { prefix: '/v1' })
 * ```
 */
export function mountFetch(handler: FetchHandler): FastifyPluginAsync {
  checkHandler(handler)
  return async function mountFetch(instance) {
    instance.removeAllContentTypeParsers()
    // Keep the raw stream: the fetch handler parses (and bounds) the body itself.
    instance.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
    const prefix = instance.prefix
    const route = async (request: FastifyRequest, reply: FastifyReply) => {
      const signal = abortOnClose(reply.raw)
      const r = await handler(toWebRequest(request, prefix, signal), {
        incoming: request.raw,
        outgoing: reply.raw,
      })
      return send(reply, r)
    }
    instance.route({ method: METHODS, url: '/', handler: route })
    instance.route({ method: METHODS, url: '/*', handler: route })
  }
}
