/**
 * @module denials
 *
 * Every refusal tollbooth answers, in one table: its code, HTTP status, message and the
 * challenge header (`WWW-Authenticate`, or `Retry-After` for a store that did not answer).
 * The pipeline (`authenticate`), the management API and the portal build their refusals from
 * it, so one code always means one status and one shape: `{"error":message,"code":code}`.
 */

import type { Denial } from './decision.js'
import type { ErrorCode } from './errors.js'
import { withHeader } from './headers.js'

/** One row of the table. */
export interface DenialSpec {
  readonly code: ErrorCode
  readonly status: number
  /** The message, unless the caller gives a more specific one. */
  readonly message: string
  /** A header that tells the client what to do next, sent with the refusal. */
  readonly challenge?: readonly [name: string, value: string]
}

const INVALID_TOKEN = ['WWW-Authenticate', 'Bearer error="invalid_token"'] as const

/**
 * The refusals, by name (the code, or a narrower case of it). Limits (`quota_exceeded`,
 * `rate_limited`, `concurrency_limited`, `insufficient_credits`) name the limit in their
 * message and carry `Retry-After` from the counters; quotas take the route's `quotaStatus`.
 */
export const DENIALS = {
  missing_api_key: {
    code: 'missing_api_key',
    status: 401,
    message: 'Missing API Key',
    challenge: ['WWW-Authenticate', 'Bearer'],
  },
  /** A key sent as `Authorization: <key>`, without the scheme. */
  not_bearer: {
    code: 'invalid_request',
    status: 401,
    message: 'The Authorization header must be "Bearer <key>"',
    challenge: ['WWW-Authenticate', 'Bearer error="invalid_request"'],
  },
  invalid_api_key: {
    code: 'invalid_api_key',
    status: 401,
    message: 'Invalid API Key',
    challenge: INVALID_TOKEN,
  },
  inactive_api_key: {
    code: 'inactive_api_key',
    status: 401,
    message: 'Inactive API Key',
    challenge: INVALID_TOKEN,
  },
  expired_api_key: {
    code: 'expired_api_key',
    status: 401,
    message: 'Expired API Key',
    challenge: INVALID_TOKEN,
  },
  /** An `Idempotency-Key` header present with a value tollbooth cannot keep. */
  invalid_idempotency_key: {
    code: 'invalid_request',
    status: 400,
    message:
      'Invalid Idempotency-Key header: it must be 1 to 255 printable ASCII characters, without spaces',
  },
  ip_blocked: { code: 'ip_blocked', status: 403, message: 'IP temporarily blocked' },
  wrong_key_kind: {
    code: 'wrong_key_kind',
    status: 403,
    message: 'This route does not accept this kind of key',
  },
  insufficient_scope: { code: 'insufficient_scope', status: 403, message: 'Missing scope' },
  outside_time_block: {
    code: 'outside_time_block',
    status: 403,
    message: 'This key can only be used during its reserved time blocks',
  },
  quota_exceeded: { code: 'quota_exceeded', status: 429, message: 'Rate limit exceeded' },
  rate_limited: { code: 'rate_limited', status: 429, message: 'Rate limit exceeded' },
  concurrency_limited: {
    code: 'concurrency_limited',
    status: 429,
    message: 'Too many concurrent requests',
  },
  insufficient_credits: {
    code: 'insufficient_credits',
    status: 402,
    message: 'Insufficient credits',
  },
  storage_unavailable: {
    code: 'storage_unavailable',
    status: 503,
    message: 'Storage unavailable',
    challenge: ['Retry-After', '1'],
  },
  /** Credentials the management API or the portal do not accept (missing or unknown). */
  unauthorized: {
    code: 'unauthorized',
    status: 401,
    message: 'Missing credentials',
    challenge: ['WWW-Authenticate', 'Bearer'],
  },
  /** `unauthorized` for a credential presented and refused. */
  invalid_credentials: {
    code: 'unauthorized',
    status: 401,
    message: 'Invalid credentials',
    challenge: INVALID_TOKEN,
  },
  forbidden: { code: 'forbidden', status: 403, message: 'Forbidden' },
  not_found: { code: 'not_found', status: 404, message: 'Not found' },
  body_too_large: { code: 'invalid_request', status: 413, message: 'Request body too large' },
  session_keys_unavailable: {
    code: 'session_keys_unavailable' as ErrorCode,
    status: 503,
    message: 'Session keys unavailable; try again later',
  },
  internal_error: {
    code: 'internal_error' as ErrorCode,
    status: 500,
    message: 'Internal server error',
  },
} as const satisfies Record<string, DenialSpec>

export type DenialName = keyof typeof DENIALS

/** A refusal's status and body, for an answer built outside the pipeline. */
export interface DenialAnswer {
  status: number
  code: ErrorCode
  message: string
  /** The JSON body: `{ error, code }`. */
  body: { error: string; code: ErrorCode }
  /** The challenge header, when the refusal has one (else empty). */
  headers: Record<string, string>
}

/**
 * The answer for `name`, with `message` in place of the table's (a message naming what a
 * route accepts, say). The status and the challenge always come from the table.
 */
export function denialAnswer(name: DenialName, message?: string): DenialAnswer {
  const spec: DenialSpec = DENIALS[name]
  const text = message ?? spec.message
  const headers: Record<string, string> = {}
  if (spec.challenge) headers[spec.challenge[0]] = spec.challenge[1]
  return {
    status: spec.status,
    code: spec.code,
    message: text,
    body: { error: text, code: spec.code },
    headers,
  }
}

/** What a refusal of the pipeline varies beyond the table: a message, a status, headers. */
export interface DenialDetail {
  message?: string
  /** In place of the table's (a quota's status is the route's `quotaStatus`). */
  status?: number
  /** The headers to send, made for this answer (else a copy of the request's). */
  headers?: Record<string, string>
}

/**
 * A refusal of the pipeline, ready to write: the table's status and challenge, the request's
 * headers (`X-Request-Id`), `Content-Type` and the JSON body.
 *
 * @param at the request's headers so far and its id
 * @param detail a message in place of the table's, or more
 */
export function denial(
  name: DenialName,
  at: { readonly headers: Record<string, string>; readonly requestId: string },
  detail?: string | DenialDetail,
): Denial {
  const spec: DenialSpec = DENIALS[name]
  let message = spec.message
  let status = spec.status
  let headers: Record<string, string> | undefined
  if (typeof detail === 'string') message = detail
  else if (detail !== undefined) {
    if (detail.message !== undefined) message = detail.message
    if (detail.status !== undefined) status = detail.status
    headers = detail.headers
  }
  // A record made for this answer: every adapter writes it and nothing else.
  const out = headers ?? withHeader(at.headers)
  if (spec.challenge) out[spec.challenge[0]] = spec.challenge[1]
  out['Content-Type'] = 'application/json; charset=utf-8'
  return {
    allowed: false,
    status,
    code: spec.code,
    message,
    headers: out,
    body: JSON.stringify({ error: message, code: spec.code }),
    requestId: at.requestId,
  }
}
