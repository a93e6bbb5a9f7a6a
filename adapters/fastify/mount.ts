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

import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'

/** The Node objects handed to the fetch handler, as `@hono/node-server` names them. */
export interface NodeBindings {
  incoming: IncomingMessage
  outgoing: ServerResponse
}

/** A Web-standard handler: `app.fetch` of Hono, or any function of a `Request`. */
export type FetchHandler = (request: Request, env: NodeBindings) => Response | Promise<Response>

// HEAD is added by Fastify for every GET route.
const METHODS = ['DELETE', 'GET', 'PATCH', 'POST', 'PUT', 'OPTIONS']

function toWebRequest(request: FastifyRequest, prefix: string, signal: AbortSignal): Request {
  const raw = request.raw
  const url = raw.url ?? '/'
  let path = prefix && url.startsWith(prefix) ? url.slice(prefix.length) : url
  if (!path.startsWith('/')) path = `/${path}`
  const headers = new Headers()
  for (const [name, value] of Object.entries(raw.headers)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else headers.set(name, value)
  }
  const init: RequestInit & { duplex?: 'half' } = { method: raw.method ?? 'GET', headers, signal }
  const body = request.body
  if (init.method !== 'GET' && init.method !== 'HEAD' && body instanceof Readable) {
    init.body = Readable.toWeb(body) as unknown as ReadableStream
    init.duplex = 'half'
  }
  return new Request(new URL(path, `${request.protocol}://${request.host || 'localhost'}`), init)
}

function send(reply: FastifyReply, r: Response): FastifyReply {
  reply.status(r.status)
  for (const [name, value] of r.headers) {
    if (name !== 'set-cookie') reply.header(name, value)
  }
  const cookies = r.headers.getSetCookie()
  if (cookies.length > 0) reply.header('set-cookie', cookies)
  if (!r.body) return reply.send()
  return reply.send(Readable.fromWeb(r.body as NodeReadableStream))
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
  if (typeof handler !== 'function')
    throw new TypeError(
      'mountFetch(handler): handler must be a function of a Request, e.g. app.fetch',
    )
  return async function mountFetch(instance) {
    instance.removeAllContentTypeParsers()
    // Keep the raw stream: the fetch handler parses (and bounds) the body itself.
    instance.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
    const prefix = instance.prefix
    const route = async (request: FastifyRequest, reply: FastifyReply) => {
      const abort = new AbortController()
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) abort.abort()
      })
      const r = await handler(toWebRequest(request, prefix, abort.signal), {
        incoming: request.raw,
        outgoing: reply.raw,
      })
      return send(reply, r)
    }
    instance.route({ method: METHODS, url: '/', handler: route })
    instance.route({ method: METHODS, url: '/*', handler: route })
  }
}
