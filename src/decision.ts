/**
 * @module decision
 *
 * What `authenticate()` returns: an {@link Admission} (the request may go on) or a
 * {@link Denial} (answer it from the prepared record). Denials are values, not exceptions:
 * status, code, message, headers and the JSON body are ready to write, each from the table of
 * denials (src/denials.ts). What settle needs of an admission (its {@link Settlement}) is held
 * in a private field, out of its public face.
 */

import type { ErrorCode } from './errors.js'
import { setBypassHeaders, setUsageHeaders } from './headers.js'
import { ownValue } from './input.js'
import { argumentError } from './options.js'
import { waitFor } from './response-end.js'
import {
  AMOUNT,
  billable,
  bindSettlement,
  bypassed,
  chargeOf,
  checkReport,
  creditsAfter,
  isAmount,
  type Settlement,
} from './settle.js'
import { sharedIfEmpty } from './shared-values.js'
import type { KeyKind, KeyRecord } from './storage/types.js'

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

/**
 * The key as a decision shows it. Held by the key cache for as long as the key is cached, so
 * an empty list of scopes or empty metadata is the shared frozen one (`shared-values`): 88
 * bytes a cached key.
 */
export function publicKey(r: KeyRecord): ApiKeyInfo {
  return {
    id: r.id,
    name: r.name,
    accountId: r.accountId,
    kind: r.kind,
    category: r.category,
    scopes: sharedIfEmpty(r.scopes),
    metadata: sharedIfEmpty(r.metadata),
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
  /** Private fields: never enumerated, serialized or printed by `util.inspect`. */
  readonly #providerKeys: Readonly<Record<string, string>>
  readonly #s: Settlement

  static {
    bindSettlement((d) => (#s in d ? d.#s : undefined))
  }

  constructor(
    init: {
      requestId: string
      key: ApiKeyInfo
      providerKeys: Record<string, string>
      headers: Record<string, string>
      settlement: Settlement
      category: string | null
    },
    served = false,
  ) {
    this.requestId = init.requestId
    this.key = init.key
    this.accountId = init.key.accountId
    this.headers = init.headers
    this.category = init.category
    this.#providerKeys = init.providerKeys
    this.#s = init.settlement
    // Decided for an adapter, which settles it at its response's end: `tb.close()` waits for
    // it (see `Settlement.admission`).
    if (served) init.settlement.admission = this
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
    return this.#s.settled
  }

  /**
   * True when the admission holds a concurrency lease or credits that settle releases: an
   * adapter settles such a request as soon as its client goes away, not when the handler ends.
   */
  get holds(): boolean {
    return this.#s.holds.length > 0
  }

  /**
   * True when `responseHeaders()` returns `headers` as they are, whatever the handler does (no
   * usage figures on this route): an adapter may then write them before the handler runs.
   */
  get headersFinal(): boolean {
    return !this.#s.usageHeaders || !this.#s.metered
  }

  /**
   * Adds `units` credits to this request's charge (the sum of all calls replaces the estimate).
   *
   * @throws {ConfigError} when `units` is not a finite number >= 0:
   *   `apiKey.charge: units must be a finite number >= 0, got NaN`
   */
  charge(units: number): void {
    if (!isAmount(units)) throw argumentError('apiKey.charge', 'units', AMOUNT, units)
    this.#s.charged = (this.#s.charged ?? 0) + units
  }

  /**
   * Reports what the request used: tokens, the provider that served it, its category.
   *
   * @throws {ConfigError} naming the first bad field, and changes nothing:
   *   `apiKey.report: report.cost must be a finite number >= 0, got -1`
   */
  report(report: Report): void {
    // Check everything first: a bad report throws and changes nothing.
    checkReport(report, 'apiKey.report', 'report')
    const { cost, tokens, provider, category } = report
    const s = this.#s
    if (cost !== undefined) s.charged = cost
    if (tokens !== undefined) {
      s.tokens += tokens
      s.tokensReported = true
    }
    if (provider !== undefined) s.provider = provider.toLowerCase()
    if (category !== undefined) this.category = category
  }

  /**
   * Settles this request only once `promise` has ended, as a Worker's `ctx.waitUntil()` keeps
   * it running: what the handler reports when it resolves (a WebSocket's `close` handler
   * awaiting its upstream's final figure, a stream's cleanup) is charged, and the concurrency
   * slot and credit hold stay taken until then. However the response ends, the settle waits
   * for every promise given, at most the route's `abortSettleMs` (default: `leaseTtlMs`) from
   * when it would have settled; past that it settles with what was reported. A rejection is
   * passed to the instance's `onError` and ends the wait. Call it before the request settles
   * (in a `close` handler, before its first `await`); once settled, it does nothing.
   *
   * @throws {ConfigError} when `promise` is not a promise or a thenable:
   *   `apiKey.waitUntil: promise must be a promise or thenable, got 42`
   * @example
   * ```ts
   * ws.on('close', () => apiKey.waitUntil(upstream.finalSeconds().then((cost) => apiKey.report({ cost }))))
   * ```
   */
  waitUntil(promise: PromiseLike<unknown>): void {
    if (typeof (promise as { then?: unknown } | null)?.then !== 'function')
      throw argumentError('apiKey.waitUntil', 'promise', 'must be a promise or thenable', promise)
    waitFor(this, promise)
  }

  /**
   * The key of `provider` to call upstream with: the caller's `X-Provider-Key-*` header first
   * (on routes with the `byok` option), else the account's stored key (on every route). A key
   * returned from either makes the request BYOK, not charged, unless the handler reports
   * another provider as the one that served it.
   */
  async providerKey(provider: string): Promise<string | undefined> {
    if (typeof provider !== 'string')
      throw argumentError('apiKey.providerKey', 'provider', 'must be a string', provider)
    const p = provider.toLowerCase()
    const fromHeader = ownValue(this.#providerKeys, p)
    if (fromHeader) return fromHeader
    const s = this.#s
    const stored = s.resolveProvider ? await s.resolveProvider(this.accountId, p) : undefined
    if (stored) {
      if (s.byok === null) s.byok = new Set()
      s.byok.add(p)
    }
    return stored
  }

  /**
   * True when the request is served on the caller's own provider key (not charged): the
   * reported provider's key came from the caller, or, with no provider reported, the caller
   * sent one or the handler took a stored one.
   */
  get bypassed(): boolean {
    return bypassed(this.#s)
  }

  /**
   * The credits this request will be charged if its response is billable: the route's cost
   * or the handler's report, bounded by the route's `overrun` policy.
   */
  get cost(): number {
    return chargeOf(this.#s)
  }

  /**
   * Every header to send with the response, with the usage figures after this request's
   * charge. Adapters call it once, right before the response head is written; it updates and
   * returns `headers` (no copy: headers are the hot path's largest cost).
   *
   * @param status the response status, when known: a response the route does not bill
   *   (by default a status from 400 up) then shows no charge
   */
  responseHeaders(status?: number): Record<string, string> {
    if (this.headersFinal) return this.headers
    const s = this.#s
    const charge = status === undefined || billable(s, status, 'completed') ? chargeOf(s) : 0
    setUsageHeaders(this.headers, creditsAfter(s, charge), s.creditLimit)
    setBypassHeaders(this.headers, bypassed(s), s.provider)
    return this.headers
  }
}

/** The result of `authenticate()`. */
export type Decision = Admission | Denial
