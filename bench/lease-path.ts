/**
 * @module bench/lease-path
 *
 * The lease decorator's own cost on a hot key, in process and with no I/O: what a request
 * answered from leases pays in `storage/leased-counters` (its `lease()` at admission and its
 * `settle()`), next to the memory store's synchronous counters doing the same counting. The
 * checks are those a key with a per-minute rate limit, a daily quota and plan credits gets
 * (`limits/admission`), as the core builds them: the same key strings every request, a fresh
 * hold id each. The inner store of the leases is a memory store, so only lease calls reach it.
 *
 *   npx tsx bench/lease-path.ts [requests per round=200000] [rounds=7]
 *
 * Prints ns per request (admission + settle), the median of the rounds, for both.
 */

import { leasedCounters } from '../src/storage/leased-counters.js'
import { memoryStorage } from '../src/storage/memory.js'
import { syncCounters } from '../src/storage/state-counters.js'
import type { Check, SettleOp } from '../src/storage/types.js'

const PER_ROUND = Number(process.argv[2] ?? 200_000)
const ROUNDS = Number(process.argv[3] ?? 7)
const T0 = 1_767_225_600_000

const rate: Check = {
  type: 'gcra',
  key: '{acct_bench}:k:key_1:r0',
  name: 'per-minute',
  limit: 1e9,
  windowMs: 60_000,
  cost: 1,
}
const daily: Check = {
  type: 'window',
  key: '{acct_bench}:k:key_1:q:daily',
  name: 'daily',
  limit: 1e9,
  windowMs: 86_400_000,
  bucketMs: 3_600_000,
  cost: 1,
}
const checksOf = (id: string): Check[] => [
  rate,
  daily,
  {
    type: 'hold',
    key: '{acct_bench}:credits:2026-12',
    name: 'credits',
    limit: 1e15,
    amount: 1,
    holdId: id,
    ttlMs: 30_000,
    keepUntil: T0 + 40 * 86_400_000,
  },
]
const settleOf = (id: string): SettleOp[] => [
  { type: 'release', key: '{acct_bench}:credits:2026-12', holdId: id, charge: 1 },
]

type Run = (i: number, now: number) => unknown

function leased(): Run {
  const c = leasedCounters(memoryStorage().counters, { flushEveryMs: 0 })
  return (i, now) => {
    const id = `r${i}`
    const r = c.lease(checksOf(id), now, { key: `{acct_bench}:a:${id}`, ttlMs: 60_000 })
    if (r === null || r instanceof Promise) return r
    void c.settle(settleOf(id), now)
    if (i % 1000 === 0) void c.flush(now)
    return r
  }
}

function memory(): Run {
  const c = syncCounters(memoryStorage().counters)!
  return (i, now) => {
    const id = `r${i}`
    const r = c.consume(checksOf(id), now)
    c.settle(settleOf(id), now)
    return r
  }
}

async function measure(name: string, make: () => Run): Promise<void> {
  const run = make()
  const times: number[] = []
  let i = 0
  let now = T0
  for (let round = 0; round < ROUNDS + 1; round++) {
    const start = process.hrtime.bigint()
    for (let k = 0; k < PER_ROUND; k++) {
      // About 10 requests per ms: hot for a lease, as a busy key is.
      if (k % 10 === 0) now++
      const r = run(i++, now)
      if (r instanceof Promise) await r
    }
    const ns = Number(process.hrtime.bigint() - start) / PER_ROUND
    if (round > 0) times.push(ns) // the first round warms the JIT up
    await new Promise((r) => setImmediate(r))
  }
  times.sort((a, b) => a - b)
  const med = times[Math.floor(times.length / 2)]!
  console.log(
    `${name.padEnd(10)} ${med.toFixed(0).padStart(6)} ns/request (rounds ${times[0]!.toFixed(0)}-${times[times.length - 1]!.toFixed(0)})`,
  )
}

const has = (n: string) => process.argv.includes(n)
if (!has('--leased-only')) await measure('memory', memory)
await measure('leased', leased)
