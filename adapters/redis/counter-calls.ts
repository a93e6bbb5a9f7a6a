/**
 * @module tollbooth/redis/counter-calls
 *
 * The arguments of a call of the counters' Lua (`consume` in scripts.ts): the counter keys,
 * then every number of the call packed as little-endian doubles in one argument (read by one
 * `struct.unpack` per record, no decimal text parsed in Lua), then the hold ids.
 */

import type { AdmissionId, Check, Rebuild, SettleOp } from '../../src/internal.js'

/**
 * The Redis Cluster hash tag of a counter key (`{accountId}` for the core's counters): keys
 * of one tag live in one slot, so one script may touch them all. An untagged key is its own.
 */
export function hashTag(key: string): string {
  if (key.charCodeAt(0) !== 123) return key
  const end = key.indexOf('}')
  return end > 1 ? key.slice(0, end + 1) : key
}

/** Hold ids go into a newline-separated state: escape `%` and newlines, injectively. */
export function escapeHoldId(id: string): string {
  return id.replace(/[%\n\r]/g, (c) => (c === '%' ? '%25' : c === '\n' ? '%0A' : '%0D'))
}

/** The numbers and hold ids of one call, in the order the script reads them. */
interface Packed {
  nums: number[]
  ids: string[]
}

/** A check's `rebuild` as two numbers: 0 none, 1 ask, 2 rebuild from `base`. */
function pushRebuild(nums: number[], r: Rebuild | undefined): void {
  if (r === undefined) nums.push(0, 0)
  else if (r.base === undefined) nums.push(1, 0)
  else nums.push(2, r.base)
}

const keepArg = (keepUntil: number | undefined) =>
  keepUntil === undefined ? Number.NaN : keepUntil

function pushCheck(p: Packed, c: Check): void {
  switch (c.type) {
    case 'window':
      p.nums.push(1, c.limit, c.windowMs, c.bucketMs, c.cost)
      pushRebuild(p.nums, c.rebuild)
      return
    case 'gcra':
      p.nums.push(2, c.limit, c.windowMs, c.cost, 0, 0, 0)
      return
    case 'hold':
      p.nums.push(3, c.limit, c.amount, c.ttlMs, keepArg(c.keepUntil))
      pushRebuild(p.nums, c.rebuild)
      p.ids.push(escapeHoldId(c.holdId))
  }
}

/** The counter keys and records of one settle op (a cancel takes one record per check more). */
export function pushOp(keys: string[], p: Packed, prefix: string, op: SettleOp, now: number): void {
  const { nums, ids } = p
  if (op.type === 'release' && op.record !== undefined) {
    // Once per record: its KEY first, then the counter's.
    keys.push(prefix + op.record.key, prefix + op.key)
    nums.push(9, now, op.charge, op.record.ttlMs, keepArg(op.keepUntil))
    ids.push(escapeHoldId(op.holdId))
    return
  }
  if (op.type === 'release') {
    keys.push(prefix + op.key)
    nums.push(1, now, op.charge, op.ifHeld ? 1 : 0, keepArg(op.keepUntil))
    ids.push(escapeHoldId(op.holdId))
    return
  }
  if (op.type === 'renew') {
    keys.push(prefix + op.key)
    nums.push(8, now, op.ttlMs, 0, keepArg(op.keepUntil))
    ids.push(escapeHoldId(op.holdId))
    return
  }
  if (op.type === 'cancel') {
    keys.push(prefix + op.key)
    // A cancel with no revert op has nothing to take back: its record is not looked for.
    const { fold, bucket } =
      op.checks.length > 0
        ? recordPlace(prefix, op.key, op.ttlMs, op.checks, op.holdId, op.at)
        : { fold: 0, bucket: null }
    nums.push(4, now, op.ttlMs, op.checks.length, fold)
    for (const c of op.checks) {
      keys.push(prefix + c.key)
      if (c.type === 'hold') {
        nums.push(5, op.at, 0, 0, keepArg(c.keepUntil))
        ids.push(escapeHoldId(c.holdId))
      } else if (c.type === 'window') nums.push(6, op.at, c.windowMs, c.bucketMs, c.cost)
      else nums.push(7, op.at, c.limit, c.windowMs, c.cost)
    }
    if (bucket !== null) keys.push(bucket)
    return
  }
  const c = op.check
  keys.push(prefix + c.key)
  if (c.type === 'window') nums.push(2, now, c.windowMs, c.bucketMs, c.cost)
  else nums.push(3, now, c.limit, c.windowMs, c.cost)
}

/**
 * The check (1-based) whose hold stands for an admission's record, 0 when none does (see
 * `AdmissionId.holdId`): the first hold the admission takes under its own id, kept at least as
 * long as the record would be. The admission then writes no record, and its cancel, computing
 * the same from the same checks, looks for that hold. A `SET … PX` less per metered admission.
 */
export function recordHold(
  holdId: string | undefined,
  ttlMs: number,
  checks: ReadonlyArray<Check>,
): number {
  if (holdId === undefined) return 0
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i]!
    if (c.type === 'hold' && c.holdId === holdId && c.ttlMs >= ttlMs) return i + 1
  }
  return 0
}

/**
 * The list an admission's record is appended to when no hold stands for it: one string per
 * account (its record key's hash tag, so the same Cluster slot) and second of the admission's
 * time by the caller's clock, each record its key's name and a newline. An `APPEND` to a key
 * that exists costs Redis about a third of a new key with a TTL (a `SET … PX`), and a record
 * takes its name's bytes instead of a key of its own (bench/NOTES.md, session 21). Null, so
 * that the record keeps a key of its own, for a record key with no hash tag (its list could
 * sit in another Cluster slot) or a newline in its name or the prefix (as a line it would
 * read as two, the second another record's name).
 */
export function recordBucket(prefix: string, recordKey: string, at: number): string | null {
  const tag = hashTag(recordKey)
  if (tag === recordKey || recordKey.includes('\n') || prefix.includes('\n')) return null
  return `${prefix}${tag}:r:${Math.floor(at / 1000)}`
}

/**
 * Where the record of an admission made at `at` goes, as the script's `fold` says it: none,
 * the check whose hold stands for it (`fold` > 0, {@link recordHold}); a line of `bucket`, its
 * second's list (-1, {@link recordBucket}); else a key of its own (0). Its cancel finds it by
 * the same answer.
 */
function recordPlace(
  prefix: string,
  recordKey: string,
  ttlMs: number,
  checks: ReadonlyArray<Check>,
  holdId: string | undefined,
  at: number,
): { fold: number; bucket: string | null } {
  const fold = recordHold(holdId, ttlMs, checks)
  const bucket = fold === 0 ? recordBucket(prefix, recordKey, at) : null
  return { fold: bucket === null ? fold : -1, bucket }
}

/** Numbers as the script's first argument: little-endian doubles. */
function pack(nums: number[]): Buffer {
  const b = Buffer.allocUnsafe(nums.length * 8)
  for (let i = 0; i < nums.length; i++) b.writeDoubleLE(nums[i]!, i * 8)
  return b
}

/**
 * One call's KEYS and ARGV: `batch`'s settle ops (if any), then `checks` (if any) and the
 * admission's record, as the `consume` function reads them (scripts.ts).
 */
export function consumeCall(
  prefix: string,
  slackMs: number,
  batch: { keys: string[]; nums: number[]; ids: string[] } | undefined,
  checks: readonly Check[],
  now: number,
  admission?: AdmissionId,
): { keys: string[]; args: Array<string | Buffer> } {
  const keys: string[] = batch ? batch.keys.slice() : []
  const nOps = keys.length
  for (const c of checks) keys.push(prefix + c.key)
  let fold = 0
  if (admission) {
    keys.push(prefix + admission.key)
    const place = recordPlace(prefix, admission.key, admission.ttlMs, checks, admission.holdId, now)
    fold = place.fold
    // The list is the last key, not read by the call.
    if (place.bucket !== null) keys.push(place.bucket)
  }
  const p: Packed = {
    nums: [now, slackMs, nOps, admission ? Math.ceil(admission.ttlMs) : Number.NaN, fold],
    ids: [],
  }
  if (batch) {
    for (const x of batch.nums) p.nums.push(x)
    for (const x of batch.ids) p.ids.push(x)
  }
  for (const c of checks) pushCheck(p, c)
  return { keys, args: [pack(p.nums), ...p.ids] }
}

/** Settle ops as a batch for {@link consumeCall} (each applied at its own clock reading). */
export function settleBatch(prefix: string, ops: readonly SettleOp[], now: number) {
  const keys: string[] = []
  const p: Packed = { nums: [], ids: [] }
  for (const op of ops) pushOp(keys, p, prefix, op, now)
  return { keys, nums: p.nums, ids: p.ids }
}
