/**
 * @module bench/request-instructions
 *
 * The memory store's cached request in instructions, which unlike µs do not move with this
 * VM's load: a build's request is run under `valgrind --tool=callgrind` twice, for a short and
 * a long run of the same requests, and the difference of the two totals divided by the
 * difference of their lengths is what a request costs, startup and warm-up subtracted. Split
 * by where the instructions ran (callgrind's symbols in the node binary): the JIT's code,
 * V8's builtins, the collector, libc, the optimizing compiler, the rest of the runtime.
 *
 * How far to trust it (bench/NOTES.md, session 26): "code" (the JIT's code and the builtins,
 * what the request's own JavaScript runs) came within 1-2.5 % for two runs of one build (one
 * build read 29,606 and 30,362); the collector's part moved by 1,600 a request between two runs
 * (whether a long run met one more full collection) and the runtime's by up to 1,300, and the
 * compiler's is not
 * the request's at all (what the compiler threads still had to do). So compare two builds by
 * "code", and by the collector's part only when the difference is large; either is far
 * steadier than µs here, where two builds in one process (`bench/memory-ab.ts`) still read
 * ±0.3 µs of bias and spread a request. `node --predictable` was no steadier.
 *
 * The request is `bench/scale-job.ts`'s (`bench/memory-scale.ts`'s): awaited `authenticate()`
 * + `settle()`, each key with a per-minute rate limit, a daily quota and a cost of 1 against
 * plan credits, on its own account, keys taken in a fixed stride. Builds are `dist/` directories (`npm run build`, then
 * copied aside); each build's two runs go in parallel with the other build's.
 *
 *   npx tsx bench/request-instructions.ts .tmp/dist-a [.tmp/dist-b] [--keys 1000]
 *     [--short 20000] [--long 120000] [--cache]
 *
 * `--cache` also simulates the caches (callgrind's `--cache-sim=yes`: 32 kB first-level data
 * cache, a 32 MB last level, 64-byte lines, no prefetching) and prints the data reads and
 * writes a request misses in each, outside the collector and the compiler (whose share
 * depends on whether a run met one more collection): among more keys than the last level holds (`--keys 100000`
 * is 160 MB of heap), a last-level miss is a cold line of the request's, the cost that grows
 * with the store (bench/NOTES.md, session 27). Runs take about twice as long.
 *
 * `--top N` also lists, per build, the N functions outside the JIT's code a request spends most
 * instructions in (V8's builtins by name, such as `LoadIC_Megamorphic` for a property load the
 * optimized code could not inline; runtime and collector functions), the JIT's code as one line.
 *
 * About four minutes for two builds on this VM (valgrind runs node ~50× slower). Needs
 * valgrind (`apt-get install -y valgrind`), `callgrind_annotate` and `callgrind_control`. A run
 * sets up its keys uninstrumented (`--instr-atstart=no`) and is instrumented from its first
 * request on.
 */

import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SCALE_LIMITS, scaleRequest, scaleTollbooth } from './scale-job.js'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}

if (process.argv[2] === '--child') {
  // One run, under valgrind: `--child <dist> <keys> <requests>`.
  const [dir, keysArg, requestsArg] = process.argv.slice(3)
  const N = Number(keysArg)
  const tb = await scaleTollbooth(dir!, N)
  const route = tb.route({ cost: 1 })
  const keys: string[] = []
  for (let i = 0; i < N; i++)
    keys.push((await tb.keys.create({ accountId: `acct_${i}`, limits: SCALE_LIMITS })).key)
  // Set up: the parent turns callgrind's instrumentation on (`callgrind_control -i on`), then
  // says go. Callgrind reads such a command only while the program runs code: a timer keeps
  // the loop turning meanwhile.
  process.stdout.write('ready\n')
  await new Promise<void>((go) => {
    const spin = setInterval(() => {}, 5)
    process.stdin.once('data', () => {
      clearInterval(spin)
      go()
    })
  })
  const requests = Number(requestsArg)
  for (let i = 0; i < requests; i++) await scaleRequest(tb, route, keys[(i * 7919) % N]!)
  await tb.close()
  process.exit(0)
}

const builds = process.argv
  .slice(2)
  .filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'))
if (builds.length === 0)
  throw new Error(
    'usage: request-instructions.ts <dist A> [dist B] [--keys N] [--short N] [--long N]',
  )
const KEYS = arg('--keys', 1000)
const SHORT = arg('--short', 20_000)
const LONG = arg('--long', 120_000)
const CACHE = process.argv.includes('--cache')
const TOP = arg('--top', 0)
const PARTS = ['jit', 'builtins', 'gc', 'libc', 'runtime', 'compiler'] as const
type Part = (typeof PARTS)[number]
/** The simulated caches' misses, by callgrind's event names (data reads, data writes). */
const MISSES = ['D1mr', 'D1mw', 'DLmr', 'DLmw'] as const
type Miss = (typeof MISSES)[number]
type Run = Record<Part, number> &
  Partial<Record<Miss, number>> & {
    /** Instructions by function (the JIT's code as one). */
    byFunction: Map<string, number>
  }

/** Where a callgrind function line's instructions ran. */
function partOf(fn: string): Part {
  if (/compiler::|maglev|turboshaft/i.test(fn)) return 'compiler'
  if (fn.startsWith('???:0x')) return 'jit'
  if (fn.includes('Builtins_')) return 'builtins'
  if (/Scaveng|heap::|Heap|MarkCompact|Sweep|GCTracer/.test(fn)) return 'gc'
  if (fn.includes('libc')) return 'libc'
  return 'runtime'
}

/** One run's instructions by part. */
async function run(dir: string, requests: number, out: string): Promise<Run> {
  const file = join(out, `cg.${requests}`)
  await new Promise<void>((done, fail) => {
    const p = spawn(
      'valgrind',
      [
        '--tool=callgrind',
        '--smc-check=all',
        // Not instrumented while it sets up (its keys): several times faster, so a run can
        // hold more keys; turned on below, before the first request.
        '--instr-atstart=no',
        ...(CACHE ? ['--cache-sim=yes', '--D1=32768,8,64', '--LL=33554432,16,64'] : []),
        `--callgrind-out-file=${file}`,
        process.execPath,
        '--import',
        'tsx',
        'bench/request-instructions.ts',
        '--child',
        dir,
        String(KEYS),
        String(requests),
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    let out = ''
    p.stdout.on('data', (b: Buffer) => {
      out += b.toString()
      if (!out.includes('ready\n')) return
      out = ''
      const on = spawn('callgrind_control', ['-i', 'on', String(p.pid)], { stdio: 'ignore' })
      on.on('exit', (code) => {
        if (code === 0) p.stdin.write('go\n')
        else p.kill()
      })
    })
    let err = ''
    p.stderr.on('data', (b: Buffer) => {
      err += b.toString()
    })
    p.on('exit', (code) =>
      code === 0 ? done() : fail(new Error(`valgrind exited ${code}: ${err.slice(-2000)}`)),
    )
  })
  const show = CACHE ? ['Ir', ...MISSES] : ['Ir']
  const text = execFileSync(
    'callgrind_annotate',
    ['--threshold=100', `--show=${show.join(',')}`, file],
    { encoding: 'utf8', maxBuffer: 1 << 28 },
  )
  const parts = {
    ...Object.fromEntries(PARTS.map((p) => [p, 0])),
    byFunction: new Map<string, number>(),
  } as Run
  for (const e of CACHE ? MISSES : []) parts[e] = 0
  // A function's line: each event's count (`.` for none), with its share in parentheses, then
  // the function. Misses are counted outside the collector and the compiler (the request's).
  const cell = /\s*(\.|[\d,]+)(?:\s+\(\s*[\d.]+%\))?/y
  const from = text.indexOf('file:function')
  for (const line of text.slice(from).split('\n')) {
    const values: number[] = []
    cell.lastIndex = 0
    for (let k = 0; k < show.length; k++) {
      const m = cell.exec(line)
      if (!m) break
      values.push(m[1] === '.' ? 0 : Number(m[1]!.replaceAll(',', '')))
    }
    if (values.length < show.length) continue
    const fn = line.slice(cell.lastIndex).trim()
    const part = partOf(fn)
    parts[part] += values[0]!
    // A function line is `file:function [object]`: the function alone, the JIT's code as one.
    const name =
      part === 'jit' ? "(the JIT's code)" : fn.replace(/^[^:]*:/, '').replace(/ \[.*\]$/, '')
    parts.byFunction.set(name, (parts.byFunction.get(name) ?? 0) + values[0]!)
    if (part === 'gc' || part === 'compiler') continue
    MISSES.forEach((e, k) => {
      if (CACHE) parts[e]! += values[k + 1]!
    })
  }
  return parts
}

async function measure(dir: string): Promise<Run> {
  const out = mkdtempSync(join(tmpdir(), 'tb-instr-'))
  try {
    const short = await run(dir, SHORT, out)
    const long = await run(dir, LONG, out)
    const per = { byFunction: new Map() } as Run
    for (const p of [...PARTS, ...(CACHE ? MISSES : [])])
      per[p] = (long[p]! - short[p]!) / (LONG - SHORT)
    for (const [name, n] of long.byFunction)
      per.byFunction.set(name, (n - (short.byFunction.get(name) ?? 0)) / (LONG - SHORT))
    return per
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}

console.log(
  `request-instructions: ${KEYS.toLocaleString('en-US')} keys, (${LONG.toLocaleString('en-US')} - ${SHORT.toLocaleString('en-US')}) cached requests under callgrind; instructions a request`,
)
const results = await Promise.all(builds.map((b) => measure(b)))
const f = (n: number) => Math.round(n).toLocaleString('en-US')
console.log('')
console.log(`| build | code | ${PARTS.join(' | ')} | in all |`)
console.log(`|---|---:|${PARTS.map(() => '---:').join('|')}|---:|`)
builds.forEach((b, i) => {
  const r = results[i]!
  const all = PARTS.reduce((s, p) => s + r[p], 0)
  console.log(
    `| ${b} | ${f(r.jit + r.builtins)} | ${PARTS.map((p) => f(r[p])).join(' | ')} | ${f(all)} |`,
  )
})
if (CACHE) {
  const g = (n: number) => n.toFixed(1)
  console.log('')
  console.log(
    'Simulated cache misses a request outside the collector and the compiler (data reads, writes; the last level is 32 MB):',
  )
  console.log('')
  console.log(
    '| build | first level, reads | first level, writes | last level, reads | last level, writes |',
  )
  console.log('|---|---:|---:|---:|---:|')
  builds.forEach((b, i) => {
    const r = results[i]!
    console.log(`| ${b} | ${MISSES.map((m) => g(r[m]!)).join(' | ')} |`)
  })
}
if (TOP > 0)
  builds.forEach((b, i) => {
    console.log('')
    console.log(`${b}: the ${TOP} functions a request spends most instructions in`)
    console.log('')
    console.log('| function | instructions a request |')
    console.log('|---|---:|')
    const top = [...results[i]!.byFunction].sort((x, y) => y[1] - x[1]).slice(0, TOP)
    for (const [name, n] of top) console.log(`| \`${name}\` | ${f(n)} |`)
  })
