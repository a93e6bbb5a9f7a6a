/**
 * @module bench/slab-scale
 *
 * A floor for issue 22's memory-store target (a request among 1,000,000 keys within 1.5× of
 * one among 1,000), measured apart from tollbooth: what a request would cost if every key's
 * state lived in typed-array rows (off the V8 heap) reached from one `Map` of key strings, as
 * bench/NOTES.md (sessions 11 and 13) proposes. Per request: a fresh key string looked up in
 * the map, a key row read (active, expiry, account row), a GCRA rate limit, a rolling daily
 * window of 24 hourly buckets, a credit reservation on the account's row and its settle (the
 * charge, the account's hour tally, the key's `lastUsedAt`), and `--garbage` bytes of
 * short-lived objects standing for the rest of the pipeline (tollbooth allocates ~6.5 kB a
 * cached request, bench/RESULTS.md). The rows are checked: a request refused by them throws.
 *
 * With `--memo` the key's row is found through the key cache's memo (`src/key-memo`: an
 * open-addressing index off the heap, the key's characters in a row beside it) in place of the
 * `Map`: the lookup the cached path makes today, with every row it reaches off the heap too.
 *
 * `--parts 0` times the loop alone (what of the growth is the bench's own: its stored key
 * read cold), and `--ballast B` gives each key B bytes of small heap objects no request reads
 * (tollbooth's heap is about 1.8 kB a key, much of it never read by a cached request).
 *
 *   node --expose-gc --max-old-space-size=8192 --import tsx bench/slab-scale.ts \
 *     [sizes=1000,1000000] [--parts 4] [--garbage 4096] [--ballast 0] [--rounds 5] [--memo]
 */

import { PerformanceObserver } from 'node:perf_hooks'
import { KeyMemo } from '../src/key-memo.js'
import { keyPicker } from './scale-job.js'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const GARBAGE = arg('--garbage', 4096)
const ROUNDS = arg('--rounds', 5)
const PER_ROUND = 200_000
/**
 * Which parts a request runs: 0 none (the loop alone: a stored key drawn, its header made),
 * 1 the map, 2 + the key row, 3 + the window, 4 + the account.
 */
const PARTS = arg('--parts', 4)
/**
 * Bytes of small objects each key keeps on the V8 heap that no request reads (as tollbooth's
 * key records, cache entries and templates are, for the part of a request that does not touch
 * them): the heap's size alone, which every scavenge walks.
 */
const BALLAST = arg('--ballast', 0)
/** Keys found through the key cache's memo rather than a `Map`. */
const MEMO = process.argv.includes('--memo')
/** Short-lived objects are kept in a ring of this many, so the compiler cannot elide them. */
const KEEP = 64
const HOUR = 3_600_000
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

// Key row: active, expiresAt, account row, GCRA theoretical arrival time, lastUsedAt.
const K = 5
// Window row: 24 hourly buckets, the hour of bucket 0's last write per bucket, total.
const W = 49
// Account row: credits used, credits held, tally hour, tally requests, tally units.
const A = 5

let gcMs = 0
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration
}).observe({ entryTypes: ['gc'] })

function randomKey(): string {
  let s = 'tb_live_'
  for (let i = 0; i < 32; i++) s += ALPHABET[(Math.random() * 62) | 0]
  return s
}

async function run(n: number) {
  const keys: string[] = new Array(n)
  const rows: { get(key: string): number | undefined; set(key: string, row: number): void } = MEMO
    ? new KeyMemo<number>(n)
    : new Map<string, number>()
  for (let i = 0; i < n; i++) {
    // Flat strings, as tollbooth keeps its names (bench/NOTES.md, session 11).
    keys[i] = randomKey().split('').join('')
    rows.set(keys[i]!, i)
  }
  // About 40 bytes an object (its header, three fields, the double's box).
  const ballast: unknown[] = []
  if (BALLAST > 0)
    for (let i = 0; i < n; i++) {
      const objs: unknown[] = []
      for (let b = 40; b <= BALLAST; b += 40) objs.push({ a: i, b: b + 0.5, c: null })
      ballast.push(objs)
    }
  const key = new Float64Array(n * K)
  const win = new Float64Array(n * W)
  const acct = new Float64Array(n * A)
  for (let i = 0; i < n; i++) {
    key[i * K] = 1
    key[i * K + 1] = Number.POSITIVE_INFINITY
    key[i * K + 2] = i
  }
  const rate = { limit: 1e9, windowMs: 60_000 }
  const daily = 1e9
  const credits = 1e12
  let now = Date.UTC(2026, 11, 5)
  let sink = 0
  const kept: object[][] = new Array(KEEP)
  let at = 0
  // The rest of the pipeline's short-lived objects (a 6-field object is ~64 bytes with its slot).
  const garbage = (header: string) => {
    const junk: object[] = new Array(GARBAGE >> 6)
    for (let j = 0; j < junk.length; j++) junk[j] = { a: j, b: header, c: null, d: now }
    kept[at] = junk
    at = at + 1 === KEEP ? 0 : at + 1
    sink += junk.length
  }
  const request = (k: string) => {
    // What a server's parser gives: a fresh string per request.
    const header = `Bearer ${k}`
    if (PARTS === 0) {
      if (header.length < 8) throw new Error('unknown key')
      garbage(header)
      return
    }
    const r = rows.get(header.slice(7))
    if (r === undefined) throw new Error('unknown key')
    const kr = r * K
    if (PARTS === 1) {
      garbage(header)
      return
    }
    if (key[kr] !== 1 || key[kr + 1]! <= now) throw new Error('inactive')
    const ar = key[kr + 2]! * A
    // GCRA: emission interval windowMs / limit, burst of the limit.
    const t = rate.windowMs / rate.limit
    const tat = Math.max(key[kr + 3]!, now)
    if (tat - now > rate.windowMs - t) throw new Error('rate')
    // Rolling day of 24 hourly buckets: stale buckets count 0.
    const wr = r * W
    const hour = now - (now % HOUR)
    if (PARTS === 2) {
      key[kr + 3] = tat + t
      garbage(header)
      key[kr + 4] = now
      return
    }
    let used = 0
    for (let b = 0; b < 24; b++) if (win[wr + 24 + b]! > hour - 24 * HOUR) used += win[wr + b]!
    if (used + 1 > daily) throw new Error('quota')
    const estimate = 1
    if (PARTS === 3) {
      key[kr + 3] = tat + t
      win[wr + ((hour / HOUR) % 24)]!++
      win[wr + 24 + ((hour / HOUR) % 24)] = hour
      garbage(header)
      key[kr + 4] = now
      return
    }
    if (acct[ar]! + acct[ar + 1]! + estimate > credits) throw new Error('credits')
    key[kr + 3] = tat + t
    const slot = (hour / HOUR) % 24
    if (win[wr + 24 + slot] !== hour) {
      win[wr + slot] = 0
      win[wr + 24 + slot] = hour
    }
    win[wr + slot]!++
    acct[ar + 1]! += estimate
    garbage(header)
    // Settle: the hold released, the charge, the tally, lastUsedAt.
    acct[ar + 1]! -= estimate
    acct[ar]! += 1
    if (acct[ar + 2] !== hour) {
      acct[ar + 2] = hour
      acct[ar + 3] = 0
      acct[ar + 4] = 0
    }
    acct[ar + 3]!++
    acct[ar + 4]! += 1
    key[kr + 4] = now
  }
  const pick = keyPicker(keys)
  const round = () => {
    const start = performance.now()
    for (let i = 0; i < PER_ROUND; i++) {
      now += 1
      request(pick())
    }
    return ((performance.now() - start) * 1000) / PER_ROUND
  }
  round()
  ;(globalThis as { gc?: () => void }).gc?.()
  const heapMB = process.memoryUsage().heapUsed / 2 ** 20
  const gc0 = gcMs
  const rounds: number[] = []
  for (let i = 0; i < ROUNDS; i++) rounds.push(round())
  // The observer's entries arrive on the event loop, after the synchronous rounds.
  await new Promise((r) => setTimeout(r, 50))
  rounds.sort((a, b) => a - b)
  return {
    n,
    heapMB,
    p50: rounds[rounds.length >> 1]!,
    gcUs: ((gcMs - gc0) * 1000) / (ROUNDS * PER_ROUND),
    sink: sink + ballast.length,
  }
}

const sizes = (process.argv[2]?.startsWith('--') ? undefined : process.argv[2]) ?? '1000,1000000'
const results = []
for (const s of sizes.split(',')) results.push(await run(Number(s)))
console.log(
  `slab floor: parts ${PARTS}, keys found by ${MEMO ? 'the key memo' : 'a Map'}, ${GARBAGE} bytes of garbage per request, ${BALLAST} bytes of ballast a key, ${ROUNDS} rounds x ${PER_ROUND}`,
)
console.log('| keys | V8 heap MB | µs/req p50 | GC µs/req |')
console.log('|---:|---:|---:|---:|')
for (const r of results)
  console.log(
    `| ${r.n.toLocaleString('en')} | ${r.heapMB.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.gcUs.toFixed(2)} |`,
  )
console.log(`ratio ${(results.at(-1)!.p50 / results[0]!.p50).toFixed(2)}`)
