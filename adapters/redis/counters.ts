/**
 * @module tollbooth/redis/counters
 *
 * The counter store on Redis. Every call is one EVALSHA of the `CONSUME` script, which runs
 * every check of an admission and writes all of them or none (a Lua script runs alone on the
 * server, so concurrent admissions see a serial order). `held` is one GET, summed here in the
 * same order as `limits/hold`.
 *
 * Settles are batched: `settle()` queues its ops under the counter's hash tag (the account),
 * and they are sent with that account's next admission, in the same script and before it, or
 * on their own after at most `settleBatchMs` (one call per hash tag for everything queued).
 * Under load that makes one round trip per request instead of two, and the script reads and
 * writes a counter both touch (the credit reservation) once. `settle()` resolves when its ops
 * are applied, so `tb.flush()` and `tb.close()` still wait for them. The cost of waiting:
 * a reservation is released up to `settleBatchMs` later, which only matters to a balance
 * read in between (it still shows the request in flight); a process that dies loses the
 * queued settles, and their reservations expire by their TTL, as if it died before settling.
 *
 * An admission with an identity writes its record (`'c'`, a plain string key with a TTL) in
 * the same script; a `cancel` is one `x` op followed by one revert op per check of the
 * admission, all undone in the script only when the record is there, which then becomes the
 * tombstone `'x'`. Commands on one connection run in order, but the tombstone also covers a
 * cancel that reaches Redis before the admission it undoes.
 */

import type {
  AdmissionId,
  Check,
  CheckResult,
  ConsumeResult,
  CounterStore,
  Rebuild,
  SettleOp,
} from '../../src/index.js'
import { type Ctx, dec, enc } from './store.js'

/** Hold ids go into a newline-separated state: escape `%` and newlines, injectively. */
export function escapeHoldId(id: string): string {
  return id.replace(/[%\n\r]/g, (c) => (c === '%' ? '%25' : c === '\n' ? '%0A' : '%0D'))
}

/**
 * The Redis Cluster hash tag of a counter key (`{accountId}` for the core's counters): keys
 * of one tag live in one slot, so one script may touch them all. An untagged key is its own.
 */
export function hashTag(key: string): string {
  if (key.charCodeAt(0) !== 123) return key
  const end = key.indexOf('}')
  return end > 1 ? key.slice(0, end + 1) : key
}

/** A check's `rebuild` as the script reads it: '' none, '?' ask, '=<base>' rebuild. */
const rebuildArg = (r: Rebuild | undefined) =>
  r === undefined ? '' : r.base === undefined ? '?' : `=${enc(r.base)}`

const keepArg = (keepUntil: number | undefined) => (keepUntil === undefined ? '' : enc(keepUntil))

function pushCheck(args: string[], c: Check): void {
  switch (c.type) {
    case 'window':
      args.push('w', enc(c.limit), enc(c.windowMs), enc(c.bucketMs), enc(c.cost), '')
      args.push(rebuildArg(c.rebuild))
      return
    case 'gcra':
      args.push('g', enc(c.limit), enc(c.windowMs), enc(c.cost), '', '', '')
      return
    case 'hold':
      args.push('h', enc(c.limit), enc(c.amount), enc(c.ttlMs), escapeHoldId(c.holdId))
      args.push(keepArg(c.keepUntil), rebuildArg(c.rebuild))
  }
}

/** The counter keys and arguments of one settle op (a cancel takes one slot per check more). */
function pushOp(keys: string[], args: string[], prefix: string, op: SettleOp, now: string): void {
  if (op.type === 'release') {
    keys.push(prefix + op.key)
    args.push('r', now, escapeHoldId(op.holdId), enc(op.charge), op.ifHeld ? '1' : '')
    args.push(keepArg(op.keepUntil))
    return
  }
  if (op.type === 'cancel') {
    keys.push(prefix + op.key)
    args.push('x', now, enc(op.ttlMs), String(op.checks.length), '', '')
    const at = enc(op.at)
    for (const c of op.checks) {
      keys.push(prefix + c.key)
      if (c.type === 'hold')
        args.push('H', at, escapeHoldId(c.holdId), '', '', keepArg(c.keepUntil))
      else if (c.type === 'window')
        args.push('W', at, enc(c.windowMs), enc(c.bucketMs), enc(c.cost), '')
      else args.push('G', at, enc(c.limit), enc(c.windowMs), enc(c.cost), '')
    }
    return
  }
  const c = op.check
  keys.push(prefix + c.key)
  if (c.type === 'window') args.push('w', now, enc(c.windowMs), enc(c.bucketMs), enc(c.cost), '')
  else args.push('g', now, enc(c.limit), enc(c.windowMs), enc(c.cost), '')
}

/** The counter key whose hash tag an op is sent under. */
const opKey = (op: SettleOp): string => (op.type === 'add' ? op.check.key : op.key)

/** The most settle ops one call carries. */
const MAX_BATCH = 256

/** A figure of the script's reply: an integer reply, or a number's text. */
const figure = (x: number | string): number => (typeof x === 'number' ? x : dec(x))

/** Settle ops queued for one hash tag (each applied at its own settle's clock reading), and
 * the callers waiting for them. */
interface Batch {
  keys: string[]
  args: string[]
  done: Array<(err?: unknown) => void>
}

/**
 * @param ctx the client and key prefix
 * @param slackMs how long an idle counter is kept past the moment it turns idle
 * @param settleBatchMs the longest a settle waits for its account's next admission (0: sent
 *   at once)
 */
export function redisCounters(ctx: Ctx, slackMs: number, settleBatchMs = 0): CounterStore {
  const { client, prefix } = ctx
  const slack = String(slackMs)
  const pending = new Map<string, Batch>()
  /** Whether a timer will send what is queued. */
  let armed = false

  /** One call: the batch's ops (if any), then the checks (if any) and the admission's record. */
  async function run(
    batch: Batch | undefined,
    checks: readonly Check[],
    now: number,
    admission?: AdmissionId,
  ) {
    const nOps = batch ? batch.keys.length : 0
    const args: string[] = batch ? batch.keys : []
    for (const c of checks) args.push(prefix + c.key)
    if (admission) args.push(prefix + admission.key)
    args.push(enc(now), slack, admission ? `${nOps}:${Math.ceil(admission.ttlMs)}` : String(nOps))
    if (batch) for (const a of batch.args) args.push(a)
    for (const c of checks) pushCheck(args, c)
    try {
      const reply = await client.tollboothConsume(
        nOps + checks.length + (admission ? 1 : 0),
        ...args,
      )
      if (batch) for (const d of batch.done) d()
      return reply
    } catch (err) {
      if (batch) for (const d of batch.done) d(err)
      throw err
    }
  }

  /** Sends a batch with no admission; each caller hears of a failure through its settle(). */
  const sendAlone = (b: Batch) => {
    run(b, [], 0).catch(() => {})
  }

  function flushAll(): void {
    armed = false
    const batches = [...pending.values()]
    pending.clear()
    for (const b of batches) sendAlone(b)
  }

  /** Queues `op`; true when `done` was added to the batch (once per batch and caller). */
  function enqueue(tag: string, op: SettleOp, now: string, done: (err?: unknown) => void) {
    let b = pending.get(tag)
    if (!b) {
      b = { keys: [], args: [], done: [] }
      pending.set(tag, b)
    }
    pushOp(b.keys, b.args, prefix, op, now)
    let added = false
    if (b.done[b.done.length - 1] !== done) {
      b.done.push(done)
      added = true
    }
    // A batch no admission picks up is sent once it is this long (a script's arguments are
    // held in memory at once).
    if (b.keys.length >= MAX_BATCH) {
      pending.delete(tag)
      sendAlone(b)
    }
    return added
  }

  return {
    async consume(checks, now, admission): Promise<ConsumeResult> {
      if (checks.length === 0) return { allowed: true, results: [] }
      let batch: Batch | undefined
      if (pending.size > 0) {
        const tag = hashTag(checks[0]!.key)
        batch = pending.get(tag)
        if (batch) pending.delete(tag)
      }
      const reply = await run(batch, checks, now, admission)
      const results: CheckResult[] = checks.map((c, i) => {
        const b = 1 + i * 5
        const r: CheckResult = {
          allowed: reply[b] === 1,
          limit: c.limit,
          used: figure(reply[b + 1]!),
          remaining: figure(reply[b + 2]!),
          resetMs: figure(reply[b + 3]!),
          retryAfterMs: figure(reply[b + 4]!),
        }
        if (reply[b] === -1) r.missing = true
        return r
      })
      return { allowed: reply[0] === 1, results }
    },
    settle(ops, now) {
      if (ops.length === 0) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        // One callback for all of this call's ops, whichever batches they land in.
        let left = 0
        let failed: unknown
        const done = (err?: unknown) => {
          if (err !== undefined && failed === undefined) failed = err
          if (--left === 0) {
            if (failed === undefined) resolve()
            else reject(failed)
          }
        }
        // Each batch this call lands in gets `done` once: `left` counts those batches.
        const at = enc(now)
        for (const op of ops) {
          if (enqueue(hashTag(opKey(op)), op, at, done)) left++
        }
        if (settleBatchMs === 0) flushAll()
        else if (!armed) {
          armed = true
          setTimeout(flushAll, settleBatchMs)
        }
      })
    },
    async claim(key, ttlMs, now) {
      const ms = Math.max(1, Math.ceil(ttlMs))
      return (
        (await client.tollboothClaim(
          1,
          prefix + key,
          enc(now),
          enc(Math.ceil(now + ttlMs)),
          ms + slackMs,
        )) === 1
      )
    },
    async claimed(key, now) {
      const v = await client.get(prefix + key)
      return v !== null && Number(v) > now
    },
    async unclaim(key) {
      await client.del(prefix + key)
    },
    async held(key, now) {
      const raw = await client.get(prefix + key)
      if (raw === null || !(raw.startsWith('h\n') || raw.startsWith('H\n'))) return 0
      // h (H when rebuilt), used, sum, minExp, maxExp, then #id, amount, expiresAt per hold.
      const p = raw.split('\n')
      let total = dec(p[1]!)
      for (let k = 5; k + 2 < p.length; k += 3) {
        if (dec(p[k + 2]!) > now) total += dec(p[k + 1]!)
      }
      return total
    },
  }
}
