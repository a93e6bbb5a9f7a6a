/**
 * @module decision
 *
 * What `authenticate()` returns: an {@link Admission} (the request may go on) or a
 * {@link Denial} (answer it from the prepared record). Denials are values, not exceptions:
 * status, code, message, headers and the JSON body are ready to write.
 */

import type { ErrorCode } from './errors.js'
import { setUsageHeaders } from './headers.js'
import { ownValue } from './input.js'
import type { AbortWait } from './response-end.js'
import type { ChargeWhen } from './settle.js'
import type { Check, KeyKind, KeyRecord } from './storage/types.js'

/** The public view of a key: everything but its hash. Safe to log and to return. */
export interface ApiKeyInfo {
  id: string
  name: string
  accountId: string
  kind: KeyKind
  category: string | null
  scopes: readonly string[]
  metadata: Readonly<Record<string, unknown>>
  /** Prefix and first characters, for display. */
  start: string
  expiresAt: number | null
}

export function publicKey(r: KeyRecord): ApiKeyInfo {
  return {
    id: r.id,
    name: r.name,
    accountId: r.accountId,
    kind: r.kind,
    category: r.category,
    scopes: r.scopes,
    metadata: r.metadata,
    start: r.start,
    expiresAt: r.expiresAt,
  }
}

/** A refused request, ready to answer. */
export interface Denial {
  readonly allowed: false
  readonly status: number
  readonly code: ErrorCode
  readonly message: string
  /**
   * Headers to send: `Content-Type`, and where they apply `X-Request-Id`, `Retry-After`,
   * `WWW-Authenticate` and the rate-limit family.
   */
  readonly headers: Record<string, string>
  /** The JSON body, serialized: `{"error":message,"code":code}`. */
  readonly body: string
  readonly requestId: string
}

export function deny(
  status: number,
  code: ErrorCode,
  message: string,
  headers: Record<string, string>,
  requestId: string,
): Denial {
  // `headers` is always a record made for this request: the body's type joins it here, so
  // every adapter writes one record and nothing else.
  headers['Content-Type'] = 'application/json; charset=utf-8'
  return {
    allowed: false,
    status,
    code,
    message,
    headers,
    body: JSON.stringify({ error: message, code }),
    requestId,
  }
}

/** What the handler reports for settle: units to charge, tokens used, provider, category. */
export interface Report {
  /** Credits to charge, replacing the route's estimate. */
  cost?: number
  /** Tokens used (counted against token-rate limits such as tpm). */
  tokens?: number
  /** The provider that served the request (sent as `X-Provider-Used`). */
  provider?: string
  /** The usage category, replacing the route's. */
  category?: string
}

/** Internal state settle needs; not part of the public surface. */
export interface SettleState {
  /** Counter keys and hold ids to release: [key, holdId, isCredit, keepUntil]. */
  holds: Array<[string, string, boolean, number | undefined]>
  /** Token-rate limits to count at settle. */
  tokenChecks: Array<Extract<Check, { type: 'gcra' }>>
  /** Credits held at admission (the estimate; 0 when the caller sent its own provider key). */
  estimate: number
  /** The route's cost for this request, held or not: charged unless the request is bypassed. */
  routeCost: number
  /** The credit figures at admission, after this request's hold: used and limit. */
  creditUsed: number
  creditLimit: number
  /** The plan lets requests run past the credits (the excess is recorded as overage). */
  creditOverage: boolean
  metered: boolean
  /**
   * The most this request may be charged (the route's cost, or more by an overdraft):
   * Infinity when a report is charged in full.
   */
  maxCharge: number
  /** Tokens reserved at admission against each of `tokenChecks`. */
  tokenEstimate: number
  /** The route's billing policy; default: see `settle`. */
  chargeWhen: ChargeWhen | undefined
  startedAt: number
  /** The request's own event id (its internal request id). */
  eventId: string
  /**
   * `<keyId>:<Idempotency-Key>` when the request carries one: a billed response is recorded
   * and charged once per value within a day (see `settle`).
   */
  idempotencyId?: string
  ip: string | null
  method: string
  path: string
  /** Provider keys presented by the caller in headers (lowercase provider -> key). */
  callerProviders: ReadonlySet<string>
}

/**
 * An admitted request. The adapter exposes it to the handler (`c.get('apiKey')`,
 * `req.apiKey`, `request.apiKey`); the handler may `charge()` and `report()`, and tollbooth
 * settles it exactly once after the response.
 */
export class Admission {
  readonly allowed = true as const
  readonly requestId: string
  readonly key: ApiKeyInfo
  readonly accountId: string
  /** Headers known at admission; `responseHeaders()` brings the usage figures up to date. */
  readonly headers: Record<string, string>
  category: string | null
  /** @internal */
  readonly _s: SettleState
  /** @internal: the charge reported by the handler; undefined keeps the route's cost. */
  _charged: number | undefined = undefined
  /** @internal: tokens reported by the handler. */
  _tokens = 0
  /** @internal: whether the handler reported tokens (else the estimate stands). */
  _tokensReported = false
  /** @internal: the provider the handler reported (lowercase). */
  _provider: string | null = null
  /** @internal */
  _settled = false
  /** @internal */
  readonly _usageHeaders: boolean
  /** @internal: resolves a stored provider key, set by the pipeline. */
  _resolveProvider:
    | ((accountId: string, provider: string) => Promise<string | undefined>)
    | undefined = undefined
  /**
   * @internal: an adapter's own per-request state, so it adds no property to the framework's
   * objects (each new property on Node's ServerResponse costs microseconds per request).
   */
  _adapter: unknown = undefined
  /**
   * @internal: the handler's work still running (the handler itself, a stream it produces):
   * a request whose client went away settles when it reaches 0 (see response-end.ts).
   */
  _work = 1
  /** @internal: ms from admission to the response head, or -1 before it. */
  _ttfb = -1
  /** @internal: set when the client went away before the end: who settles, and the deadline. */
  _gone: AbortWait | undefined = undefined
  /** @internal: called once when a watched response settles (ends a Worker's `waitUntil`). */
  _kept: (() => void) | undefined = undefined
  /** @internal: providers whose key came from the caller (header or store); null for none. */
  _byok: Set<string> | null
  /** A private field: never enumerated, serialized or printed by `util.inspect`. */
  readonly #providerKeys: Readonly<Record<string, string>>

  constructor(init: {
    requestId: string
    key: ApiKeyInfo
    providerKeys: Record<string, string>
    headers: Record<string, string>
    settle: SettleState
    usageHeaders: boolean
    category: string | null
  }) {
    this.requestId = init.requestId
    this.key = init.key
    this.accountId = init.key.accountId
    this.headers = init.headers
    this.category = init.category
    this._s = init.settle
    this._usageHeaders = init.usageHeaders
    this.#providerKeys = init.providerKeys
    this._byok = init.settle.callerProviders.size > 0 ? new Set(init.settle.callerProviders) : null
  }

  /**
   * Provider keys the caller sent in `X-Provider-Key-*` headers (provider -> key), on routes
   * with the `byok` option. A getter over a private field, so logging or serializing the
   * decision never prints them.
   */
  get providerKeys(): Readonly<Record<string, string>> {
    return this.#providerKeys
  }

  /** True once `settle()` has run for this admission (it runs at most once). */
  get settled(): boolean {
    return this._settled
  }

  /**
   * True when the admission holds a concurrency lease or credits that settle releases: an
   * adapter settles such a request as soon as its client goes away, not when the handler ends.
   */
  get holds(): boolean {
    return this._s.holds.length > 0
  }

  /**
   * True when `responseHeaders()` returns `headers` as they are, whatever the handler does (no
   * usage figures on this route): an adapter may then write them before the handler runs.
   */
  get headersFinal(): boolean {
    return !this._usageHeaders || !this._s.metered
  }

  /** Adds `units` credits to this request's charge (the sum of all calls replaces the estimate). */
  charge(units: number): void {
    if (!(units >= 0) || !Number.isFinite(units))
      throw new RangeError(`charge(units): units must be a finite number >= 0, got ${units}`)
    this._charged = (this._charged ?? 0) + units
  }

  /** Reports what the request used: tokens, the provider that served it, its category. */
  report(report: Report): void {
    // Check everything first: a bad report throws and changes nothing.
    const cost = report.cost
    const tokens = report.tokens
    const provider = report.provider
    const category = report.category
    if (cost !== undefined && !(Number.isFinite(cost) && cost >= 0))
      throw new RangeError(`report({ cost }): must be a finite number >= 0, got ${cost}`)
    if (tokens !== undefined && !(Number.isFinite(tokens) && tokens >= 0))
      throw new RangeError(`report({ tokens }): must be a finite number >= 0, got ${tokens}`)
    if (provider !== undefined && typeof provider !== 'string')
      throw new TypeError('report({ provider }): must be a string')
    if (category !== undefined && typeof category !== 'string')
      throw new TypeError('report({ category }): must be a string')
    if (cost !== undefined) this._charged = cost
    if (tokens !== undefined) {
      this._tokens += tokens
      this._tokensReported = true
    }
    if (provider !== undefined) this._provider = provider.toLowerCase()
    if (category !== undefined) this.category = category
  }

  /**
   * The key of `provider` to call upstream with: the caller's `X-Provider-Key-*` header first
   * (on routes with the `byok` option), else the account's stored key (on every route). A key
   * returned from either makes the request BYOK, not charged, unless the handler reports
   * another provider as the one that served it.
   */
  async providerKey(provider: string): Promise<string | undefined> {
    const p = provider.toLowerCase()
    const fromHeader = ownValue(this.#providerKeys, p)
    if (fromHeader) return fromHeader
    const stored = this._resolveProvider
      ? await this._resolveProvider(this.accountId, p)
      : undefined
    if (stored) {
      if (this._byok === null) this._byok = new Set()
      this._byok.add(p)
    }
    return stored
  }

  /**
   * True when the request is served on the caller's own provider key (not charged): the
   * reported provider's key came from the caller, or, with no provider reported, the caller
   * sent one or the handler took a stored one.
   */
  get bypassed(): boolean {
    const b = this._byok
    if (b === null) return false
    const p = this._provider
    return p ? b.has(p) : b.size > 0
  }

  /**
   * The credits this request will be charged if its response is billable: the route's cost
   * or the handler's report, bounded by the route's `overrun` policy.
   */
  get cost(): number {
    return this.bypassed ? 0 : Math.min(this._charged ?? this._s.routeCost, this._s.maxCharge)
  }

  /**
   * Every header to send with the response, with the usage figures after this request's
   * charge. Adapters call it once, right before the response head is written; it updates and
   * returns `headers` (no copy: headers are the hot path's largest cost).
   *
   * @param status the response status, when known: a response the route does not bill
   *   (by default status >= 400) then shows no charge
   */
  responseHeaders(status?: number): Record<string, string> {
    if (this.headersFinal) return this.headers
    const s = this._s
    const billed =
      status === undefined ||
      (s.chargeWhen
        ? s.chargeWhen(status, { outcome: 'completed', reported: this._charged !== undefined })
        : status < 400)
    setUsageHeaders(
      this.headers,
      s.creditUsed - s.estimate + (billed ? this.cost : 0),
      s.creditLimit,
      this.bypassed,
      this._provider,
    )
    return this.headers
  }
}

/** The result of `authenticate()`. */
export type Decision = Admission | Denial
