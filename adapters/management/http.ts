/**
 * @module tollbooth/management/http
 *
 * The HTTP plumbing of the management API, kept apart from its routes: reading a JSON body
 * with a size bound, validating bodies and queries with zod into the core's
 * `InvalidRequestError` (a 400 naming each bad field), and turning any thrown error into the
 * `{ error, code }` JSON answer. Nothing here knows about keys or accounts.
 */

import type { Context } from 'hono'
import type { z } from 'zod'
import {
  BodyTooLargeError,
  type DenialName,
  denialAnswer,
  InvalidRequestError,
  isTollboothError,
  parseInput,
  readBodyBounded,
  type Storage,
} from '../../src/internal.js'

/** Bodies above this many bytes are refused with 413 before they are parsed. */
export const BODY_LIMIT_BYTES = 64 * 1024

/** JSON answer with the headers every management response carries (never cached: secrets). */
export function json(data: unknown, status = 200, headers?: Record<string, string>): Response {
  const h = new Headers(headers)
  h.set('content-type', 'application/json; charset=utf-8')
  h.set('cache-control', 'no-store')
  return new Response(JSON.stringify(data), { status, headers: h })
}

/**
 * A refusal from the core's table of denials (src/denials.ts): its status, code and challenge
 * header, with `message` in place of the table's.
 */
export function refusal(name: DenialName, message?: string): Response {
  const d = denialAnswer(name, message)
  return json(d.body, d.status, d.headers)
}

/** A 204 with no body. */
export function noContent(headers?: Record<string, string>): Response {
  const h = new Headers(headers)
  h.set('cache-control', 'no-store')
  return new Response(null, { status: 204, headers: h })
}

/**
 * The error answer: a tollbooth error keeps its status, code, message (and `issues` for a
 * 400), but a configuration error (`config_invalid`); anything else is a 500 whose message says nothing about the cause, which goes to
 * `report` (without secrets: errors of the core never hold one). A failure while the storage's
 * client is closed under tollbooth (`storage.closed()`) is a 503 `storage_unavailable`, as on
 * the product's routes, whatever the driver threw.
 */
export function errorResponse(
  err: unknown,
  report: (err: unknown) => void,
  storage?: Pick<Storage, 'closed'>,
): Response {
  if (storage?.closed?.() !== undefined && !(isTollboothError(err) && err.status < 500)) {
    report(err)
    return refusal('storage_unavailable')
  }
  // A configuration error (a schema never migrated, say) is the operator's to fix: its message
  // names the setup (a schema, the call to make), so the caller gets the answer of any other
  // failure of the server, and `onError` the error.
  if (isTollboothError(err) && err.code !== 'config_invalid') {
    const body: Record<string, unknown> = { error: err.message, code: err.code }
    const issues = (err as { issues?: unknown }).issues
    // A body refused for its size (413) names no field.
    if (Array.isArray(issues) && err.status !== 413) body['issues'] = issues
    return json(body, err.status)
  }
  report(err)
  return refusal('internal_error')
}

/**
 * Parses `value` with `schema`, or throws a 400 naming every bad field: the core's
 * `parseInput`, so the management API and `tb.keys` word a bad field the same way.
 *
 * @param where 'body' or 'query', named in the message and used as the path of root issues
 */
export const parse: <S extends z.ZodType>(schema: S, value: unknown, where: string) => z.output<S> =
  parseInput

/**
 * The query string as a record (the last of repeated names wins). `fromEntries` defines each
 * name as an own field, so `?__proto__=1` is a field the strict query schemas refuse, not the
 * record's prototype (an assignment set that, and the parameter went unseen).
 */
export function queryOf(c: Context): Record<string, string> {
  const q = c.req.url.indexOf('?')
  return q === -1 ? {} : Object.fromEntries(new URLSearchParams(c.req.url.slice(q + 1)))
}

const tooLarge = () =>
  new InvalidRequestError(`Request body too large: at most ${BODY_LIMIT_BYTES} bytes`, [], {
    status: 413,
  })

/**
 * The JSON body, or `{}` when the request has none (so optional bodies, as on rotate, may be
 * left out). A body that is not JSON is a 400; over {@link BODY_LIMIT_BYTES} a 413.
 */
export async function readJson(c: Context): Promise<unknown> {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(
      await readBodyBounded(c.req.raw, BODY_LIMIT_BYTES),
    )
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw tooLarge()
    throw new InvalidRequestError('Invalid request body: must be UTF-8 JSON', [
      { path: '(body)', message: 'must be UTF-8 JSON' },
    ])
  }
  if (text.trim() === '') return {}
  try {
    return JSON.parse(text)
  } catch {
    throw new InvalidRequestError('Invalid request body: must be JSON', [
      { path: '(body)', message: 'must be valid JSON (send Content-Type: application/json)' },
    ])
  }
}
