/**
 * @module settle
 *
 * After the handler, exactly once per admitted request (a second call does nothing): turn the
 * credit reservation into the actual charge and refund the rest (all of it when the response
 * is not billable, by default any status >= 400), release the concurrency lease, true-up the
 * tokens reserved against token-rate limits to the reported count, and queue one usage event
 * and the key's `lastUsedAt` in the out-box. Nothing here writes durable storage on the
 * request path. Counter operations the store did not take are retried from a bounded queue
 * (`settle-queue`), so a charge is not lost while its usage event is kept.
 *
 * A request carrying an `Idempotency-Key` is charged and recorded once per key and
 * `Idempotency-Key` within {@link IDEMPOTENCY_WINDOW_MS}: a retry of a billed request is
 * served (the handler decides what to answer) but its reservation is refunded and no second
 * event is written. Attempts that were not billed (a 500, say) are logged each on their own
 * and do not use the key up, so the retry that succeeds is the one charged. Every event keeps
 * its request's own id, so a key reused after the window is a new request, logged as such.
 */

import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes } from '@noble/hashes/utils.js'
import type { Context } from './context.js'
import { Admission, type Decision, type Report } from './decision.js'
import { storableText } from './input.js'
import { undrained } from './limits/revert.js'
import { syncCounters } from './storage/state-counters.js'
import type { SettleOp, UsageEvent } from './storage/types.js'

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
 * status < 400, and an aborted one when its handler reported a charge.
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
   * False settles without a usage event (holds released, `lastUsedAt` touched, nothing
   * charged): for calls that are not product usage, such as the management API's own.
   * Default true.
   */
  record?: boolean
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
  if (!(decision instanceof Admission) || decision._settled) return null
  decision._settled = true
  if (
    outcome.cost !== undefined ||
    outcome.tokens !== undefined ||
    outcome.provider !== undefined ||
    outcome.category !== undefined
  ) {
    try {
      decision.report(outcome)
    } catch (err) {
      ctx.report(err)
    }
  }
  const now = ctx.clock.now()
  const s = decision._s
  // An aborted request is billed what its handler reported (the upstream work was done and
  // paid for), and its hold refunded when it reported nothing.
  const ended = outcome.outcome ?? (outcome.status === 499 ? 'aborted' : 'completed')
  const reported = decision._charged !== undefined
  let billable = ended === 'aborted' ? reported : outcome.status < 400
  if (s.chargeWhen) {
    try {
      billable = s.chargeWhen(outcome.status, { outcome: ended, reported }) === true
    } catch (err) {
      ctx.report(err)
    }
  }
  const idem = billable ? s.idempotencyId : undefined
  if (idem === undefined) return apply(ctx, decision, outcome, now, billable, false)
  // True unless this request's `Idempotency-Key` was already settled for its key: one atomic
  // claim for 24 hours. A storage failure counts as a first settle (the event itself stays
  // idempotent by id).
  const counters = ctx.storage.counters
  const key = idempotencyKeyName(decision.accountId, idem)
  const sync = syncCounters(counters)
  if (sync) {
    let first = true
    try {
      first = sync.claim(key, IDEMPOTENCY_WINDOW_MS, now)
    } catch (err) {
      ctx.report(err)
    }
    return apply(ctx, decision, outcome, now, billable, !first)
  }
  return ctx.guard(counters.claim(key, IDEMPOTENCY_WINDOW_MS, now)).then(
    (first) => apply(ctx, decision, outcome, now, billable, !first),
    (err: unknown) => {
      ctx.report(err)
      return apply(ctx, decision, outcome, now, billable, false)
    },
  )
}

/** Releases the holds, counts tokens, and queues the event (unless `repeat`). */
function apply(
  ctx: Context,
  decision: Admission,
  outcome: Outcome,
  now: number,
  billable: boolean,
  repeat: boolean,
): UsageEvent | null | Promise<UsageEvent | null> {
  const s = decision._s
  const charge = billable && !repeat && outcome.record !== false ? decision.cost : 0
  const ops: SettleOp[] = []
  for (const [key, holdId, credit, keepUntil] of s.holds) {
    const op: SettleOp = { type: 'release', key, holdId, charge: credit ? charge : 0 }
    if (keepUntil !== undefined) op.keepUntil = keepUntil
    ops.push(op)
  }
  // Token limits: the estimate counted at admission trued-up to the report (the estimate
  // stands when nothing was reported); what is given back is what has not drained since.
  const excess = (decision._tokensReported ? decision._tokens : s.tokenEstimate) - s.tokenEstimate
  if (excess !== 0) {
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
      } as const
      ops.push({ type: 'add', check })
    }
  }
  if (ops.length === 0) return record(ctx, decision, outcome, now, charge, repeat)
  const counters = ctx.storage.counters
  const sync = syncCounters(counters)
  if (sync) {
    try {
      sync.settle(ops, now)
    } catch (err) {
      // An in-process store can fail too (SQLite: a lock held past its busy timeout): retried
      // as a remote store's settle is, so the charge is not lost.
      ctx.report(err)
      ctx.retries.add(retryOps(ops), Promise.reject(err), false)
    }
    return record(ctx, decision, outcome, now, charge, repeat)
  }
  let raw: Promise<void>
  try {
    raw = counters.settle(ops, now)
  } catch (err) {
    raw = Promise.reject(err)
  }
  return ctx.guard(raw).then(
    () => record(ctx, decision, outcome, now, charge, repeat),
    (err: unknown) => {
      // Retried until the store takes it, so the charge is not lost while the event is kept.
      ctx.report(err)
      ctx.retries.add(retryOps(ops), raw, false)
      return record(ctx, decision, outcome, now, charge, repeat)
    },
  )
}

/**
 * A settle's operations as retried: applied twice, they must count once. A release charges
 * only while its hold is still there; a token refund is dropped (given twice it would loosen
 * the limit), an excess kept (counted twice at worst, which only refuses earlier).
 */
function retryOps(ops: ReadonlyArray<SettleOp>): SettleOp[] {
  const out: SettleOp[] = []
  for (const op of ops) {
    if (op.type === 'release') out.push({ ...op, ifHeld: true })
    else if (op.type !== 'add' || op.check.cost > 0) out.push(op)
  }
  return out
}

function record(
  ctx: Context,
  decision: Admission,
  outcome: Outcome,
  now: number,
  charge: number,
  repeat: boolean,
): UsageEvent | null {
  const s = decision._s
  const after = s.creditUsed - s.estimate + charge
  const overage =
    s.metered && s.creditOverage && Number.isFinite(s.creditLimit)
      ? Math.max(0, Math.min(charge, after - s.creditLimit))
      : 0
  const key = decision.key
  ctx.outbox.touch(key.id, s.startedAt)
  if (repeat || outcome.record === false) return null
  const event: UsageEvent = {
    id: s.eventId,
    requestId: decision.requestId,
    keyId: key.id,
    accountId: key.accountId,
    time: s.startedAt,
    units: charge,
    overage,
    tokens: decision._tokens,
    category: decision.category === null ? null : storableText(decision.category),
    status: outcome.status,
    durationMs: Math.max(0, now - s.startedAt),
    ttfbMs: outcome.ttfbMs ?? null,
    code: null,
    ip: s.ip,
    method: storableText(s.method),
    path: storableText(s.path),
    bypassed: decision.bypassed,
    provider: decision._provider,
  }
  ctx.outbox.push(event)
  return event
}
