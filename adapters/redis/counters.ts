/**
 * @module tollbooth/redis/counters
 *
 * The counter store on Redis. Every call is one FCALL of the counters' Functions library
 * (one EVALSHA of the same code as the `CONSUME` script where the server has no Functions),
 * which runs every check of an admission and writes all of them or none (Lua runs alone on
 * the server, so concurrent admissions see a serial order). `held` is one GET, summed here in
 * the same order as `limits/hold`.
 *
 * Settles are batched: `settle()` queues its ops under the counter's hash tag (the account),
 * and they are sent with that account's next admission, in the same script and before it, or
 * on their own after at most `settleBatchMs`: on one server every account's queued ops in
 * one call (of up to 256 ops), on a cluster one call per hash tag.
 * Under load that makes one round trip per request instead of two, and the script reads and
 * writes a counter both touch (the credit reservation) once. `settle()` resolves when its ops
 * are applied, so `tb.flush()` and `tb.close()` still wait for them. The cost of waiting:
 * a reservation is released up to `settleBatchMs` later, which only matters to a balance
 * read in between (it still shows the request in flight); a process that dies loses the
 * queued settles, and their reservations expire by their TTL, as if it died before settling.
 *
 * An admission with an identity writes its record in the same script: none when one of its
 * holds stands for it (`recordHold` in counter-calls.ts: a hold under the admission's own id,
 * kept at least as long as the record), else a line of its account's list of that second
 * (`recordBucket`; a plain string key `'c'` with a TTL for a record key with no hash tag); a
 * `cancel` is one `x` op followed by one revert op per check of the admission, all undone in
 * the script only when the record (that hold, or the line, while the record would have lived)
 * is there; the record's key then becomes the tombstone `'x'`. Commands on one connection run in order, but the
 * tombstone also covers a cancel that reaches Redis before the admission it undoes.
 */

import type {
  AdmissionId,
  Check,
  CheckResult,
  ConsumeResult,
  CounterStore,
  SettleOp,
} from '../../src/internal.js'
import { roundAmount } from '../../src/internal.js'
import { consumeCall, hashTag, pushOp } from './counter-calls.js'
import { CONSUME_FUNCTION, LIBRARY, SETTLE_FUNCTION } from './scripts.js'
import { type Ctx, dec, enc, linked } from './store.js'

/** A hold counter's figures as stored: `sum` NaN when unknown, `holds` as id, amount, expiry. */
export interface StoredHolds {
  used: number
  sum: number
  minExp: number
  maxExp: number
  holds: Array<[string, number, number]>
}

/**
 * A hold counter as stored (scripts.ts): the packed form (`i`, `I` when rebuilt: expiry,
 * used, sum, minExp, maxExp as little-endian doubles), or the text form of versions before it
 * (`h`, `H`: the same figures as lines, expiry aside), then `\n#<id>\n<amount>\n<expiresAt>`
 * per hold. Undefined when `raw` is no hold counter.
 */
export function holdState(raw: Buffer | null): StoredHolds | undefined {
  if (raw === null || raw.length === 0) return undefined
  const l = raw[0]
  let head: number[]
  let lines: string[]
  if (l === 0x69 || l === 0x49) {
    head = [raw.readDoubleLE(9), raw.readDoubleLE(17), raw.readDoubleLE(25), raw.readDoubleLE(33)]
    lines = raw.subarray(41).toString().split('\n')
  } else if ((l === 0x68 || l === 0x48) && raw[1] === 0x0a) {
    lines = raw.toString().split('\n')
    // An unknown sum (empty) reads as NaN, as in the packed form.
    head = lines.slice(1, 5).map((x) => (x === '' ? Number.NaN : dec(x)))
    lines = lines.slice(4)
  } else return undefined
  const holds: Array<[string, number, number]> = []
  for (let k = 1; k + 2 < lines.length; k += 3)
    holds.push([lines[k]!.slice(1), dec(lines[k + 1]!), dec(lines[k + 2]!)])
  return { used: head[0]!, sum: head[1]!, minExp: head[2]!, maxExp: head[3]!, holds }
}

/** The counter key whose hash tag an op is sent under. */
const opKey = (op: SettleOp): string => (op.type === 'add' ? op.check.key : op.key)

/** The most settle ops one call carries. */
const MAX_BATCH = 256

/** Figure `i` of the script's reply (little-endian doubles); a -0 read as 0. */
const figure = (reply: Buffer, i: number): number => reply.readDoubleLE(8 * i) + 0

/** Settle ops queued for one hash tag (each applied at its own settle's clock reading), and
 * the callers waiting for them. */
interface Batch {
  keys: string[]
  nums: number[]
  ids: string[]
  done: Array<(err?: unknown) => void>
}

/** A reply error's text. */
const message = (err: unknown) => (err instanceof Error ? err.message : String(err))

/**
 * Loads the counters' Functions library on `client` (every master of a cluster). False when
 * the server cannot (no Functions before Redis 7, or the user may not load them): the caller
 * then runs the same code as a script.
 */
async function loadLibrary(client: Ctx['client']): Promise<boolean> {
  const nodes =
    'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client]
  try {
    await Promise.all(
      nodes.map((n) =>
        n.call('FUNCTION', 'LOAD', LIBRARY).catch((err: unknown) => {
          // Loaded meanwhile by another instance (the name carries the code's version).
          if (!/already exists/i.test(message(err))) throw err
        }),
      ),
    )
    return true
  } catch {
    return false
  }
}

/**
 * @param ctx the client and key prefix
 * @param slackMs how long an idle counter is kept past the moment it turns idle
 * @param settleBatchMs the longest a settle waits for its account's next admission (0: sent
 *   at once)
 */
export function redisCounters(ctx: Ctx, slackMs: number, settleBatchMs = 0): CounterStore {
  const { client, prefix } = ctx
  const cluster = (client as { isCluster?: boolean }).isCluster === true
  const pending = new Map<string, Batch>()
  /** Whether a timer will send what is queued. */
  let armed = false
  /** Whether the server runs Functions: unknown until the first call says otherwise. */
  let functions = true
  let loading: Promise<boolean> | undefined

  /**
   * Runs the counter code: `FCALL` of the library's function, loaded on first use (a server
   * that forgot it, restarted or failed over, gets it again); the same code by EVALSHA where
   * the server has no Functions or the user may not run FCALL. A call refused for any of these
   * reasons ran nothing.
   */
  async function invoke(name: string, numKeys: number, args: Array<string | Buffer>) {
    const wait = linked(ctx)
    if (wait) await wait
    if (functions) {
      try {
        return (await client.callBuffer('fcall', name, numKeys, ...args)) as Buffer
      } catch (err) {
        const m = message(err)
        // No Functions (before Redis 7), or an ACL user allowed EVALSHA but not FCALL.
        if (/unknown command|permissions to run the 'fcall' command/i.test(m)) functions = false
        else if (/function not found/i.test(m)) {
          loading ??= loadLibrary(client).finally(() => {
            loading = undefined
          })
          if (await loading)
            return (await client.callBuffer('fcall', name, numKeys, ...args)) as Buffer
          functions = false
        } else throw err
      }
    }
    return client.tollboothConsumeBuffer(numKeys, ...args)
  }

  /** One call: the batch's ops (if any), then the checks (if any) and the admission's record. */
  async function run(
    batch: Batch | undefined,
    checks: readonly Check[],
    now: number,
    admission?: AdmissionId,
  ) {
    const { keys, args } = consumeCall(prefix, slackMs, batch, checks, now, admission)
    const name = checks.length === 0 ? SETTLE_FUNCTION : CONSUME_FUNCTION
    try {
      const reply = await invoke(name, keys.length, [...keys, ...args])
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
  /**
   * Whether the batches of different accounts may share a call: a single server takes keys of
   * any slots in one call, but a proxy in front of a cluster refuses them (CROSSSLOT, before
   * running anything); then each goes on its own, now and from then on.
   */
  let mergeAccounts = !cluster
  const sendMerged = (parts: Batch[]) => {
    if (parts.length === 1) return sendAlone(parts[0]!)
    const merged: Batch = { keys: [], nums: [], ids: [], done: [] }
    for (const b of parts) {
      for (const x of b.keys) merged.keys.push(x)
      for (const x of b.nums) merged.nums.push(x)
      for (const x of b.ids) merged.ids.push(x)
    }
    const { keys, args } = consumeCall(prefix, slackMs, merged, [], 0)
    invoke(SETTLE_FUNCTION, keys.length, [...keys, ...args]).then(
      () => {
        for (const b of parts) for (const d of b.done) d()
      },
      (err: unknown) => {
        if (/CROSSSLOT/i.test(message(err))) {
          mergeAccounts = false
          for (const b of parts) sendAlone(b)
        } else for (const b of parts) for (const d of b.done) d(err)
      },
    )
  }

  /**
   * Sends every queued settle. On one server, the batches of different accounts go together
   * in calls of up to MAX_BATCH ops (one round trip for all of them); a cluster's differ in
   * slot, so each goes on its own.
   */
  function flushAll(): void {
    armed = false
    const batches = [...pending.values()]
    pending.clear()
    if (!mergeAccounts) {
      for (const b of batches) sendAlone(b)
      return
    }
    let parts: Batch[] = []
    let size = 0
    for (const b of batches) {
      if (size > 0 && size + b.keys.length > MAX_BATCH) {
        sendMerged(parts)
        parts = []
        size = 0
      }
      parts.push(b)
      size += b.keys.length
    }
    if (parts.length > 0) sendMerged(parts)
  }

  /** Queues `op`; true when `done` was added to the batch (once per batch and caller). */
  function enqueue(tag: string, op: SettleOp, now: number, done: (err?: unknown) => void) {
    let b = pending.get(tag)
    if (!b) {
      b = { keys: [], nums: [], ids: [], done: [] }
      pending.set(tag, b)
    }
    pushOp(b.keys, b, prefix, op, now)
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
        const allowed = figure(reply, b)
        const r: CheckResult = {
          allowed: allowed === 1,
          limit: c.limit,
          used: figure(reply, b + 1),
          remaining: figure(reply, b + 2),
          resetMs: figure(reply, b + 3),
          retryAfterMs: figure(reply, b + 4),
        }
        if (allowed === -1) r.missing = true
        return r
      })
      return { allowed: figure(reply, 0) === 1, results }
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
        for (const op of ops) {
          if (enqueue(hashTag(opKey(op)), op, now, done)) left++
        }
        if (settleBatchMs === 0) flushAll()
        else if (!armed) {
          armed = true
          setTimeout(flushAll, settleBatchMs)
        }
      })
    },
    async claim(key, ttlMs, now) {
      const wait = linked(ctx)
      if (wait) await wait
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
      const s = holdState(await client.getBuffer(prefix + key))
      if (s === undefined) return 0
      let total = s.used + 0
      for (const [, amount, expiresAt] of s.holds) if (expiresAt > now) total += amount
      // As holdTotal() (limits/hold) sums it.
      return roundAmount(total)
    },
  }
}
