/**
 * @module settle
 *
 * After the handler, exactly once per admitted request (a second call does nothing): turn the
 * credit reservation into the actual charge and refund the rest (all of it when the response
 * is not billable, by default any status >= 400), release the concurrency lease, count
 * reported tokens against token-rate limits, and queue one usage event and the key's
 * `lastUsedAt` in the out-box. Nothing here writes durable storage on the request path.
 */

import type { Context } from './context.js'
import { Admission, type Decision, type Report } from './decision.js'
import type { SettleOp, UsageEvent } from './storage/types.js'

/** What happened to the request. */
export interface Outcome extends Report {
  /** The response status (use 499 for a client that went away, 500 for a thrown handler). */
  status: number
}

/** @returns the usage event queued, or null when nothing was settled (a denial, or a repeat). */
export async function settle(
  ctx: Context,
  decision: Decision,
  outcome: Outcome,
): Promise<UsageEvent | null> {
  if (!(decision instanceof Admission) || decision._settled) return null
  decision._settled = true
  const { status, ...report } = outcome
  if (Object.keys(report).length > 0) decision.report(report)
  const now = ctx.clock.now()
  const s = decision._s
  const billable = s.chargeWhen ? s.chargeWhen(status) : status < 400
  const charge = billable ? decision.cost : 0
  const ops: SettleOp[] = []
  for (const [key, holdId, credit] of s.holds)
    ops.push({ type: 'release', key, holdId, charge: credit ? charge : 0 })
  const tokens = decision._report.tokens ?? 0
  if (tokens > 0)
    for (const check of s.tokenChecks) ops.push({ type: 'add', check: { ...check, cost: tokens } })
  if (ops.length > 0) {
    try {
      await ctx.guard(ctx.storage.counters.settle(ops, now))
    } catch (err) {
      // The holds expire by their TTL; the event below is still recorded.
      ctx.report(err)
    }
  }
  const after = s.creditUsed - s.estimate + charge
  const overage =
    s.metered && s.creditOverage && Number.isFinite(s.creditLimit)
      ? Math.max(0, Math.min(charge, after - s.creditLimit))
      : 0
  const key = decision.key
  const event: UsageEvent = {
    id: s.eventId,
    requestId: decision.requestId,
    keyId: key.id,
    accountId: key.accountId,
    time: s.startedAt,
    units: charge,
    overage,
    tokens,
    category: decision.category,
    status,
    durationMs: Math.max(0, now - s.startedAt),
    ip: s.ip,
    method: s.method,
    path: s.path,
    bypassed: decision.bypassed,
    provider: decision._report.provider ?? null,
  }
  ctx.outbox.push(event)
  ctx.outbox.touch(key.id, s.startedAt)
  return event
}
