/**
 * @module adapters/node/queued
 *
 * A response queued behind another on its connection. Node answers a connection's requests in
 * order (HTTP/1.1 pipelining): a response gets the socket only once the one before it has
 * finished, and until then it has none. When the connection closes first, Node destroys the
 * queued request and drops its response unsent, without a `close` on that response: an adapter
 * that waits for `close` to settle would never settle it, its credit hold and concurrency slot
 * held until they expire. The request's own `close` tells it instead.
 */

/** The parts of Node's `IncomingMessage` read here. */
interface QueuedRequest {
  readonly closed: boolean
  readonly socket: { readonly destroyed: boolean } | null
  once(event: 'close', listener: () => void): unknown
}

/** The parts of Node's `ServerResponse` read here. */
interface QueuedResponse {
  readonly socket: unknown
  /** True once its `close` was emitted. */
  readonly closed: boolean
  readonly writableFinished: boolean
}

/**
 * Calls `onGone` (once, with the response as `this`) when the connection of a response that
 * has no socket yet (queued behind a pipelined response) closes before the response got one:
 * the `close` that response never emits. Does nothing for a response that has its socket
 * (its own `close` comes), so it costs one property read on the hot path.
 */
export function watchQueued<R extends QueuedResponse>(
  req: QueuedRequest,
  res: R,
  onGone: (this: R) => void,
): void {
  if (res.socket !== null && res.socket !== undefined) return
  const check = () => {
    // Still without a socket, and no `close` of its own came (it never got one).
    const queued = (res.socket === null || res.socket === undefined) && !res.closed
    if (queued && !res.writableFinished && req.socket?.destroyed !== false) onGone.call(res)
  }
  // Its connection closed while the admission was in flight (a store's round trip).
  if (req.closed) check()
  else req.once('close', check)
}
