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
import { pipeline } from 'node:stream/promises'
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import { markReparsedBody } from '../../src/internal.js'
import {
  abortOnClose,
  checkHandler,
  type FetchHandler,
  type NodeRequestParts,
  nodeBody,
  nodeHeaders,
  webRequest,
} from '../node/web-bridge.js'

export type { FetchHandler, NodeBindings } from '../node/web-bridge.js'

type Request_ = globalThis.Request
type Response_ = globalThis.Response

/**
 * The body a parser in front read (`express.json()`, …), as the handler gets it again: the
 * bytes the client sent when the parser kept them (`req.rawBody`, set by its `verify`
 * option), else what it parsed, serialized again (`reserialized`: not the bytes sent).
 */
function parsedBody(
  b: unknown,
  rawBody: unknown,
): Pick<NodeRequestParts, 'body' | 'contentType'> & { reserialized?: true } {
  if (rawBody instanceof Uint8Array) return { body: new Uint8Array(rawBody) }
  if (b === undefined || b === null) return {}
  if (typeof b === 'string') return { body: b }
  if (b instanceof Uint8Array) return { body: new Uint8Array(b) }
  return { body: JSON.stringify(b), contentType: 'application/json', reserialized: true }
}

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
  const url = new URL(path, `${protocol}://${host}`)
  // The text a body parser read and could not parse: the handler judges it itself.
  if (raw !== undefined) return webRequest({ url, req, signal, body: raw })
  // A body parser (express.json(), …) ran first: send what it parsed; else stream the body.
  const parsed = req.readableEnded || (req as { _body?: boolean })._body === true
  if (!parsed) return webRequest({ url, req, signal, body: req })
  const { reserialized, ...body } = parsedBody(req.body, (req as { rawBody?: unknown }).rawBody)
  const request = webRequest({ url, req, signal, ...body })
  return reserialized
    ? markReparsedBody(request, {
        parser: 'a body parser in front (express.json())',
        contentType: req.headers['content-type'] ?? null,
      })
    : request
}

/** Writes a Web response to a Node response, streaming its body; resolves when done. */
export async function writeWebResponse(res: ServerResponse, r: Response_): Promise<void> {
  res.statusCode = r.status
  for (const [name, value] of nodeHeaders(r)) res.setHeader(name, value)
  const body = nodeBody(r)
  if (!body) {
    res.end()
    return
  }
  await pipeline(body, res)
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
  checkHandler(handler)
  const serve = (req: Request, res: Response, next: NextFunction, raw?: string): void => {
    const signal = abortOnClose(res)
    let request: Request_
    try {
      request = toWebRequest(req, signal, raw)
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
