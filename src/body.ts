/**
 * @module body
 *
 * Reading a request body with a size bound, on Web streams only (no framework, no node:*):
 * a declared `Content-Length` over the bound is refused before any byte is read, and a body
 * streamed without one is read up to the bound and no further (the rest is cancelled), so a
 * caller that sends gigabytes costs the server at most `maxBytes` of memory.
 */

/** The most a billing webhook body may hold (Stripe's events are a few kB). */
export const WEBHOOK_BODY_MAX_BYTES = 1 << 20

/** The body passed `maxBytes` (declared or streamed). */
export class BodyTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`Request body too large: at most ${maxBytes} bytes`)
    this.name = 'BodyTooLargeError'
  }
}

/**
 * The bytes of `request`'s body (empty when it has none).
 *
 * @throws {BodyTooLargeError} when the body is, or says it is, longer than `maxBytes`
 */
export async function readBodyBounded(request: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get('content-length') ?? '0')
  if (declared > maxBytes) throw new BodyTooLargeError(maxBytes)
  if (!request.body) return new Uint8Array(0)
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel().catch(() => {})
      throw new BodyTooLargeError(maxBytes)
    }
    chunks.push(value)
  }
  const all = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    all.set(c, at)
    at += c.byteLength
  }
  return all
}

/**
 * Set by a framework bridge on a `Request` whose body is not the bytes the client sent: a body
 * parser in front (Express's `express.json()`, `express.urlencoded()`) read them, and the
 * bridge passes on what it parsed, serialized again as JSON. A signature over the raw body (a
 * billing webhook's) cannot hold, and the `Content-Type` the client sent (a form's, say) is
 * not the one the request now shows.
 */
export const REPARSED_BODY = Symbol.for('tollbooth.reparsedBody')

/** What a bridge records of a re-serialized body: who parsed it, and the type the client sent. */
export interface ReparsedBody {
  parser: string
  contentType: string | null
}

/** Marks `request` as carrying a re-serialized body (see {@link REPARSED_BODY}). */
export function markReparsedBody(request: Request, reparsed: ReparsedBody): Request {
  Object.defineProperty(request, REPARSED_BODY, { value: reparsed })
  return request
}

/** How `request`'s body was re-serialized, or undefined when it holds the bytes sent. */
export function reparsedBody(request: Request): ReparsedBody | undefined {
  return (request as unknown as Record<symbol, ReparsedBody | undefined>)[REPARSED_BODY]
}

/**
 * Why a webhook cannot be checked when its body was re-serialized, or undefined when it holds
 * the bytes sent: the provider signs those bytes, so the answer says how to keep them.
 */
export function reparsedWebhookMessage(request: Request): string | undefined {
  const parser = reparsedBody(request)?.parser
  if (parser === undefined) return undefined
  return `Webhook body was parsed by ${parser} and re-serialized, so its signature cannot be checked: mount the webhook before the parser, or keep the raw bytes with express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })`
}
