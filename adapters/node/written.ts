/**
 * @module adapters/node/written
 *
 * How a Node response ended, read when it closes. Over HTTP/1.1, `finish` (`writableFinished`)
 * comes only once the handler ended the response and its last bytes went to the socket; a
 * client that went away first leaves it false. Over HTTP/2 (Node's compatibility API, which
 * Fastify's `http2: true` and `@hono/node-server`'s `http2.createServer` serve through), a
 * stream the client reset (RST_STREAM: a cancelled `fetch`, a closed tab) emits `finish` too
 * and reads `writableFinished` true, though the handler never ended it: `writableEnded` tells
 * the two apart, unless the handler ended it into the reset stream. That happens to a POST
 * whose upload the client reset: Node ends the request body there as if it were whole (`end`,
 * then `aborted`), the handler answers, and the response reads as ended and finished. The
 * stream's `rstCode` (0 for a stream that closed normally) tells that one.
 */

/** An `Http2ServerResponse`'s stream, as read here. */
interface ResponseStream {
  readonly destroyed: boolean
  /** The RST_STREAM code the stream was closed with, from either end; 0 when it ended normally. */
  readonly rstCode?: number | undefined
}

/** The parts of Node's `ServerResponse` (or `Http2ServerResponse`) read here. */
export interface EndingResponse {
  readonly writableFinished: boolean
  readonly writableEnded: boolean
  /** HTTP/2's stream (an HTTP/1.1 response has none). */
  readonly stream?: ResponseStream | null
}

/** True when the handler ended the response and it was written in full (a client gone: false). */
export function writtenInFull(res: EndingResponse): boolean {
  return res.writableFinished && res.writableEnded && !res.stream?.rstCode
}

/** The parts of a Node response read by {@link closedAlready}. */
export interface ClosingResponse {
  /** An HTTP/1.1 `ServerResponse`'s: true once its `close` was emitted. */
  readonly closed?: boolean
  /** An `Http2ServerResponse`'s stream (it has no `closed` of its own). */
  readonly stream?: ResponseStream | null
}

/**
 * True when the response has closed already (its `close` was emitted, or is on its way): a
 * client that left while the admission was in flight (a store's round trip), before the adapter
 * listened for that `close`. Over HTTP/2 the response has no `closed`: its stream, reset by
 * the client or closed with its session, is destroyed.
 */
export function closedAlready(res: ClosingResponse): boolean {
  return res.closed === true || res.stream?.destroyed === true
}
