/**
 * @module adapters/node/queued
 *
 * A response queued behind another on its connection. Node answers a connection's requests in
 * order (HTTP/1.1 pipelining): a response gets the socket only once the one before it has
 * finished, and until then it has none. When the connection closes first, Node destroys the
 * queued request and drops its response unsent, without a `close` on that response: whatever
 * waits for that `close` would wait forever — an adapter settling the request (its credit hold
 * and concurrency slot held until they expire), a stream piped into the response (`pipe`
 * unpipes on `close`), `@hono/node-server` writing a stream body (it cancels the body on
 * `close`), the application's own `res.on('close')`. The request's own `close` tells it
 * instead, and the response's is then emitted, as Node emits it for a response whose
 * connection closed under it.
 */

/** The parts of Node's `IncomingMessage` read here. */
interface QueuedRequest {
  readonly closed: boolean
  readonly socket: { readonly destroyed: boolean } | null
  once(event: 'close', listener: () => void): unknown
}

/** The parts of Node's `ServerResponse` read and set here. */
interface QueuedResponse {
  readonly socket: unknown
  /** True once its `close` was emitted (an `Http2ServerResponse` has none). */
  readonly closed?: boolean
  readonly writableFinished: boolean
  emit(event: 'close'): boolean
}

/**
 * Emits `close` on a response that has no socket yet (queued behind a pipelined response) when
 * its connection closes before it got one: the `close` Node never emits for it, so every
 * listener of the response's `close` (the adapter's, a pipe's, the application's) learns that
 * its client went away. Does nothing for a response that has its socket (its own `close`
 * comes), so it costs one property read on the hot path.
 */
export function watchQueued(req: QueuedRequest, res: QueuedResponse): void {
  if (res.socket !== null && res.socket !== undefined) return
  const check = () => {
    // Still without a socket, and no `close` of its own came (it never got one).
    const queued = (res.socket === null || res.socket === undefined) && !res.closed
    if (queued && !res.writableFinished && req.socket?.destroyed !== false) closeQueued(res)
  }
  // Its connection closed while the admission was in flight (a store's round trip).
  if (req.closed) check()
  else req.once('close', check)
}

/** What Node does for a response whose connection closed (`emitCloseNT` in `_http_server`). */
function closeQueued(res: QueuedResponse): void {
  const r = res as unknown as { destroyed: boolean; _closed: boolean }
  r.destroyed = true
  r._closed = true
  res.emit('close')
}
