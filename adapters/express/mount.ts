/**
 * @module tollbooth/express/mount
 *
 * `mountFetch(handler)`: runs a Web-standard fetch handler (such as the management API's
 * `managementApi(tb).fetch`) inside Express. The Node request becomes a `Request` whose path
 * is relative to where the middleware is mounted (`req.baseUrl` is removed), its body is
 * streamed through, and the `Response` is streamed back with its status and headers. The
 * handler gets `{ incoming, outgoing }` as its second argument, the bindings of
 * `@hono/node-server`, so a Hono app reads the socket address the same way in both.
 */

import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { NextFunction, Request, RequestHandler, Response } from 'express'

/** The Node objects handed to the fetch handler, as `@hono/node-server` names them. */
export interface NodeBindings {
  incoming: IncomingMessage
  outgoing: ServerResponse
}

/** A Web-standard handler: `app.fetch` of Hono, or any function of a `Request`. */
export type FetchHandler = (request: Request_, env: NodeBindings) => Response_ | Promise<Response_>

type Request_ = globalThis.Request
type Response_ = globalThis.Response

/** Builds the Web request: URL relative to the mount point, headers, streamed body, abort signal. */
export function toWebRequest(
  req: IncomingMessage & {
    baseUrl?: string
    originalUrl?: string
    protocol?: string
    body?: unknown
  },
  signal: AbortSignal,
): Request_ {
  const original = req.originalUrl ?? req.url ?? '/'
  const base = req.baseUrl ?? ''
  let path = base && original.startsWith(base) ? original.slice(base.length) : (req.url ?? '/')
  if (!path.startsWith('/')) path = `/${path}`
  const host = req.headers.host ?? 'localhost'
  const protocol =
    req.protocol ?? ((req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http')
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else headers.set(name, value)
  }
  const init: RequestInit & { duplex?: 'half' } = { method: req.method ?? 'GET', headers, signal }
  if (init.method !== 'GET' && init.method !== 'HEAD') {
    if (req.readableEnded || (req as { _body?: boolean })._body === true) {
      // A body parser (express.json(), …) ran first: send what it parsed.
      const b = req.body
      if (b !== undefined && b !== null) {
        init.body =
          typeof b === 'string'
            ? b
            : b instanceof Uint8Array
              ? new Uint8Array(b)
              : JSON.stringify(b)
        headers.delete('content-length')
        if (typeof b === 'object' && !(b instanceof Uint8Array))
          headers.set('content-type', 'application/json')
      }
    } else {
      init.body = Readable.toWeb(req) as unknown as ReadableStream
      init.duplex = 'half'
    }
  }
  return new Request(new URL(path, `${protocol}://${host}`), init)
}

/** Writes a Web response to a Node response, streaming its body; resolves when done. */
export async function writeWebResponse(res: ServerResponse, r: Response_): Promise<void> {
  res.statusCode = r.status
  for (const [name, value] of r.headers) {
    if (name === 'set-cookie') continue
    res.setHeader(name, value)
  }
  const cookies = r.headers.getSetCookie()
  if (cookies.length > 0) res.setHeader('set-cookie', cookies)
  if (!r.body) {
    res.end()
    return
  }
  await pipeline(Readable.fromWeb(r.body as import('node:stream/web').ReadableStream), res)
}

/**
 * Mounts a fetch handler in Express.
 *
 * @param handler e.g. `managementApi(tb).fetch`; gets the request with the mount path removed
 * @returns a middleware named `mountFetch`; a thrown handler error goes to `next(err)`
 * @example
 * ```ts
 * app.use('/v1', mountFetch(managementApi(tb).fetch))   // GET /v1/keys -> the app's GET /keys
 * ```
 */
export function mountFetch(handler: FetchHandler): RequestHandler {
  if (typeof handler !== 'function')
    throw new TypeError(
      'mountFetch(handler): handler must be a function of a Request, e.g. app.fetch',
    )
  return function mountFetch(req: Request, res: Response, next: NextFunction): void {
    const abort = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    let request: Request_
    try {
      request = toWebRequest(req, abort.signal)
    } catch (err) {
      next(err)
      return
    }
    Promise.resolve()
      .then(() => handler(request, { incoming: req, outgoing: res }))
      .then(
        (r) => writeWebResponse(res, r),
        (err) => {
          if (!res.headersSent) next(err)
          else res.destroy(err as Error)
        },
      )
      .catch((err) => {
        // The client went away mid-body, or the body stream failed: nothing more to send.
        if (!res.destroyed) res.destroy(err as Error)
      })
  }
}
