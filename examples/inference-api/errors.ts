/**
 * @module examples/inference-api/errors
 *
 * Errors in the shape each SDK expects. tollbooth answers a refused request with
 * `{ "error": message, "code": code }`; on the OpenAI-compatible routes that becomes
 * `{ "error": { message, type, param, code } }` and on the Anthropic-compatible route
 * `{ "type": "error", "error": { type, message } }`. The status (and `Retry-After`) stay as
 * tollbooth set them: the SDKs pick their error class from the status (401
 * `AuthenticationError`, 429 `RateLimitError`, …) and retry 429s after `Retry-After`.
 */

import type { FastifyError, FastifyInstance } from 'fastify'
import { isTollboothError } from '../../src/index.js'

export type Dialect = 'openai' | 'anthropic'

/** An error a handler throws with the status and fields to answer. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message)
  }
}

const OPENAI_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'invalid_request_error',
  402: 'insufficient_quota',
  403: 'permission_error',
  404: 'invalid_request_error',
  429: 'rate_limit_error',
}

const ANTHROPIC_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
}

/** The error body of `dialect` for a status and message. */
export function errorBody(
  dialect: Dialect,
  status: number,
  message: string,
  code: string | null = null,
  param: string | null = null,
): object {
  if (dialect === 'openai')
    return { error: { message, type: OPENAI_TYPES[status] ?? 'server_error', param, code } }
  return { type: 'error', error: { type: ANTHROPIC_TYPES[status] ?? 'api_error', message } }
}

/**
 * Makes every error answered in `scope` (an encapsulated context) speak `dialect`: thrown
 * errors through the error handler, and tollbooth's refusals (sent before the handler runs)
 * rewritten on their way out.
 */
export function dialectErrors(scope: FastifyInstance, dialect: Dialect): void {
  scope.setErrorHandler((err: FastifyError | ApiError, _request, reply) => {
    if (err instanceof ApiError)
      return reply
        .code(err.status)
        .send(errorBody(dialect, err.status, err.message, err.code, err.param))
    if (isTollboothError(err))
      return reply.code(err.status).send(errorBody(dialect, err.status, err.message, err.code))
    const status = (err as FastifyError).statusCode
    if (typeof status === 'number' && status >= 400 && status < 500) {
      const message =
        (err as FastifyError).code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError
          ? 'The request body is not valid JSON'
          : err.message
      return reply.code(status).send(errorBody(dialect, status, message, 'invalid_request'))
    }
    reply.log.error(err)
    return reply.code(500).send(errorBody(dialect, 500, 'Internal server error', 'internal_error'))
  })

  scope.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode < 400 || typeof payload !== 'string') return payload
    let body: unknown
    try {
      body = JSON.parse(payload)
    } catch {
      return payload
    }
    const b = body as { error?: unknown; code?: unknown }
    // Only tollbooth's own shape; bodies already in the dialect pass untouched.
    if (typeof b.error !== 'string' || typeof b.code !== 'string') return payload
    return JSON.stringify(errorBody(dialect, reply.statusCode, b.error, b.code))
  })
}
