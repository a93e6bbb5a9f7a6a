/**
 * @module bench/request-bytes
 *
 * What a cached request allocates on the memory store, by part of the job: the same request
 * (awaited `authenticate()` + `responseHeaders(200)` + `settle()`, as `bench/scale-job.ts`'s)
 * on keys with no limits, a rate limit alone, a daily quota alone, credits alone (a route cost
 * of 1 against plan credits), and all three. Each figure is exact, not sampled: the young
 * generation's growth over 300 requests that no collection interrupted, the median of nine
 * tries, after 60,000 requests of warm-up (1,000 keys, each on its own account). Every byte a
 * request allocates brings the next scavenge nearer, and among a million keys each scavenge
 * walks the whole old generation (bench/NOTES.md, sessions 17-18 and 28).
 *
 *   npm run build && npx tsx bench/request-bytes.ts [dist] [part] [--sample]
 *
 * With a part (`none`, `rate`, `quota`, `credits`, `all`) only that one runs; `--sample` also
 * prints where its bytes are allocated, by function and caller (the inspector's sampling heap
 * profiler, every 32 bytes, collected objects included), for 100,000 more requests.
 */

import { Session } from 'node:inspector/promises'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { getHeapSpaceStatistics } from 'node:v8'
import type { Tollbooth } from '../src/index.js'
import { keyPicker, scaleRequest } from './scale-job.js'

type Lib = typeof import('../src/index.js')

const dir = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : 'dist'
const only = process.argv[3] && !process.argv[3].startsWith('--') ? process.argv[3] : undefined
const SAMPLE = process.argv.includes('--sample')
const lib = (await import(pathToFileURL(resolve(dir, 'index.js')).href)) as Lib

const HIGH = 1_000_000_000
const RATE = { rateLimits: [{ limit: HIGH, windowMs: 60_000 }] }
const QUOTA = { quotas: { daily: HIGH } }
const PARTS: Record<string, { limits?: object; metered: boolean }> = {
  none: { metered: false },
  rate: { limits: RATE, metered: false },
  quota: { limits: QUOTA, metered: false },
  credits: { metered: true },
  all: { limits: { ...RATE, ...QUOTA }, metered: true },
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number }
  selfSize: number
  children: HeapNode[]
}

const young = () =>
  getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')!.space_used_size

async function part(name: string, p: { limits?: object; metered: boolean }) {
  const tb: Tollbooth = lib.createTollbooth({
    secret: 'memory-scale-secret-memory-scale-secret-01',
    storage: lib.memoryStorage(),
    failedAuth: false,
    ...(p.metered ? { plans: { pro: { monthlyCredits: HIGH } }, defaultTier: 'pro' } : {}),
    cache: { ttlMs: 3_600_000, max: 2_000 },
  })
  const route = tb.route(p.metered ? { cost: 1 } : {})
  const keys: string[] = []
  for (let i = 0; i < 1_000; i++) {
    const created = await tb.keys.create({
      accountId: `acct_${i}`,
      ...(p.limits ? { limits: p.limits } : {}),
    })
    keys.push(created.key)
  }
  const pick = keyPicker(keys)
  const one = (key: string) => scaleRequest(tb, route, key)
  for (let i = 0; i < 60_000; i++) await one(pick())
  const tries: number[] = []
  for (let t = 0; t < 40 && tries.length < 9; t++) {
    await new Promise((r) => setImmediate(r))
    const before = young()
    for (let i = 0; i < 300; i++) await one(pick())
    const after = young()
    // A scavenge in between shrinks the young generation: that try is dropped.
    if (after > before) tries.push((after - before) / 300)
  }
  tries.sort((a, b) => a - b)
  console.log(`| ${name} | ${Math.round(tries[tries.length >> 1]!)} |`)
  if (SAMPLE) await sample(() => one(pick()))
  await tb.close()
}

async function sample(one: () => Promise<void>) {
  const session = new Session()
  session.connect()
  await session.post('HeapProfiler.enable')
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 32,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  })
  const n = 100_000
  for (let i = 0; i < n; i++) await one()
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
    profile: { head: HeapNode }
  }
  session.disconnect()
  const by = new Map<string, number>()
  const walk = (node: HeapNode, caller: string) => {
    const f = node.callFrame
    const me = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`
    if (node.selfSize > 0)
      by.set(`${me}  <  ${caller}`, (by.get(`${me}  <  ${caller}`) ?? 0) + node.selfSize)
    for (const c of node.children) walk(c, me)
  }
  walk(profile.head, '')
  const rows = [...by].sort((a, b) => b[1] - a[1]).filter(([, v]) => v / n >= 8)
  console.log('\nbytes a request, by function and caller (sampled):')
  for (const [k, v] of rows) console.log(`${(v / n).toFixed(0).padStart(7)}  ${k}`)
  console.log('')
}

console.log(`bytes allocated by a cached request (memory store, ${dir}), by part of the job\n`)
console.log('| part | bytes a request |')
console.log('|---|---:|')
for (const [name, p] of Object.entries(PARTS)) if (!only || only === name) await part(name, p)
