/**
 * @module errors
 *
 * The one error hierarchy of tollbooth. Every error carries a stable lowercase snake `code`
 * (sent to API clients as `{ "error": message, "code": code }`) and an HTTP `status`.
 *
 * Configuration mistakes are thrown at construction as {@link ConfigError}; request outcomes
 * are never thrown: `authenticate()` returns a denied `Decision` carrying the same code,
 * status and message (see `src/decision.ts`). Each code is documented in `docs/errors.md`.
 *
 * Use {@link isTollboothError} rather than `instanceof`: two bundled copies of tollbooth
 * (an ESM and a CJS one, say) agree on the brand, not on the class identity.
 */

const BRAND = Symbol.for('tollbooth.error')

/**
 * Every code tollbooth can send to an API client or throw, each documented in
 * `docs/errors.md` (a test holds the two lists equal).
 */
export const ERROR_CODES = [
  'config_invalid',
  'invalid_request',
  'missing_api_key',
  'invalid_api_key',
  'inactive_api_key',
  'expired_api_key',
  'wrong_key_kind',
  'insufficient_scope',
  'outside_time_block',
  'ip_blocked',
  'quota_exceeded',
  'rate_limited',
  'concurrency_limited',
  'insufficient_credits',
  'not_found',
  'conflict',
  'unauthorized',
  'forbidden',
  'not_implemented',
  'billing_unavailable',
  'storage_unavailable',
  'session_keys_unavailable',
  'invalid_signature',
  'webhook_failed',
  'internal_error',
] as const

/** Every code tollbooth can send to an API client or throw. */
export type ErrorCode = (typeof ERROR_CODES)[number]

/** The codes that have their own error class (with its own fields, e.g. `issues`). */
type ClassCode =
  | 'config_invalid'
  | 'invalid_request'
  | 'not_found'
  | 'conflict'
  | 'not_implemented'
  | 'billing_unavailable'
  | 'storage_unavailable'

/** The JSON body sent to API clients: `{ "error": message, "code": code }`. */
export interface ErrorBody<C extends ErrorCode = ErrorCode> {
  error: string
  code: C
  issues?: InvalidField[]
}

/**
 * Base class of every tollbooth error.
 *
 * @example
 * ```ts
 * try { createTollbooth({}) } catch (err) {
 *   if (isTollboothError(err) && err.code === 'config_invalid') console.error(err.message)
 * }
 * ```
 */
export class TollboothError<C extends ErrorCode = ErrorCode> extends Error {
  readonly [BRAND] = true
  readonly code: C
  readonly status: number

  constructor(code: C, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.status = status
    this.name = this.constructor.name
  }

  /** The JSON body sent to API clients. */
  toJSON(): ErrorBody<C> {
    return { error: this.message, code: this.code }
  }
}

/**
 * A bad option given to `createTollbooth()`, a route or an adapter, thrown at construction, or
 * a bad argument given to a function in code (`apiKey.waitUntil(promise)`), thrown by the call;
 * never an answer to a request. The message names every bad option or argument and what was
 * expected. `err.code === 'config_invalid'`.
 */
export class ConfigError extends TollboothError<'config_invalid'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('config_invalid', 500, message, options)
  }
}

/** One bad field of a request body or query, as reported in a 400. */
export interface InvalidField {
  path: string
  message: string
}

/**
 * Bad input to a tollbooth method or the management API: nothing was changed.
 * `err.code === 'invalid_request'`, status 400 (413 for a body over the limit); `err.issues`
 * names each bad field.
 */
export class InvalidRequestError extends TollboothError<'invalid_request'> {
  readonly issues: InvalidField[]
  constructor(message: string, issues: InvalidField[] = [], options?: { status?: 400 | 413 }) {
    super('invalid_request', options?.status ?? 400, message)
    this.issues = issues
  }
  override toJSON(): ErrorBody<'invalid_request'> {
    return { error: this.message, code: this.code, issues: this.issues }
  }
}

/** The thing asked for does not exist, or belongs to another account. Status 404. */
export class NotFoundError extends TollboothError<'not_found'> {
  constructor(message = 'Not found') {
    super('not_found', 404, message)
  }
}

/**
 * The change is refused by the thing's state (e.g. deleting a key that was used, a key name
 * already taken). Status 409; `err.issues` names the field when one field is the cause.
 */
export class ConflictError extends TollboothError<'conflict'> {
  readonly issues: InvalidField[] | undefined
  constructor(message: string, issues?: InvalidField[]) {
    super('conflict', 409, message)
    this.issues = issues
  }
  override toJSON(): ErrorBody<'conflict'> {
    return this.issues
      ? { error: this.message, code: this.code, issues: this.issues }
      : { error: this.message, code: this.code }
  }
}

/** A feature that needs a provider that is not configured (e.g. billing). Status 501. */
export class NotImplementedError extends TollboothError<'not_implemented'> {
  constructor(message: string) {
    super('not_implemented', 501, message)
  }
}

/**
 * The billing provider (e.g. Stripe) did not answer or refused the call; nothing changed
 * here. `err.code === 'billing_unavailable'`, status 502. The provider's message is kept as
 * the cause, never sent to clients.
 */
export class BillingUnavailableError extends TollboothError<'billing_unavailable'> {
  constructor(message = 'Billing provider unavailable', options?: { cause?: unknown }) {
    super('billing_unavailable', 502, message, options)
  }
}

/**
 * The storage did not answer, or answered with an error, within the configured timeout.
 * `err.code === 'storage_unavailable'`, status 503. The cause is kept but never sent to clients.
 */
export class StorageUnavailableError extends TollboothError<'storage_unavailable'> {
  constructor(message = 'Storage unavailable', options?: { cause?: unknown }) {
    super('storage_unavailable', 503, message, options)
  }
}

/**
 * Any error tollbooth throws, narrowed by its `code`:
 *
 * @example
 * ```ts
 * if (isTollboothError(err) && err.code === 'invalid_request') console.log(err.issues)
 * ```
 */
export type AnyTollboothError =
  | ConfigError
  | InvalidRequestError
  | NotFoundError
  | ConflictError
  | NotImplementedError
  | BillingUnavailableError
  | StorageUnavailableError
  | TollboothError<Exclude<ErrorCode, ClassCode>>

/** True for any tollbooth error, even one thrown by another bundled copy of tollbooth. */
export function isTollboothError(err: unknown): err is AnyTollboothError {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[BRAND] === true
}
