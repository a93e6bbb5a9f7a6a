/**
 * @module bench/micro
 *
 * Micro benchmark of the core's hot path per request on the memory store, no HTTP, one
 * request at a time, as the adapters run it: `decide()` (the decision itself when no I/O is
 * needed), `responseHeaders()`, `settleLater()`. Every 256 requests the loop yields to the
 * event loop, as a server does, so the usage out-box runs. Scenarios:
 *
 * - cache hit, no limits: a cached key, a route with no cost; the floor of the pipeline
 * - cache miss, no limits: `cache: false`, so every request hashes and reads the store
 * - cache hit, credits: a route of cost 1 on a plan, so the credit hold is reserved and settled
 * - cache hit, 4 limits + credits: daily and monthly quotas, per-second and per-minute rate
 *   limits, and the credit reservation, all in one atomic consume
 * - the HTTP benchmark's key (a per-minute rate limit, a daily quota, cost 1 against plan
 *   credits, every header family: 10 headers), beside the hand-written floor of the same job
 *   (bench/floor.ts); the target is tollbooth >= 0.8 x the floor's ops/s
 * - the same hashing every request (`cache.memoizeKeys: false`), and the same through the
 *   public `await authenticate()` + `await settle()`
 *
 * Run: `npx tsx bench/micro.ts` (optionally `--ms 2000` per round). Prints a table.
 */

import { createTollbooth, type Tollbooth, type TollboothOptions } from '../src/index.js'
import type { TollboothRequest } from '../src/request.js'
import { createFloor } from './floor.js'

const SECRET = 'bench-secret-bench-secret-bench-secret-0001'
const ROUNDS = 5
const argMs = process.argv.indexOf('--ms')
const ROUND_MS = argMs > 0 ? Number(process.argv[argMs + 1]) : 1000

interface Scenario {
  name: string
  options: Partial<TollboothOptions>
  limits: Record<string, unknown>
  route: Parameters<Tollbooth['route']>[0]
  /** Through the public promises instead of `decide()` / `settleLater()`. */
  awaited?: boolean
}

const HIGH = 1_000_000_000
const PLANS = { plans: { pro: { monthlyCredits: HIGH } }, defaultTier: 'pro' }

const HTTP_KEY = 'cache hit, HTTP key (rate limit + daily quota + credits, 10 headers)'
const HTTP_LIMITS = { rateLimits: [{ limit: HIGH, windowMs: 60_000 }], quotas: { daily: HIGH } }

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
  {
    name: HTTP_KEY,
    options: PLANS,
    limits: HTTP_LIMITS,
    route: { cost: 1, headers: { requestId: true, rateLimit: true, ietf: true, usage: true } },
  },
  {
    name: `${HTTP_KEY}, cache.memoizeKeys false (HMAC every request)`,
    options: { ...PLANS, cache: { memoizeKeys: false } },
    limits: HTTP_LIMITS,
    route: { cost: 1, headers: { requestId: true, rateLimit: true, ietf: true, usage: true } },
  },
  {
    name: `${HTTP_KEY}, awaited authenticate() + settle()`,
    options: PLANS,
    limits: HTTP_LIMITS,
    route: { cost: 1, headers: { requestId: true, rateLimit: true, ietf: true, usage: true } },
    awaited: true,
  },
]

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r))

/** Runs `batch` (256 requests) back to back for `ms`; returns requests per second. */
async function timed(batch: () => void | Promise<void>, ms: number): Promise<number> {
  const end = performance.now() + ms
  let n = 0
  const start = performance.now()
  // Check the time every 256 requests: reading it costs more than some steps measured.
  for (;;) {
    await batch()
    await yieldToLoop()
    n += 256
    const now = performance.now()
    if (now >= end) return (n / (now - start)) * 1000
  }
}

async function median(batch: () => void | Promise<void>): Promise<number> {
  await timed(batch, Math.min(300, ROUND_MS)) // warm up (JIT, caches)
  const results: number[] = []
  for (let i = 0; i < ROUNDS; i++) results.push(await timed(batch, ROUND_MS))
  results.sort((a, b) => a - b)
  return results[Math.floor(results.length / 2)]!
}

async function run(s: Scenario): Promise<number> {
  const tb = createTollbooth({ secret: SECRET, failedAuth: false, ...s.options })
  const { key } = await tb.keys.create({ accountId: 'acct_bench', name: 'bench', limits: s.limits })
  const request: TollboothRequest = {
    headers: { authorization: `Bearer ${key}` },
    ip: '127.0.0.1',
    method: 'POST',
    path: '/v1/synthesize',
  }
  const route = tb.route(s.route)
  const refused = (d: { allowed: boolean }) => {
    if (!d.allowed) throw new Error(`bench request refused: ${JSON.stringify(d)}`)
  }
  const ops = await median(
    s.awaited
      ? async () => {
          for (let i = 0; i < 256; i++) {
            const d = await tb.authenticate(request, route)
            refused(d)
            if (d.allowed) d.responseHeaders(200)
            await tb.settle(d, { status: 200 })
          }
        }
      : async () => {
          for (let i = 0; i < 256; i++) {
            const p = tb.decide(request, route)
            const d = p instanceof Promise ? await p : p
            refused(d)
            if (d.allowed) d.responseHeaders(200)
            tb.settleLater(d, { status: 200 })
          }
        },
  )
  await tb.close()
  return ops
}

/** The hand-written floor of the HTTP key's job: admit, 10 headers, settle. */
async function runFloor(): Promise<number> {
  const tb = createTollbooth({ secret: SECRET })
  const { key } = await tb.keys.create({ accountId: 'acct_floor' })
  const f = createFloor('sk_live_', SECRET, 10, key)
  const auth = `Bearer ${key}`
  return median(() => {
    for (let i = 0; i < 256; i++) {
      const a = f.admit(auth, undefined)
      if (!('key' in a)) throw new Error('floor refused the key')
      f.settle(a, 200)
    }
  })
}

async function main() {
  console.log(
    'tollbooth micro benchmark: decide() + responseHeaders() + settleLater(), memory store, one request at a time',
  )
  console.log(
    `node ${process.version}, ${process.platform}/${process.arch}, median of ${ROUNDS} x ${ROUND_MS} ms\n`,
  )
  const rows: Array<[string, string, string]> = [['scenario', 'ops/s', 'µs/op']]
  const row = (name: string, ops: number) =>
    rows.push([name, Math.round(ops).toLocaleString('en-US'), (1e6 / ops).toFixed(2)])
  const byName = new Map<string, number>()
  for (const s of scenarios) {
    const ops = await run(s)
    byName.set(s.name, ops)
    row(s.name, ops)
  }
  const floor = await runFloor()
  row('floor: the same job as the HTTP key, by hand (bench/floor.ts)', floor)
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)))
  const line = (r: [string, string, string]) =>
    `| ${r[0].padEnd(w[0]!)} | ${r[1].padStart(w[1]!)} | ${r[2].padStart(w[2]!)} |`
  console.log(line(rows[0]!))
  console.log(`|${'-'.repeat(w[0]! + 2)}|${'-'.repeat(w[1]! + 1)}:|${'-'.repeat(w[2]! + 1)}:|`)
  for (const r of rows.slice(1)) console.log(line(r))
  const ratio = byName.get(HTTP_KEY)! / floor
  console.log(
    `\ntollbooth / floor (HTTP key): ${ratio.toFixed(2)} (target >= 0.8: ${ratio >= 0.8 ? 'met' : 'missed'})`,
  )
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
