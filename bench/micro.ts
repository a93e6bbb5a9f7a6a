/**
 * @module bench/micro
 *
 * Micro benchmark of the core's hot path: `authenticate()` + `settle()` per request on the
 * memory store, no HTTP. One request at a time (each awaited), so the figure is the core's
 * own cost per request on one core. Scenarios:
 *
 * - cache hit, no limits: a cached key, a route with no cost; the floor of the pipeline
 * - cache miss, no limits: `cache: false`, so every request hashes and reads the store
 * - cache hit, credits: a route of cost 1 on a plan, so the credit hold is reserved and settled
 * - cache hit, 4 limits + credits: daily and monthly quotas, per-second and per-minute rate
 *   limits, and the credit reservation, all in one atomic consume
 *
 * Run: `npx tsx bench/micro.ts` (optionally `--ms 2000` per round). Prints a table.
 */

import { createTollbooth, type Tollbooth, type TollboothOptions } from '../src/index.js'
import type { TollboothRequest } from '../src/request.js'

const SECRET = 'bench-secret-bench-secret-bench-secret-0001'
const ROUNDS = 5
const argMs = process.argv.indexOf('--ms')
const ROUND_MS = argMs > 0 ? Number(process.argv[argMs + 1]) : 1000

interface Scenario {
  name: string
  options: Partial<TollboothOptions>
  limits: Record<string, unknown>
  route: Parameters<Tollbooth['route']>[0]
}

const HIGH = 1_000_000_000
const PLANS = { plans: { pro: { monthlyCredits: HIGH } }, defaultTier: 'pro' }

const scenarios: Scenario[] = [
  { name: 'cache hit, no limits', options: {}, limits: {}, route: {} },
  { name: 'cache miss, no limits', options: { cache: false }, limits: {}, route: {} },
  { name: 'cache hit, credits', options: PLANS, limits: {}, route: { cost: 1, category: 'tts' } },
  {
    name: 'cache hit, 4 limits + credits',
    options: PLANS,
    limits: {
      quotas: { daily: HIGH, monthly: HIGH },
      rateLimits: [
        { limit: HIGH, windowMs: 1_000 },
        { limit: HIGH, windowMs: 60_000 },
      ],
    },
    route: { cost: 1, category: 'tts' },
  },
]

/** Runs requests back to back for `ms`; returns requests per second. */
async function round(tb: Tollbooth, request: TollboothRequest, route: unknown, ms: number) {
  const r = route as ReturnType<Tollbooth['route']>
  const end = performance.now() + ms
  let n = 0
  let start = performance.now()
  // Check the time every 256 requests: reading it costs more than some steps measured.
  for (;;) {
    for (let i = 0; i < 256; i++) {
      const d = await tb.authenticate(request, r)
      if (!d.allowed) throw new Error(`bench request refused: ${d.status} ${d.message}`)
      await tb.settle(d, { status: 200 })
    }
    n += 256
    const now = performance.now()
    if (now >= end) {
      const elapsed = now - start
      start = now
      return (n / elapsed) * 1000
    }
  }
}

async function run(s: Scenario): Promise<{ opsPerSec: number; usPerOp: number }> {
  const tb = createTollbooth({ secret: SECRET, failedAuth: false, ...s.options })
  const { key } = await tb.keys.create({ accountId: 'acct_bench', name: 'bench', limits: s.limits })
  const request: TollboothRequest = {
    headers: { authorization: `Bearer ${key}` },
    ip: '127.0.0.1',
    method: 'POST',
    path: '/v1/synthesize',
  }
  const route = tb.route(s.route)
  await round(tb, request, route, Math.min(300, ROUND_MS)) // warm up (JIT, caches)
  const results: number[] = []
  for (let i = 0; i < ROUNDS; i++) results.push(await round(tb, request, route, ROUND_MS))
  await tb.close()
  results.sort((a, b) => a - b)
  const median = results[Math.floor(results.length / 2)]!
  return { opsPerSec: median, usPerOp: 1e6 / median }
}

async function main() {
  console.log(
    `tollbooth micro benchmark: authenticate() + settle(), memory store, one request at a time`,
  )
  console.log(
    `node ${process.version}, ${process.platform}/${process.arch}, median of ${ROUNDS} x ${ROUND_MS} ms\n`,
  )
  const rows: Array<[string, string, string]> = [['scenario', 'ops/s', 'µs/op']]
  for (const s of scenarios) {
    const r = await run(s)
    rows.push([s.name, Math.round(r.opsPerSec).toLocaleString('en-US'), r.usPerOp.toFixed(2)])
  }
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)))
  const line = (r: [string, string, string]) =>
    `| ${r[0].padEnd(w[0]!)} | ${r[1].padStart(w[1]!)} | ${r[2].padStart(w[2]!)} |`
  console.log(line(rows[0]!))
  console.log(`|${'-'.repeat(w[0]! + 2)}|${'-'.repeat(w[1]! + 1)}:|${'-'.repeat(w[2]! + 1)}:|`)
  for (const r of rows.slice(1)) console.log(line(r))
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
