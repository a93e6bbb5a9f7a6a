/**
 * @module tollbooth/hono/streaming
 *
 * Hono's streaming helpers, `streamSSE`, `stream` and `streamText`, with the same signatures,
 * telling tollbooth when their callback has returned: Hono's own cannot be seen once the
 * client has cancelled the stream, so a request whose client went away would settle before
 * the callback reports what it produced.
 */

import type { Context } from 'hono'
import {
  stream as honoStream,
  streamSSE as honoStreamSSE,
  streamText as honoStreamText,
} from 'hono/streaming'
import { type Admission, beginWork, endWork } from '../../src/internal.js'

/** What the streaming helpers hand their callback; `close()` is what they call last. */
interface StreamingApi {
  close(): Promise<void>
}

/**
 * Counts a streaming callback as the handler's work until the helper closes the stream (after
 * the callback and its `onError` returned): a request whose client went away then settles
 * when the callback is done, with what it reported on its way out.
 */
function watchCallback<S extends StreamingApi>(c: Context, s: S): S {
  const decision = c.get('apiKey') as Admission | undefined
  if (decision === undefined || decision.settled) return s
  beginWork(decision)
  const close = s.close
  let open = true
  s.close = async function closeAndEnd(this: S) {
    try {
      await close.call(this)
    } finally {
      if (open) {
        open = false
        endWork(decision)
      }
    }
  }
  return s
}

/**
 * Hono's `streamSSE`, with the same signature, that also tells tollbooth when the callback
 * has returned. Use it (or `stream` / `streamText` from here) on routes guarded by
 * `requireApiKey`: when the client goes away mid-stream, the request then settles (499) once
 * the callback has finished, so what it reports on its way out is charged and the
 * concurrency slot stays taken while it runs. With Hono's own helpers, whose callback tollbooth
 * cannot see, such a request settles as soon as the stream is cancelled.
 *
 * @example
 * ```ts
 * import { requireApiKey, streamSSE } from 'tollbooth/hono'
 * app.get('/v1/chat', requireApiKey(tb, { cost: 100 }), (c) =>
 *   streamSSE(c, async (stream) => {
 *     let tokens = 0
 *     try {
 *       for await (const t of model.generate({ signal: c.req.raw.signal })) {
 *         tokens++
 *         await stream.writeSSE({ data: t })
 *       }
 *     } finally {
 *       c.get('apiKey').report({ cost: tokens, tokens })
 *     }
 *   }),
 * )
 * ```
 */
export const streamSSE: typeof honoStreamSSE = (c, cb, onError) =>
  honoStreamSSE(c, (s) => cb(watchCallback(c, s)), onError)

/** Hono's `stream`, telling tollbooth when the callback has returned (see {@link streamSSE}). */
export const stream: typeof honoStream = (c, cb, onError) =>
  honoStream(c, (s) => cb(watchCallback(c, s)), onError)

/** Hono's `streamText`, telling tollbooth when the callback has returned (see {@link streamSSE}). */
export const streamText: typeof honoStreamText = (c, cb, onError) =>
  honoStreamText(c, (s) => cb(watchCallback(c, s)), onError)
