/**
 * @module settle
 *
 * After the handler, exactly once per admitted request (a second call does nothing): turn the
 * credit reservation into the actual charge and refund the rest (all of it when the response
 * is not billable, by default any status from 400 up), release the concurrency lease, true-up the
 * tokens reserved against token-rate limits to the reported count, and queue one usage event
 * in the out-box (the key's `lastUsedAt` was queued at admission). Nothing here writes durable storage on the
 * request path. Counter operations the store did not take are retried from a bounded queue
 * (`retry-queue`), so a charge is not lost while its usage event is kept.
 *
 * A request carrying an `Idempotency-Key` is charged and recorded once per key and
 * `Idempotency-Key` within {@link IDEMPOTENCY_WINDOW_MS}: a retry of a billed request is
 * served (the handler decides what to answer) but its reservation is refunded and no second
 * event is written. Attempts that were not billed (a 500, say) are logged each on their own
 * and do not use the key up, so the retry that succeeds is the one charged. Every event keeps
 * its request's own id, so a key reused after the window is a new request, logged as such.
 *
 * Here too, written once: an admission's settle state ({@link Settlement}), the billable rule
 * ({@link billable}) and the credit arithmetic ({@link holdCredits}, {@link chargeOf},
 * {@link creditsAfter}) that both the usage headers and the usage event follow.
 */

import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes } from '@noble/hashes/utils.js'
import type { Context } from './context.js'
import type { Admission, Decision, Report } from './decision.js'
import { storableText } from './input.js'
import type { CheckTemplate } from './limits/admission.js'
import { roundAmount } from './limits/amount.js'
import { undrained } from './limits/revert.js'
import { argumentError } from './options.js'
import type { AbortWait } from './response-end.js'
import { notSent } from './retry-queue.js'
import { releaseRecord } from './storage/leased-counters.js'
import { syncCounters } from './storage/state-counters.js'
import type { Check, CheckResult, SettleOp, UsageEvent } from './storage/types.js'
import type { TallyPlace } from './storage/usage-tallies.js'

/** How long a settled `Idempotency-Key` is remembered: 24 hours. */
export const IDEMPOTENCY_WINDOW_MS = 86_400_000

/**
 * How a response ended: written in full (`completed`, whatever its status), left by its client
 * before that (`aborted`, status 499), or failed half-way on the server's side (`error`).
 */
export type ResponseOutcome = 'completed' | 'aborted' | 'error'

/** What a route's `chargeWhen` is told beside the status. */
export interface ChargeInfo {
  outcome: ResponseOutcome
  /** The handler reported a charge (`charge()` or `report({ cost })`). */
  reported: boolean
}

/**
 * A route's billing policy: true bills the request (what the handler reported, else the
 * route's cost), false refunds its hold. The default bills a completed response with a
 * status below 400, and an aborted one when its handler reported a charge.
 */
export type ChargeWhen = (status: number, info: ChargeInfo) => boolean

/** What happened to the request. */
export interface Outcome extends Report {
  /** The response status (use 499 for a client that went away, 500 for a thrown handler). */
  status: number
  /** How the response ended. Default: `aborted` for status 499, else `completed`. */
  outcome?: ResponseOutcome
  /** Ms from admission to the first response byte, when the adapter measured it. */
  ttfbMs?: number
  /**
   * False settles without a usage event (holds released, `lastUsedAt` as at admission, nothing
   * charged): for calls that are not product usage, such as the management API's own.
   * Default true.
   */
  record?: boolean
}

type Release = Extract<SettleOp, { type: 'release' }>

/**
 * What settle needs of an admitted request, and what its handler and adapter record on the
 * way: one record per admission, kept out of the {@link Admission}'s public face (adapters
 * and `response-end` reach it with {@link settlementOf}).
 */
export interface Settlement {
  /**
   * The releases of the holds taken at admission, made then: settle fills in each credit
   * hold's `charge` and hands the list to the store as it is (no list or op made at settle).
   */
  holds: Release[]
  /**
   * Each hold's template, in the order of `holds`: where an in-process store found its counter
   * at admission (`Place`), and its role (a credit or budget hold is charged).
   */
  places: CheckTemplate[]
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
  /** The route's billing policy; default: see {@link billable}. */
  chargeWhen: ChargeWhen | undefined
  startedAt: number
  /** Where the key's usage was tallied last (its cache entry; the memory store reads it). */
  tally: TallyPlace | undefined
  /** The request's own event id (its internal request id). */
  eventId: string
  /**
   * `<keyId>:<Idempotency-Key>` when the request carries one: a billed response is recorded
   * and charged once per value within a day (see `settle`).
   */
  idempotencyId: string | undefined
  ip: string | null
  method: string
  path: string
  /** Whether responses carry the usage headers (the route's `headers.usage`). */
  usageHeaders: boolean
  /** Where a `chargeWhen` that throws is reported. */
  onError: (err: unknown) => void
  /** Resolves a stored provider key (every route may use one). */
  resolveProvider: ((accountId: string, provider: string) => Promise<string | undefined>) | null
  /** The charge reported by the handler; undefined keeps the route's cost. */
  charged: number | undefined
  /** Tokens reported by the handler, and whether it reported any (else the estimate stands). */
  tokens: number
  tokensReported: boolean
  /** The provider the handler reported (lowercase). */
  provider: string | null
  /** Providers whose key came from the caller (header or store); null for none. */
  byok: Set<string> | null
  settled: boolean
  /**
   * Until then (this instance's clock) the store holds every hold of this request, unless it
   * released it: the shortest of their TTLs from the admission, pushed on by each renewal
   * made while they were held. Its settle's first attempt is `ifHeld` before then (less twice
   * the clocks' skew), as its retry is, so the two charge once in whatever order they land.
   */
  heldUntil: number
  /**
   * An adapter's own per-request state, so it adds no property to the framework's objects
   * (each new property on Node's ServerResponse costs microseconds per request).
   */
  adapter: unknown
  /**
   * The handler's work still running (the handler itself, a stream it produces): a request
   * whose client went away settles when it reaches 0 (see response-end.ts).
   */
  work: number
  /** Ms from admission to the response head, or -1 before it. */
  ttfb: number
  /**
   * Set when the client went away before the end, or a settle waits for `waits`: who settles,
   * with what, and the deadline.
   */
  gone: AbortWait | undefined
  /** Promises given to `waitUntil()` still pending: the settle waits for them. */
  waits: number
  /**
   * The longest a settle waits for them, and a departed client's request for its handler (ms):
   * the route's `abortSettleMs`, else the instance's `leaseTtlMs`.
   */
  waitMs: number
  /** Called once when a watched response settles (ends a Worker's `waitUntil`). */
  kept: (() => void) | undefined
  /**
   * Its place among the admissions in flight (`renewal`: their holds renewed): the one admitted
   * before it and after it, and whether it is listed (a list through the settlements
   * themselves: nothing allocated or hashed per request).
   */
  older: Settlement | null
  newer: Settlement | null
  listed: boolean
  /**
   * The admission it settles when an adapter serves it (`tb.decide`, which settles it at its
   * response's end): `tb.close()` waits for it, then settles it if still in flight. Null for
   * one of `tb.authenticate`, its caller's to settle. (One field for both: a second made every
   * settlement 56 bytes larger, `bench/request-bytes.ts`.)
   */
  admission: Admission | null
}

/** What a new settlement is made of; the rest starts empty. */
export interface SettlementInit {
  estimate: number
  routeCost: number
  tokenEstimate: number
  startedAt: number
  tally: TallyPlace | undefined
  eventId: string
  ip: string | null
  method: string
  path: string
  callerProviders: ReadonlySet<string>
  chargeWhen: ChargeWhen | undefined
  usageHeaders: boolean
  onError: (err: unknown) => void
  waitMs: number
}

/**
 * The lists of a settlement that holds nothing and counts no tokens, shared (no request writes
 * into them: `holdCredits` gives a settlement lists of its own when it has something to list).
 */
const NO_HOLDS: Settlement['holds'] = []
const NO_PLACES: Settlement['places'] = []
const NO_TOKEN_CHECKS: Settlement['tokenChecks'] = []

/** A settlement with nothing held or reported yet: metered or not, against no credits. */
export function openSettlement(init: SettlementInit): Settlement {
  return {
    holds: NO_HOLDS,
    places: NO_PLACES,
    tokenChecks: NO_TOKEN_CHECKS,
    estimate: init.estimate,
    routeCost: init.routeCost,
    creditUsed: 0,
    creditLimit: Infinity,
    creditOverage: false,
    metered: false,
    maxCharge: Infinity,
    tokenEstimate: init.tokenEstimate,
    chargeWhen: init.chargeWhen,
    startedAt: init.startedAt,
    tally: init.tally,
    eventId: init.eventId,
    idempotencyId: undefined,
    ip: init.ip,
    method: init.method,
    path: init.path,
    usageHeaders: init.usageHeaders,
    onError: init.onError,
    resolveProvider: null,
    charged: undefined,
    tokens: 0,
    tokensReported: false,
    provider: null,
    byok: init.callerProviders.size > 0 ? new Set(init.callerProviders) : null,
    settled: false,
    heldUntil: Number.NEGATIVE_INFINITY,
    adapter: undefined,
    work: 1,
    ttfb: -1,
    gone: undefined,
    waits: 0,
    waitMs: init.waitMs,
    kept: undefined,
    older: null,
    newer: null,
    listed: false,
    admission: null,
  }
}

/** What admission decided that settle charges against: the checks held and the account's credits. */
export interface Held {
  checks: ReadonlyArray<Check>
  templates: ReadonlyArray<CheckTemplate>
  /** The counters' answer, one result per check. */
  results: ReadonlyArray<CheckResult>
  /** The account's credit limit when the request is metered, else null. */
  creditLimit: number | null
  /** The plan lets requests run past the credits (metered requests only). */
  overage: boolean
  /** The route's `overrun` policy. */
  overrun: 'cap' | { maxOverdraft: number } | undefined
}

/**
 * Fills a metered settlement from its admission: the holds to release, the token limits to
 * true-up, the credit figures, and the most a report may charge. A report above the estimate
 * is cut to it (strict prepaid, the default), charged in full (a plan with overage and no key
 * budget), or charged up to an overdraft past what was left.
 */
export function holdCredits(s: Settlement, h: Held): void {
  s.metered = h.creditLimit !== null
  if (h.creditLimit !== null) {
    s.creditLimit = h.creditLimit
    s.creditOverage = h.overage
  }
  let capped = false
  let headroom = Infinity
  // Arrays of their length (one that grows by push makes room for 17 at its first push).
  let holds = 0
  for (let i = 0; i < h.checks.length; i++) if (h.checks[i]!.type === 'hold') holds++
  if (holds > 0) {
    s.holds = new Array(holds)
    s.places = new Array(holds)
  }
  holds = 0
  let credits = false
  for (let i = 0; i < h.checks.length; i++) {
    const c = h.checks[i]!
    const t = h.templates[i]!
    if (c.type === 'hold') {
      if (holds === 0 || s.startedAt + c.ttlMs < s.heldUntil) s.heldUntil = s.startedAt + c.ttlMs
      const credit = isCharged(t)
      const used = h.results[i]!.used
      // `ifHeld` set at settle (see `apply`), its field made here: the op keeps its shape.
      const op: Release = {
        type: 'release',
        key: c.key,
        holdId: c.holdId,
        charge: 0,
        ifHeld: false,
      }
      if (c.keepUntil !== undefined) op.keepUntil = c.keepUntil
      s.holds[holds] = op
      s.places[holds++] = t
      if (t.role === 'credits') s.creditUsed = used
      if (credit) {
        credits = true
        if (h.overrun === undefined && (t.role === 'budget' || !h.overage)) capped = true
        headroom = Math.min(headroom, roundAmount(c.limit - used))
      }
    } else if (t.tokens && c.type === 'gcra') {
      if (s.tokenChecks === NO_TOKEN_CHECKS) s.tokenChecks = []
      s.tokenChecks.push(c)
    }
  }
  if (h.overrun === 'cap' || capped) s.maxCharge = s.routeCost
  else if (h.overrun !== undefined && credits)
    s.maxCharge = roundAmount(s.routeCost + Math.max(0, headroom + h.overrun.maxOverdraft))
}

/** A hold charged at settle: credits or a key's budget (not a concurrency slot). */
const isCharged = (t: CheckTemplate) => t.role === 'credits' || t.role === 'budget'

/**
 * True when the request is served on the caller's own provider key (not charged): the
 * reported provider's key came from the caller, or, with no provider reported, the caller
 * sent one or the handler took a stored one.
 */
export function bypassed(s: Settlement): boolean {
  const b = s.byok
  if (b === null) return false
  const p = s.provider
  return p ? b.has(p) : b.size > 0
}

/**
 * The credits a billable response is charged: the report or the route's cost, bounded, on the
 * amount grid (`limits/amount`: the sum of several `charge()` calls is the decimal they add to).
 */
export function chargeOf(s: Settlement): number {
  return bypassed(s) ? 0 : roundAmount(Math.min(s.charged ?? s.routeCost, s.maxCharge))
}

/** The period's credits used once this request is charged `charge` (its hold replaced). */
export function creditsAfter(s: Settlement, charge: number): number {
  return roundAmount(s.creditUsed - s.estimate + charge)
}

/**
 * The billable rule: the route's `chargeWhen`, else a completed response with a status below 400,
 * and an aborted one when its handler reported a charge. A `chargeWhen` that throws is
 * reported and the default applies.
 */
export function billable(s: Settlement, status: number, ended: ResponseOutcome): boolean {
  const reported = s.charged !== undefined
  const byDefault = ended === 'aborted' ? reported : status < 400
  if (!s.chargeWhen) return byDefault
  try {
    return s.chargeWhen(status, { outcome: ended, reported }) === true
  } catch (err) {
    s.onError(err)
    return byDefault
  }
}

let read: (d: Decision) => Settlement | undefined = () => undefined

/** Called once by the {@link Admission} class: how to read an admission's settlement. */
export function bindSettlement(reader: (d: Decision) => Settlement | undefined): void {
  read = reader
}

/** The settlement of an admission; undefined for a denial or anything else. */
export function settlementOf(d: Decision): Settlement | undefined {
  return read(d)
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * The counter's name, `{<accountId>}:i:` and 128 bits of SHA-256 of `<keyId>:<Idempotency-Key>`
 * in base64url: one short size whatever the header's (up to 255 characters), made in one
 * piece (a string built by concatenation is a tree of parts in V8, which a memory store keeps
 * as its Map key: 134 bytes more per request). A hash the caller cannot steer into a
 * collision: two keys of one account that collided would make the second request a free
 * "retry".
 */
function idempotencyKeyName(accountId: string, id: string): string {
  const d = sha256(utf8ToBytes(id))
  const head = `{${accountId}}:i:`
  const codes: number[] = []
  for (let i = 0; i < head.length; i++) codes.push(head.charCodeAt(i))
  const b64 = (x: number) => codes.push(B64.charCodeAt(x))
  for (let i = 0; i < 15; i += 3) {
    const n = (d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!
    b64(n >> 18)
    b64((n >> 12) & 63)
    b64((n >> 6) & 63)
    b64(n & 63)
  }
  b64(d[15]! >> 2)
  b64((d[15]! & 3) << 4)
  return String.fromCharCode(...codes)
}

/** What a charge, a reported cost or tokens must be. */
export const AMOUNT = 'must be a finite number >= 0'

export const isAmount = (v: unknown): v is number =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0

/**
 * Checks a report (`apiKey.report(report)`, the figures of `tb.settle(decision, outcome)`).
 *
 * @param fn the call, and `name` its argument, as the error names them
 * @throws {ConfigError} naming the first bad field: `apiKey.report: report.cost must be a
 *   finite number >= 0, got -1`
 */
export function checkReport(report: Report, fn: string, name: string): void {
  if (typeof report !== 'object' || report === null)
    throw argumentError(fn, name, 'must be an object', report)
  const { cost, tokens, provider, category } = report
  if (cost !== undefined && !isAmount(cost)) throw argumentError(fn, `${name}.cost`, AMOUNT, cost)
  if (tokens !== undefined && !isAmount(tokens))
    throw argumentError(fn, `${name}.tokens`, AMOUNT, tokens)
  if (provider !== undefined && typeof provider !== 'string')
    throw argumentError(fn, `${name}.provider`, 'must be a string', provider)
  if (category !== undefined && typeof category !== 'string')
    throw argumentError(fn, `${name}.category`, 'must be a string', category)
}

/**
 * Never rejects for a bad outcome: an invalid report (a negative cost, say) is passed to
 * `onError` and the request is settled with what was charged before it.
 *
 * @returns the usage event queued, or null when nothing was settled (a denial, a second
 *   call, or a retry of an `Idempotency-Key` already settled)
 */
export function settle(
  ctx: Context,
  decision: Decision,
  outcome: Outcome,
): UsageEvent | null | Promise<UsageEvent | null> {
  const s = settlementOf(decision)
  if (s === undefined || s.settled) return null
  const a = decision as Admission
  s.settled = true
  ctx.renewals.delete(s)
  if (
    outcome.cost !== undefined ||
    outcome.tokens !== undefined ||
    outcome.provider !== undefined ||
    outcome.category !== undefined
  ) {
    try {
      checkReport(outcome, 'tb.settle', 'outcome')
      a.report(outcome)
    } catch (err) {
      ctx.report(err)
    }
  }
  const now = ctx.clock.now()
  // An aborted request is billed what its handler reported (the upstream work was done and
  // paid for), and its hold refunded when it reported nothing.
  const ended = outcome.outcome ?? (outcome.status === 499 ? 'aborted' : 'completed')
  const done: Settling = { a, s, outcome, now, billable: billable(s, outcome.status, ended) }
  const idem = done.billable ? s.idempotencyId : undefined
  if (idem === undefined) return apply(ctx, done, false)
  // True unless this request's `Idempotency-Key` was already settled for its key: one atomic
  // claim for 24 hours. A storage failure counts as a first settle (the event itself stays
  // idempotent by id).
  const counters = ctx.storage.counters
  const key = idempotencyKeyName(a.accountId, idem)
  const sync = syncCounters(counters)
  if (sync) {
    let first = true
    try {
      first = sync.claim(key, IDEMPOTENCY_WINDOW_MS, now)
    } catch (err) {
      ctx.report(err)
    }
    return apply(ctx, done, !first)
  }
  return ctx.guard(counters.claim(key, IDEMPOTENCY_WINDOW_MS, now)).then(
    (first) => apply(ctx, done, !first),
    (err: unknown) => {
      ctx.report(err)
      return apply(ctx, done, false)
    },
  )
}

/** One settle under way. */
interface Settling {
  a: Admission
  s: Settlement
  outcome: Outcome
  now: number
  billable: boolean
}

/** Releases the holds, counts tokens, and queues the event (unless `repeat`). */
function apply(
  ctx: Context,
  done: Settling,
  repeat: boolean,
): UsageEvent | null | Promise<UsageEvent | null> {
  const { s, outcome, now } = done
  const charge = done.billable && !repeat && outcome.record !== false ? chargeOf(s) : 0
  // The releases made at admission (settle runs once), each credit hold charged; a token
  // limit's true-up, rare, goes on a copy. While the store surely holds them, `ifHeld` from
  // the first attempt, as the retry is: a first attempt that failed for this instance may
  // still land after its retry (on another connection), and a plain release charged again
  // then (10 credits for a request of 5, test/fault/settle-reorder). Past that (the store out
  // for the renewals), a charged release goes once per a record of its own (`SettleOp` release
  // `record`): the hold may have lapsed, and is charged all the same, once however many of its
  // attempts land. Before, a plain release, whose retry (`ifHeld`) found the lapsed hold gone
  // and charged nothing when the first attempt had not landed (a store killed, or a frozen
  // PostgreSQL that cancelled it: 0 credits for a stream that reported 7, test/fault/settle-lapsed).
  let ops: SettleOp[] = s.holds
  const held = now < s.heldUntil - 2 * clockSkewOf(ctx)
  let recorded = false
  for (let i = 0; i < s.holds.length; i++) {
    const op = s.holds[i]!
    op.charge = isCharged(s.places[i]!) ? charge : 0
    op.ifHeld = held
    if (!held && op.charge !== 0) {
      const key = releaseRecord(op.key, op.holdId)
      if (key !== undefined) {
        op.record = { key, ttlMs: ctx.admissionTtlMs }
        recorded = true
      }
    }
  }
  // Token limits: the estimate counted at admission trued-up to the report (the estimate
  // stands when nothing was reported); what is given back is what has not drained since.
  const excess = (s.tokensReported ? s.tokens : s.tokenEstimate) - s.tokenEstimate
  if (excess !== 0) {
    ops = ops.slice()
    for (const c of s.tokenChecks) {
      const cost = excess > 0 ? excess : -undrained(-excess, s.startedAt, now, c.limit, c.windowMs)
      if (cost === 0) continue
      const check = {
        type: 'gcra',
        key: c.key,
        name: c.name,
        limit: c.limit,
        windowMs: c.windowMs,
        cost,
        // A token limit is never leased: the lease decorator keeps nothing for its key.
        exact: true,
      } as const
      ops.push({ type: 'add', check })
    }
  }
  if (ops.length === 0) return record(ctx, done, repeat ? -1 : charge)
  const counters = ctx.storage.counters
  const sync = syncCounters(counters)
  if (sync) {
    // Where admission found each held counter: the store reaches it again without a lookup.
    try {
      // (A record's key comes after its counter's: the places would no longer line up.)
      sync.settle(ops, now, recorded ? undefined : s.places)
    } catch (err) {
      // An in-process store can fail too (SQLite: a lock held past its busy timeout): retried
      // as a remote store's settle is, so the charge is not lost.
      ctx.report(err)
      // Its transaction rolled back: nothing of it applied.
      ctx.retries.add(retryOps(ops, true, ctx.admissionTtlMs), Promise.reject(err), false)
    }
    return record(ctx, done, repeat ? -1 : charge)
  }
  // What leases hold is settled here and now: no store call, so no timeout to arm and no
  // promise to wait for (a hot key's every settle).
  const leases = ctx.leases
  let rest: ReadonlyArray<SettleOp> = ops
  let raw: Promise<void> | null = null
  try {
    if (!leases) raw = counters.settle(ops, now)
    else {
      rest = leases.settleLocal(ops, now)
      if (rest.length > 0) raw = leases.settleCentral(rest, now)
    }
  } catch (err) {
    raw = Promise.reject(err)
  }
  if (raw === null) return record(ctx, done, repeat ? -1 : charge)
  return ctx.guard(raw).then(
    () => record(ctx, done, repeat ? -1 : charge),
    (err: unknown) => {
      // Retried until the store takes it, so the charge is not lost while the event is kept.
      ctx.report(err)
      ctx.retries.add(retryOps(rest, notSent(err), ctx.admissionTtlMs), raw, false)
      return record(ctx, done, repeat ? -1 : charge)
    },
  )
}

/** The most two instances' clocks differ by, halved (`leases.clockSkewMs`, 2 s unless set). */
function clockSkewOf(ctx: Context): number {
  const l = ctx.options.leases
  return l === false ? 2000 : l.clockSkewMs
}

/**
 * A settle's operations as retried: applied twice, they must count once. A release charges
 * only while its hold is still there, or once per its record (`SettleOp` release `record`); a
 * token refund is dropped (given twice it would loosen the limit), an excess kept (counted
 * twice at worst, which only refuses earlier).
 *
 * @param unsent the first attempt surely applied nothing (never sent, or rolled back): a
 *   charged release then goes once per a record of its own, as past its hold's TTL (see
 *   `apply`), so the retries charge it once whatever became of the hold meanwhile. Before, a
 *   retry `ifHeld` after the store came back past the hold's TTL found it gone and charged
 *   nothing (0 credits for 7 reported, test/fault/settle-lapsed).
 */
function retryOps(ops: ReadonlyArray<SettleOp>, unsent: boolean, ttlMs: number): SettleOp[] {
  const out: SettleOp[] = []
  for (const op of ops) {
    if (op.type === 'release') {
      const key =
        unsent && op.record === undefined && op.charge !== 0
          ? releaseRecord(op.key, op.holdId)
          : undefined
      out.push(
        key === undefined
          ? { ...op, ifHeld: true }
          : { ...op, ifHeld: true, record: { key, ttlMs } },
      )
    } else if (op.type !== 'add' || op.check.cost > 0) out.push(op)
  }
  return out
}

/**
 * Queues the usage event (`charge` -1: a repeat, none). The key's `lastUsedAt` was queued at
 * admission.
 */
function record(ctx: Context, done: Settling, charge: number): UsageEvent | null {
  const { a, s, outcome } = done
  const key = a.key
  if (charge < 0 || outcome.record === false) return null
  const overage =
    s.metered && s.creditOverage && Number.isFinite(s.creditLimit)
      ? Math.max(0, Math.min(charge, roundAmount(creditsAfter(s, charge) - s.creditLimit)))
      : 0
  const event: UsageEvent = {
    id: s.eventId,
    requestId: a.requestId,
    keyId: key.id,
    accountId: key.accountId,
    time: s.startedAt,
    units: charge,
    overage,
    tokens: s.tokens,
    category: a.category === null ? null : storableText(a.category),
    keyCategory: key.category,
    status: outcome.status,
    durationMs: Math.max(0, done.now - s.startedAt),
    ttfbMs: outcome.ttfbMs ?? null,
    code: null,
    ip: s.ip,
    method: storableText(s.method),
    path: storableText(s.path),
    bypassed: bypassed(s),
    provider: s.provider,
  }
  ctx.outbox.push(event, s.tally)
  return event
}
