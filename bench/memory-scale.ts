/**
 * @module bench/memory-scale
 *
 * Does the memory store's cost per request stay flat as it grows? Builds a tollbooth on
 * `memoryStorage()` with N keys, each on its own account with a per-minute rate limit, a
 * daily quota and a route cost of 1 against plan credits, and uses every key once, so the
 * store holds the counters of N active keys. Then times awaited `authenticate()` +
 * `settle()` over keys drawn at random:
 *
 * - cached: the instance's key cache holds every key (max N, a TTL longer than the run)
 * - miss: a second instance on the same storage with `cache: false`, so every request hashes
 *   the key and reads the key record and the account from the store
 *
 * Each size runs in its own process (`node --expose-gc --max-old-space-size=8192 --import
 * tsx`), so one size's heap does not weigh on the next. Per size: µs per request, the median
 * of the rounds and their spread (slowest / fastest), and the time in GC pauses per request
 * (PerformanceObserver 'gc' entries during the rounds) and the CPU time per request (every
 * thread, so the GC's helper threads count: on a shared machine it moves less than the wall
 * clock). And the two factors of the GC's part (bench/NOTES.md, session 10): the bytes a
 * request allocates (the young generation's growth over 300 requests with no collection
 * between, the median of a few tries), and the mean pause of a scavenge, which grows with the
 * old generation's size (the scavenger visits every old page).
 *
 * With `--repeat R`, every size runs in R processes, the sizes taking turns (1,000, 1,000,000,
 * 1,000, …): on a shared machine one process's figure moves by half between runs (the small
 * size's most: bench/NOTES.md, session 14), so the table pools the rounds of all of them, and
 * the ratio of each turn is printed beside the pooled one.
 *
 *   npx tsx bench/memory-scale.ts [sizes=1000,100000,1000000] [--rounds 10] [--per-round 20000]
 *     [--repeat 1]
 *
 * Where a request's time goes, by function and by line: `--profile cached|miss` runs one size
 * in this process under the inspector's sampling profiler (50 µs) after the setup, for
 * `--per-round` requests, and prints the self time per request of the top functions and lines
 * (about 1.3× the unprofiled time; compare two sizes, not absolute figures). With `--dist` it
 * runs the built package (`npm run build` first), whose lines are the bundle's own: the
 * sources through tsx report every function at line 1.
 *
 *   node --expose-gc --max-old-space-size=8192 --import tsx bench/memory-scale.ts \
 *     --one 1000000 --profile cached --dist [--per-round 100000] [--top 40]
 *
 * `--profile alloc` prints the bytes a cached request allocates, by function and by function
 * and caller (the sampling heap profiler; the same at every size, so run a small one; with
 * `--miss`, a cache miss's);
 * `--profile retained` the same for what is still alive after the run (with `--per-round` under
 * the store's `maxEvents`: what a request leaves for the scavenger to copy and promote).
 */

import { execFileSync } from 'node:child_process'
import { Session } from 'node:inspector/promises'
import { PerformanceObserver } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { getHeapSpaceStatistics } from 'node:v8'
import type { Tollbooth } from '../src/index.js'
import type { TollboothRequest } from '../src/request.js'
import { keyPicker } from './scale-job.js'

// The built package with `--dist` (a path, not a literal: it need not be built to type-check).
const library = process.argv.includes('--dist')
  ? new URL('../dist/index.js', import.meta.url).href
  : '../src/index.js'
const { createTollbooth, memoryStorage } = (await import(
  library
)) as typeof import('../src/index.js')

const SECRET = 'memory-scale-secret-memory-scale-secret-01'
const HIGH = 1_000_000_000
const LIMITS = { rateLimits: [{ limit: HIGH, windowMs: 60_000 }], quotas: { daily: HIGH } }
const ROUTE = { cost: 1 }
const PLANS = { plans: { pro: { monthlyCredits: HIGH } }, defaultTier: 'pro' }

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const ROUNDS = arg('--rounds', 10)
const PER_ROUND = arg('--per-round', 20_000)
const REPEAT = arg('--repeat', 1)
const PROFILE = process.argv.includes('--profile')
  ? process.argv[process.argv.indexOf('--profile') + 1]
  : undefined
const TOP = arg('--top', 30)

interface Figures {
  /** µs per request, one per round (wall clock). */
  rounds: number[]
  /** CPU µs per request over all rounds (every thread: GC helpers included). */
  cpuUs: number
  /** µs of GC pauses per request over all rounds. */
  gcUs: number
  /** Mark-compact collections during the rounds. */
  majors: number
  /** Bytes allocated per request (median of the tries with no GC between). */
  allocBytes: number
  /** Mean pause of a scavenge during the rounds (ms). */
  scavengeMs: number
}

interface SizeResult {
  keys: number
  /** With `--repeat`: each turn's p50 (µs per request). */
  turns?: Array<{ cached: number; miss: number }>
  setupS: number
  heapMB: number
  cached: Figures
  miss: Figures
}

// Sums the duration of every GC pause reported since the observer started.
let gcMs = 0
let gcMajors = 0
let gcCount = 0
let scavenges = 0
let scavengeMs = 0
function observeGc() {
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcMs += e.duration
      gcCount++
      // detail.kind: NODE_PERFORMANCE_GC_MAJOR is 4 (mark-compact), _MINOR 1 (scavenge).
      const kind = (e as { detail?: { kind?: number } }).detail?.kind
      if (kind === 4) gcMajors++
      if (kind === 1) {
        scavenges++
        scavengeMs += e.duration
      }
    }
  })
  obs.observe({ entryTypes: ['gc'] })
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r))

function request(key: string): TollboothRequest {
  // A fresh header string per request, as a server's parser gives.
  return { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'POST', path: '/' }
}

async function one(tb: Tollbooth, route: ReturnType<Tollbooth['route']>, key: string) {
  const d = await tb.authenticate(request(key), route)
  if (!d.allowed) throw new Error(`bench request refused: ${JSON.stringify(d)}`)
  d.responseHeaders(200)
  await tb.settle(d, { status: 200 })
}

/**
 * Requests on keys drawn at random by a seeded generator (every run draws the same keys):
 * `run(n)` makes n of them, yielding to the event loop every 256.
 */
function traffic(tb: Tollbooth, route: ReturnType<Tollbooth['route']>, keys: string[]) {
  const pick = keyPicker(keys)
  const run = async (n: number) => {
    for (let i = 0; i < n; i += 256) {
      for (let j = 0; j < 256; j++) await one(tb, route, pick())
      await yieldToLoop()
    }
  }
  return { pick, run }
}

/** Rounds of `PER_ROUND` requests on random keys; yields to the event loop every 256. */
async function measure(
  tb: Tollbooth,
  route: ReturnType<Tollbooth['route']>,
  keys: string[],
): Promise<Figures> {
  const { pick, run } = traffic(tb, route, keys)
  const round = async (n: number) => {
    const start = performance.now()
    await run(n)
    return ((performance.now() - start) * 1000) / n
  }
  await round(Math.min(PER_ROUND, 10_000)) // warm up
  await yieldToLoop()
  // Bytes per request: the young generation's growth over 300 requests, in tries that no GC
  // entry interrupted (an entry arrives after its collection: a pause lets it land first).
  const young = () => getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')!
  const tries: number[] = []
  for (let t = 0; t < 30 && tries.length < 7; t++) {
    await new Promise((r) => setTimeout(r, 2))
    const count = gcCount
    const before = young().space_used_size
    for (let i = 0; i < 300; i++) await one(tb, route, pick())
    const after = young().space_used_size
    await new Promise((r) => setTimeout(r, 2))
    if (gcCount === count && after > before) tries.push((after - before) / 300)
  }
  const gc0 = gcMs
  const major0 = gcMajors
  const scav0 = scavenges
  const scavMs0 = scavengeMs
  const cpu0 = process.cpuUsage()
  const rounds: number[] = []
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(PER_ROUND))
  const cpu = process.cpuUsage(cpu0)
  await new Promise((r) => setTimeout(r, 50)) // let the last GC entries arrive
  return {
    rounds,
    cpuUs: (cpu.user + cpu.system) / (ROUNDS * PER_ROUND),
    gcUs: ((gcMs - gc0) * 1000) / (ROUNDS * PER_ROUND),
    majors: gcMajors - major0,
    allocBytes: tries.length > 0 ? quantile(tries, 0.5) : Number.NaN,
    scavengeMs: scavenges > scav0 ? (scavengeMs - scavMs0) / (scavenges - scav0) : Number.NaN,
  }
}

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  positionTicks?: Array<{ line: number; ticks: number }>
}

/** The seeded traffic warmed up (optimized code), and an inspector session to watch it with. */
async function inspected(tb: Tollbooth, route: ReturnType<Tollbooth['route']>, keys: string[]) {
  const { run } = traffic(tb, route, keys)
  await run(20_000)
  const session = new Session()
  session.connect()
  return { run, session }
}

/** The `TOP` largest of `m`, per request, with `digits` decimals, one per line. */
function top(m: Map<string, number>, digits: number): string {
  return [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([k, v]) => `${(v / PER_ROUND).toFixed(digits).padStart(7)}  ${k}`)
    .join('\n')
}

/** `--profile`: self time per request by function and by line (see the module's doc). */
async function profile(tb: Tollbooth, route: ReturnType<Tollbooth['route']>, keys: string[]) {
  const { run, session } = await inspected(tb, route, keys)
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 50 })
  await session.post('Profiler.start')
  const start = performance.now()
  await run(PER_ROUND)
  const wall = ((performance.now() - start) * 1000) / PER_ROUND
  const { profile } = (await session.post('Profiler.stop')) as unknown as {
    profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }
  }
  // µs per node: the time up to each sample is that sample's node's.
  const us = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!
    us.set(id, (us.get(id) ?? 0) + profile.timeDeltas[i]!)
  }
  const byFunction = new Map<string, number>()
  const byLine = new Map<string, number>()
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v)
  for (const node of profile.nodes) {
    const t = us.get(node.id) ?? 0
    const f = node.callFrame
    // Profiler.start's own work, sampled once at the start (it grows with the heap).
    if (f.functionName === 'dispatch' && f.url === '') continue
    const file = f.url.split('/').pop() ?? ''
    add(byFunction, `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`, t)
    const ticks = node.positionTicks ?? []
    const all = ticks.reduce((a, p) => a + p.ticks, 0)
    for (const p of ticks) add(byLine, `${file}:${p.line} ${f.functionName}`, (t * p.ticks) / all)
  }
  const sampled = [...byFunction.values()].reduce((a, b) => a + b, 0) / PER_ROUND
  console.log(
    `${keys.length} keys, ${PROFILE}: ${wall.toFixed(2)} µs/request profiled, ${sampled.toFixed(2)} sampled`,
  )
  console.log(`\nself µs per request, by function:\n${top(byFunction, 3)}`)
  console.log(`\nby line:\n${top(byLine, 3)}`)
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number }
  selfSize: number
  children: HeapNode[]
}

/**
 * `--profile alloc`: bytes allocated per cached request by function (the inspector's sampling
 * heap profiler, every 128 bytes, counting objects the collector has freed since), with the
 * function's callers: what a request leaves for the scavenger.
 */
async function allocations(
  tb: Tollbooth,
  route: ReturnType<Tollbooth['route']>,
  keys: string[],
  freed: boolean,
) {
  const { run, session } = await inspected(tb, route, keys)
  await session.post('HeapProfiler.enable')
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 128,
    includeObjectsCollectedByMajorGC: freed,
    includeObjectsCollectedByMinorGC: freed,
  })
  await run(PER_ROUND)
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
    profile: { head: HeapNode }
  }
  const byFunction = new Map<string, number>()
  const withCaller = new Map<string, number>()
  const name = (n: HeapNode) =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber + 1}`
  const walk = (n: HeapNode, caller: string) => {
    const me = name(n)
    if (n.selfSize > 0) {
      byFunction.set(me, (byFunction.get(me) ?? 0) + n.selfSize)
      const k = `${me}  <  ${caller}`
      withCaller.set(k, (withCaller.get(k) ?? 0) + n.selfSize)
    }
    for (const c of n.children) walk(c, me)
  }
  walk(profile.head, '')
  const total = [...byFunction.values()].reduce((a, b) => a + b, 0)
  console.log(
    `${keys.length} keys, ${process.argv.includes('--miss') ? 'miss' : 'cached'}: ${(total / PER_ROUND).toFixed(0)} bytes ${freed ? 'allocated' : 'allocated and still alive after the run'} per request (sampled)`,
  )
  console.log(`\nbytes per request, by function:\n${top(byFunction, 0)}`)
  console.log(`\nby function and caller:\n${top(withCaller, 0)}`)
}

async function runSize(n: number): Promise<SizeResult> {
  const t0 = performance.now()
  const storage = memoryStorage()
  const base = { secret: SECRET, storage, failedAuth: false as const, ...PLANS }
  const tb = createTollbooth({ ...base, cache: { ttlMs: 3_600_000, max: n } })
  const cold = createTollbooth({ ...base, cache: false })
  const route = tb.route(ROUTE)
  const coldRoute = cold.route(ROUTE)
  const keys: string[] = new Array(n)
  for (let i = 0; i < n; i++)
    keys[i] = (await tb.keys.create({ accountId: `acct_${i}`, limits: LIMITS })).key
  // Every key used once: its counters, account and cache entry exist.
  for (let i = 0; i < n; i++) {
    await one(tb, route, keys[i]!)
    if ((i & 255) === 255) await yieldToLoop()
  }
  await tb.flush()
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  const heapMB = process.memoryUsage().heapUsed / 2 ** 20
  const setupS = (performance.now() - t0) / 1000
  if (PROFILE === 'alloc' || PROFILE === 'retained') {
    const miss = process.argv.includes('--miss')
    await allocations(miss ? cold : tb, miss ? coldRoute : route, keys, PROFILE === 'alloc')
    process.exit(0)
  }
  if (PROFILE !== undefined) {
    await profile(PROFILE === 'miss' ? cold : tb, PROFILE === 'miss' ? coldRoute : route, keys)
    process.exit(0)
  }
  observeGc()
  const cached = await measure(tb, route, keys)
  const miss = await measure(cold, coldRoute, keys)
  await tb.close()
  await cold.close()
  return { keys: n, setupS, heapMB, cached, miss }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

/** One size's turns as one result: their rounds pooled, the other figures averaged. */
function pooled(turns: SizeResult[]): SizeResult {
  const figures = (p: 'cached' | 'miss'): Figures => {
    const fs = turns.map((t) => t[p])
    return {
      rounds: fs.flatMap((f) => f.rounds),
      cpuUs: mean(fs.map((f) => f.cpuUs)),
      gcUs: mean(fs.map((f) => f.gcUs)),
      majors: fs.reduce((a, f) => a + f.majors, 0),
      allocBytes: quantile(
        fs.map((f) => f.allocBytes),
        0.5,
      ),
      scavengeMs: mean(fs.map((f) => f.scavengeMs)),
    }
  }
  return {
    keys: turns[0]!.keys,
    setupS: mean(turns.map((t) => t.setupS)),
    heapMB: mean(turns.map((t) => t.heapMB)),
    cached: figures('cached'),
    miss: figures('miss'),
    turns: turns.map((t) => ({
      cached: quantile(t.cached.rounds, 0.5),
      miss: quantile(t.miss.rounds, 0.5),
    })),
  }
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

function describe(f: Figures): string[] {
  const min = Math.min(...f.rounds)
  const max = Math.max(...f.rounds)
  return [
    quantile(f.rounds, 0.5).toFixed(1),
    `${min.toFixed(1)}-${max.toFixed(1)} (${Math.round((max / min - 1) * 100)} %)`,
    f.cpuUs.toFixed(1),
    f.gcUs.toFixed(2),
    String(f.majors),
    (f.allocBytes / 1024).toFixed(1),
    f.scavengeMs.toFixed(1),
  ]
}

async function main() {
  const oneAt = process.argv.indexOf('--one')
  if (oneAt > 0) {
    const r = await runSize(Number(process.argv[oneAt + 1]))
    console.log(JSON.stringify(r))
    return
  }
  const sizes = (process.argv[2]?.startsWith('--') ? undefined : process.argv[2])
    ?.split(',')
    .map(Number) ?? [1_000, 100_000, 1_000_000]
  const self = fileURLToPath(import.meta.url)
  // Each size's results, one per turn.
  const turns = new Map<number, SizeResult[]>(sizes.map((n) => [n, []]))
  for (let turn = 0; turn < REPEAT; turn++)
    for (const n of sizes) {
      process.stderr.write(`memory-scale: ${n} keys${REPEAT > 1 ? ` (turn ${turn + 1})` : ''}…\n`)
      const out = execFileSync(
        process.execPath,
        [
          '--expose-gc',
          '--max-old-space-size=8192',
          '--import',
          'tsx',
          self,
          '--one',
          String(n),
          '--rounds',
          String(ROUNDS),
          '--per-round',
          String(PER_ROUND),
        ],
        { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] },
      )
      turns.get(n)!.push(JSON.parse(out.trim().split('\n').pop()!) as SizeResult)
    }
  const results = sizes.map((n) => pooled(turns.get(n)!))
  console.log(
    `memory store at scale: awaited authenticate() + settle() on random keys (each key: per-minute rate limit, daily quota, cost 1 against plan credits, its own account), node ${process.version}, ${ROUNDS} rounds x ${PER_ROUND.toLocaleString('en-US')} requests${REPEAT > 1 ? `, each size in ${REPEAT} processes taking turns (rounds pooled)` : ''}`,
  )
  console.log('')
  console.log(
    '| keys | heap MB | path | µs/req p50 | rounds min-max (spread) | CPU µs/req | GC pauses µs/req | mark-compacts | kB allocated/req | ms/scavenge |',
  )
  console.log('|---:|---:|---|---:|---|---:|---:|---:|---:|---:|')
  for (const r of results)
    for (const [path, f] of [
      ['cached', r.cached],
      ['miss', r.miss],
    ] as const)
      console.log(
        `| ${r.keys.toLocaleString('en-US')} | ${Math.round(r.heapMB)} | ${path} | ${describe(f).join(' | ')} |`,
      )
  const first = results[0]!
  const last = results[results.length - 1]!
  if (results.length > 1) {
    const ratio = (p: 'cached' | 'miss') =>
      quantile(last[p].rounds, 0.5) / quantile(first[p].rounds, 0.5)
    const cpu = (p: 'cached' | 'miss') => last[p].cpuUs / first[p].cpuUs
    const c = ratio('cached')
    const m = ratio('miss')
    console.log('')
    console.log(
      `${last.keys.toLocaleString('en-US')} keys / ${first.keys.toLocaleString('en-US')} keys: cached ${c.toFixed(2)} (CPU ${cpu('cached').toFixed(2)}), miss ${m.toFixed(2)} (CPU ${cpu('miss').toFixed(2)}) by the p50 (target <= 1.5: ${c <= 1.5 && m <= 1.5 ? 'met' : 'missed'})`,
    )
    if (REPEAT > 1) {
      const each = (p: 'cached' | 'miss') =>
        last.turns!.map((t, i) => (t[p] / first.turns![i]![p]).toFixed(2)).join(', ')
      console.log(`each turn's ratio: cached ${each('cached')}; miss ${each('miss')}`)
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
