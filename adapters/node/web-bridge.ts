/**
 * @module adapters/node/web-bridge
 *
 * The Node <-> Web bridge that the Express and Fastify `mountFetch` share: a Node request
 * becomes a Web `Request` (headers, method, body, an abort signal that fires when the client
 * goes away) and a Web `Response` becomes a Node status, headers (each `Set-Cookie` kept
 * apart) and a body stream. Each framework keeps only what is its own: the path relative to
 * its mount point, a body a parser read first, how it writes the answer.
 */

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import { argumentError } from '../../src/internal.js'
import { watchQueued } from './queued.js'
import { closedAlready, writtenInFull } from './written.js'

/** The Node objects handed to the fetch handler, as `@hono/node-server` names them. */
export interface NodeBindings {
  incoming: IncomingMessage
  outgoing: ServerResponse
}

/** A Web-standard handler: `app.fetch` of Hono, or any function of a `Request`. */
export type FetchHandler = (request: Request, env: NodeBindings) => Response | Promise<Response>

/**
 * Throws unless `handler` is a function (the check of both `mountFetch`).
 *
 * @throws {ConfigError} `mountFetch: handler must be a function of a Request, e.g. app.fetch, got …`
 */
export function checkHandler(handler: unknown): asserts handler is FetchHandler {
  if (typeof handler !== 'function')
    throw argumentError(
      'mountFetch',
      'handler',
      'must be a function of a Request, e.g. app.fetch',
      handler,
    )
}

/**
 * A signal that aborts when the response closes before it was written in full, or when its
 * connection closes while it is queued behind a pipelined response (see `./queued.ts`), or
 * already aborted when the response had closed before this was called (the client left while
 * a hook or a body parser in front ran).
 */
export function abortOnClose(res: ServerResponse): AbortSignal {
  const abort = new AbortController()
  const gone = () => {
    if (!writtenInFull(res)) abort.abort()
  }
  if (closedAlready(res)) {
    gone()
    return abort.signal
  }
  res.once('close', gone)
  // A response queued behind a pipelined one gets no `close` if the connection goes first.
  watchQueued(res.req, res)
  return abort.signal
}

/** What a Web request is made of, as the framework read it. */
export interface NodeRequestParts {
  /** The absolute URL the handler sees (its path relative to the mount point). */
  url: URL
  req: IncomingMessage
  signal: AbortSignal
  /**
   * The body: text or bytes a parser already read, a stream still to read, or none. Given
   * as text or bytes, the request's `content-length` is dropped (the body may differ).
   */
  body?: string | Uint8Array<ArrayBuffer> | Readable | undefined
  /** The body's `content-type`, when it is not the request's (a body re-serialized as JSON). */
  contentType?: string
}

/** Builds the Web request: method, every header (repeated ones appended), body, signal. */
export function webRequest(p: NodeRequestParts): Request {
  const headers = new Headers()
  for (const [name, value] of Object.entries(p.req.headers as IncomingHttpHeaders)) {
    // HTTP/2's pseudo-headers (`:path`, `:authority`…) are no headers of a Web request (it
    // throws for the name); `:authority` is its `host`.
    if (value === undefined || name.charCodeAt(0) === 58) continue
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else headers.set(name, value)
  }
  const authority = p.req.headers[':authority']
  if (typeof authority === 'string' && !headers.has('host')) headers.set('host', authority)
  const method = p.req.method ?? 'GET'
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal: p.signal }
  const body = p.body
  if (method !== 'GET' && method !== 'HEAD' && body !== undefined) {
    if (body instanceof Readable) {
      init.body = Readable.toWeb(body) as unknown as ReadableStream
      init.duplex = 'half'
    } else {
      init.body = body
      headers.delete('content-length')
      if (p.contentType !== undefined) headers.set('content-type', p.contentType)
    }
  }
  return new Request(p.url, init)
}

/** The response's headers for Node: `set-cookie` as one array, the others as they are. */
export function nodeHeaders(r: Response): Array<[string, string | string[]]> {
  const out: Array<[string, string | string[]]> = []
  for (const [name, value] of r.headers) if (name !== 'set-cookie') out.push([name, value])
  const cookies = r.headers.getSetCookie()
  if (cookies.length > 0) out.push(['set-cookie', cookies])
  return out
}

/** The response's body as a Node stream, or null when it has none. */
export function nodeBody(r: Response): Readable | null {
  return r.body ? Readable.fromWeb(r.body as NodeReadableStream) : null
}
