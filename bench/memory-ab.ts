/**
 * @module bench/memory-ab
 *
 * Two builds of the package in one process, the memory store's cached request timed in
 * alternating rounds: a difference under a microsecond among a million keys, which separate
 * processes cannot resolve on a shared VM (one build's `bench/memory-scale.ts` runs spread by
 * half within minutes: bench/NOTES.md, session 24), shows here as the rounds' paired
 * differences. Each build gets its own store of N keys (as `memory-scale`'s: a per-minute rate
 * limit, a daily quota and a cost of 1 against plan credits, each on its own account), made
 * key by key in turns so both heaps are laid out alike, and each key used once. Then rounds of
 * awaited `authenticate()` + `settle()` on random keys, A then B, then B then A, and so on.
 *
 * Both stores share one heap (twice `memory-scale`'s), so every scavenge walks both, and each
 * build's figures are higher than alone: compare the two, not either with `memory-scale`.
 *
 *   npm run build && cp -r dist .tmp/dist-b   (and the other build in .tmp/dist-a)
 *   node --expose-gc --max-old-space-size=12288 --import tsx bench/memory-ab.ts \
 *     .tmp/dist-a .tmp/dist-b [keys=1000000] [--rounds 12] [--per-round 20000]
 *
 * Prints each build's median µs a request and the median of the rounds' differences (B − A),
 * with its interquartile range, for all rounds and for each order apart (the build measured
 * second in a pair pays for some of the first's garbage). Checked with a known cost: a build
 * spinning 0.5 µs a request read +0.79 µs, slower in 37 of 40 rounds (bench/NOTES.md, session
 * 24).
 */

import type { Tollbooth } from '../src/index.js'
import { SCALE_LIMITS, scaleRequest, scaleTollbooth } from './scale-job.js'

const [dirA, dirB] = process.argv.slice(2, 4)
if (!dirA || !dirB) throw new Error('usage: memory-ab.ts <dist A> <dist B> [keys] [--rounds R]')
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const N = Number(process.argv[4]?.startsWith('--') ? 1_000_000 : (process.argv[4] ?? 1_000_000))
const ROUNDS = arg('--rounds', 12)
const PER_ROUND = arg('--per-round', 20_000)

interface Build {
  name: string
  tb: Tollbooth
  route: ReturnType<Tollbooth['route']>
  keys: string[]
  rounds: number[]
}

async function build(name: string, dir: string): Promise<Build> {
  const tb = await scaleTollbooth(dir, N)
  return { name, tb, route: tb.route({ cost: 1 }), keys: new Array<string>(N), rounds: [] }
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r))

const one = (b: Build, key: string) => scaleRequest(b.tb, b.route, key)

/** µs a request over `n` requests on keys drawn by `seed` (the same draws for both builds). */
async function round(b: Build, n: number, seed: number): Promise<number> {
  let s = seed
  const start = performance.now()
  for (let i = 0; i < n; i += 256) {
    for (let j = 0; j < 256; j++) {
      s ^= s << 13
      s ^= s >>> 17
      s ^= s << 5
      await one(b, b.keys[(s >>> 0) % N]!)
    }
    await yieldToLoop()
  }
  return ((performance.now() - start) * 1000) / n
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

const builds = [await build('A', dirA), await build('B', dirB)]
// Key by key in turns, then each key used once, so both heaps hold the same objects in the
// same order of age.
for (let i = 0; i < N; i++)
  for (const b of builds)
    b.keys[i] = (await b.tb.keys.create({ accountId: `acct_${i}`, limits: SCALE_LIMITS })).key
for (let i = 0; i < N; i++) {
  for (const b of builds) await one(b, b.keys[i]!)
  if ((i & 255) === 255) await yieldToLoop()
}
for (const b of builds) await b.tb.flush()
;(globalThis as { gc?: () => void }).gc?.()
for (const b of builds) await round(b, Math.min(PER_ROUND, 10_000), 0x1234567) // warm up
const diffs: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  const seed = (0x2545f491 + r * 0x9e3779b9) | 0 || 1
  const order = r % 2 === 0 ? builds : [builds[1]!, builds[0]!]
  for (const b of order) b.rounds.push(await round(b, PER_ROUND, seed))
  diffs.push(builds[1]!.rounds[r]! - builds[0]!.rounds[r]!)
}
for (const b of builds) await b.tb.close()
const heapMB = process.memoryUsage().heapUsed / 2 ** 20
console.log(
  `memory-ab: ${N.toLocaleString('en-US')} keys a build, ${ROUNDS} rounds x ${PER_ROUND} cached requests, heap ${heapMB.toFixed(0)} MB`,
)
for (const [b, dir] of [
  [builds[0]!, dirA],
  [builds[1]!, dirB],
] as const)
  console.log(
    `${b.name} (${dir}): ${quantile(b.rounds, 0.5).toFixed(2)} µs/request p50, rounds ${Math.min(...b.rounds).toFixed(2)}-${Math.max(...b.rounds).toFixed(2)}`,
  )
const summary = (ds: number[]) =>
  `${quantile(ds, 0.5).toFixed(2)} µs/request p50 of ${ds.length} rounds' differences, interquartile ${quantile(ds, 0.25).toFixed(2)} to ${quantile(ds, 0.75).toFixed(2)}, B slower in ${ds.filter((d) => d > 0).length}`
console.log(`B - A: ${summary(diffs)}`)
// Each order apart: a build measured second may pay for the first's garbage (its scavenges).
console.log(`  A first: ${summary(diffs.filter((_, r) => r % 2 === 0))}`)
console.log(`  B first: ${summary(diffs.filter((_, r) => r % 2 === 1))}`)
