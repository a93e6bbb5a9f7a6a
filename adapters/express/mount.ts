/**
 * @module tollbooth/express/mount
 *
 * `mountFetch(handler)`: runs a Web-standard fetch handler (such as the management API's
 * `managementApi(tb).fetch`) inside Express. The Node request becomes a `Request` whose path
 * is relative to where the middleware is mounted (`req.baseUrl` is removed), its body is
 * streamed through, and the `Response` is streamed back with its status and headers. The
 * handler gets `{ incoming, outgoing }` as its second argument, the bindings of
 * `@hono/node-server`, so a Hono app reads the socket address the same way in both.
 *
 * A body parser mounted in front (`express.json()`, …) must not decide the answer for the
 * handler: its errors on the mounted paths come back to the handler (see {@link mountFetch}).
 */

import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'

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
  raw?: string,
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
    if (raw !== undefined) {
      // The text a body parser read and could not parse: the handler judges it itself.
      init.body = raw
      headers.delete('content-length')
    } else if (req.readableEnded || (req as { _body?: boolean })._body === true) {
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

/** What body-parser (behind `express.json()`, `express.text()`, …) passes to `next(err)`. */
interface BodyParserError {
  type: string
  status: number
  message: string
  body?: unknown
}

function isBodyParserError(err: unknown): err is BodyParserError {
  const e = err as Partial<BodyParserError> | null
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.type === 'string' &&
    typeof e.status === 'number' &&
    e.status >= 400 &&
    e.status < 500
  )
}

/** The middlewares of {@link mountFetch}: the bridge, then its body-parser error catcher. */
export type MountedFetch = [RequestHandler, ErrorRequestHandler]

/**
 * Mounts a fetch handler in Express.
 *
 * Returns two middlewares for one `app.use()`: the bridge, and an error handler that takes
 * back a body parser's refusal on the mounted paths, so the handler's own answer holds
 * whatever runs in front. A body that did not parse (`entity.parse.failed`) is handed to the
 * handler as the text that was read (the management API answers its JSON 400 `invalid_request`
 * naming `(body)`, after its own authentication); any other 4xx of the parser (a body over its
 * `limit`, an unsupported charset) is answered as JSON `{ error, code: 'invalid_request' }`
 * with the parser's status. Other errors go on to `next(err)`.
 *
 * @param handler e.g. `managementApi(tb).fetch`; gets the request with the mount path removed
 * @returns `[bridge, onBodyError]`, to pass to `app.use(path, …)` or `router.use(path, …)`;
 *   a thrown handler error goes to `next(err)`
 * @example
 * ```ts
 * app.use('/v1', mountFetch(managementApi(tb).fetch))   // GET /v1/keys -> the app's GET /keys
 * ```
 */
export function mountFetch(handler: FetchHandler): MountedFetch {
  if (typeof handler !== 'function')
    throw new TypeError(
      'mountFetch(handler): handler must be a function of a Request, e.g. app.fetch',
    )
  const serve = (req: Request, res: Response, next: NextFunction, raw?: string): void => {
    const abort = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    let request: Request_
    try {
      request = toWebRequest(req, abort.signal, raw)
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
  const bridge: RequestHandler = function mountFetch(req, res, next) {
    serve(req, res, next)
  }
  const onBodyError: ErrorRequestHandler = function mountFetchBodyError(err, req, res, next) {
    if (!isBodyParserError(err) || res.headersSent) {
      next(err)
      return
    }
    if (err.type === 'entity.parse.failed' && typeof err.body === 'string') {
      // `next` here skips the error: a failure of the handler goes on to the app's handlers.
      serve(req, res, next, err.body)
      return
    }
    res.status(err.status).json({
      error: `Invalid request body: ${err.message}`,
      code: 'invalid_request',
    })
  }
  return [bridge, onBodyError]
}
