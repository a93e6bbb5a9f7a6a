/**
 * @module bench/leases-sim
 *
 * Leases simulated with an injected clock: 16 instances (each its own `leasedCounters`) over
 * one memory counter store, one account at 100,000 requests per second spread evenly over
 * them, every request checking the account's rate limit (GCRA), the key's daily quota (a
 * rolling window) and a credit reservation (a hold, settled 20 ms later with a charge of 1).
 * The same traffic is then decided by the store alone, request by request, as the reference.
 *
 * Scenarios: the limits well above the traffic (the usual case); a per-second rate limit below
 * the traffic (saturated: refusals are due, and early refusals are the ones the reference does
 * not make); a daily quota that runs out halfway. Prints, per scenario: store calls per second (consume and settle, all
 * instances), the share of admissions answered in process, admitted and refused against the
 * reference, and the design's bound on the shortfall (one lease per instance and limit, each at
 * most `maxShare` of the limit; docs/leases.md).
 *
 * Usage: `npx tsx bench/leases-sim.ts [seconds=1] [instances=16] [rps=100000] [scenario prefix]`.
 */

import { leasedCounters } from '../src/storage/leased-counters.js'
import { memoryStorage } from '../src/storage/memory.js'
import type { Check, CounterStore, SettleOp } from '../src/storage/types.js'

const SECONDS = Number(process.argv[2] ?? 1)
const N = Number(process.argv[3] ?? 16)
const RPS = Number(process.argv[4] ?? 100_000)
const T0 = 1_767_225_600_000
const DAY = 86_400_000

interface Scenario {
  name: string
  rate: number
  rateWindowMs: number
  daily: number
  credits: number
}

const scenarios: Scenario[] = [
  {
    name: 'limits above the traffic',
    rate: 12_000_000,
    rateWindowMs: 60_000,
    daily: 1e9,
    credits: 1e9,
  },
  {
    name: 'rate limit below the traffic (a burst of 40 %, then 40 % of the rate)',
    rate: RPS * 0.4,
    rateWindowMs: 1000,
    daily: 1e9,
    credits: 1e9,
  },
  {
    name: 'daily quota runs out mid-run',
    rate: 12_000_000,
    rateWindowMs: 60_000,
    daily: RPS * SECONDS * 0.5,
    credits: 1e9,
  },
]

function checks(s: Scenario, id: string): Check[] {
  return [
    {
      type: 'gcra',
      key: '{acct}:p:pro:r0',
      name: 'rate',
      limit: s.rate,
      windowMs: s.rateWindowMs,
      cost: 1,
    },
    {
      type: 'window',
      key: '{acct}:k:key1:q:daily',
      name: 'daily',
      limit: s.daily,
      windowMs: DAY,
      bucketMs: 3_600_000,
      cost: 1,
    },
    {
      type: 'hold',
      key: '{acct}:credits',
      name: 'credits',
      limit: s.credits,
      amount: 2,
      holdId: id,
      ttlMs: 30_000,
    },
  ]
}

/** Runs the traffic on `instances`; counts the store's calls through a counting wrapper. */
async function run(s: Scenario, instances: CounterStore[]) {
  let admitted = 0
  let refused = 0
  let seq = 0
  const due: Array<[number, number, SettleOp]> = []
  const perMs = RPS / 1000
  for (let ms = 0; ms < SECONDS * 1000; ms++) {
    const now = T0 + ms
    // What each instance's flush timer does, once per simulated millisecond.
    for (const inst of instances)
      await (inst as { flush?: (n: number) => Promise<void> }).flush?.(now)
    for (let k = 0; k < perMs; k++) {
      const i = (ms * perMs + k) % instances.length
      const id = `r${++seq}`
      const r = await instances[i]!.consume(checks(s, id), now)
      if (r.allowed) {
        admitted++
        due.push([now + 20, i, { type: 'release', key: '{acct}:credits', holdId: id, charge: 1 }])
      } else refused++
    }
    while (due.length > 0 && due[0]![0] <= now) {
      const [, i, op] = due.shift()!
      await instances[i]!.settle([op], now)
    }
  }
  return { admitted, refused }
}

function counting(inner: CounterStore) {
  const calls = { n: 0 }
  const store: CounterStore = {
    consume(c, now, a) {
      calls.n++
      return inner.consume(c, now, a)
    },
    settle(o, now) {
      calls.n++
      return inner.settle(o, now)
    },
    held: (k, now) => inner.held(k, now),
    claim: (k, t, now) => inner.claim(k, t, now),
    claimed: (k, now) => inner.claimed(k, now),
    unclaim: (k) => inner.unclaim(k),
  }
  return { store, calls }
}

const out: unknown[] = []
const only = process.argv[5]
for (const s of scenarios) {
  if (only !== undefined && !s.name.startsWith(only)) continue
  const leasedStore = counting(memoryStorage().counters)
  const leased = Array.from({ length: N }, () =>
    leasedCounters(leasedStore.store, { flushEveryMs: 0 }),
  )
  const a = await run(s, leased)
  const local = leased.reduce((x, l) => x + l.stats().localAdmissions, 0)
  const plainStore = counting(memoryStorage().counters)
  const b = await run(
    s,
    Array.from({ length: N }, () => plainStore.store),
  )
  const capRate = Math.floor(0.01 * s.rate)
  const capDaily = Math.floor(0.01 * s.daily)
  const row = {
    scenario: s.name,
    instances: N,
    rps: RPS,
    storeCallsPerSecond: Math.round(leasedStore.calls.n / SECONDS),
    storeCallsPerRequest: +(leasedStore.calls.n / (a.admitted + a.refused)).toFixed(4),
    referenceCallsPerSecond: Math.round(plainStore.calls.n / SECONDS),
    localShare: +(local / Math.max(1, a.admitted)).toFixed(4),
    admitted: a.admitted,
    referenceAdmitted: b.admitted,
    earlyRefusals: Math.max(0, b.admitted - a.admitted),
    // The binding limit's bound (docs/leases.md): 2 n leases of a rate limit, n of a window.
    boundOnShortfall: s.daily < 1e9 ? N * capDaily : 2 * N * capRate,
  }
  console.log(JSON.stringify(row))
  out.push(row)
}
