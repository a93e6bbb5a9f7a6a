/**
 * @module bench/profile
 *
 * `npx tsx bench/profile.ts <framework|path.ts|path.mjs> <variant> [seconds=5]`: runs one benchmark
 * server under `node --cpu-prof`, loads one variant with wrk (or autocannon) from another core,
 * and prints the server's self time per function and per file, in µs per request. How the
 * hot path's costs in bench/NOTES.md were found; compare two variants by running it twice.
 * The storage variants (tollbooth-redis, peer-redis, tollbooth-postgres) need
 * BENCH_VARIANTS=storage and REDIS_URL / DATABASE_URL. A `.mjs` server runs without tsx: one
 * that imports the built package (`dist/`) gets its functions' lines in the profile (through
 * tsx every function of `src/` reports line 1).
 */

import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadOnce, tools } from './http.js'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
}

const [target = 'hono', variant = 'tollbooth', secs = '5'] = process.argv.slice(2)
const script = /\.(ts|mjs)$/.test(target) ? target : `bench/servers/${target}.ts`
const dir = mkdtempSync(join(tmpdir(), 'tb-prof-'))
const args = [
  '--cpu-prof',
  '--cpu-prof-dir',
  dir,
  ...(script.endsWith('.mjs') ? [] : ['--import', 'tsx']),
  script,
]
const child = tools.taskset
  ? spawn('taskset', ['-c', '0', process.execPath, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
  : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
const info: { pid: number; ports: Record<string, number>; key: string } = await new Promise(
  (resolve) => {
    let out = ''
    child.stdout!.on('data', (d) => {
      out += d
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (line) resolve(JSON.parse(line))
    })
  },
)
const url = `http://127.0.0.1:${info.ports[variant]}/hello`
await loadOnce(url, info.key, 2, 32) // warm up
const r = await loadOnce(url, info.key, Number(secs), 32)
child.kill('SIGTERM')
await new Promise((resolve) => child.on('exit', resolve))
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!
const p = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile

// Only the loaded window matters, but the warm-up and start are short next to it: the
// per-request figures below divide the whole profile's time by the measured requests.
const self = new Map<number, number>()
for (let i = 0; i < p.samples.length; i++)
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0))
const byFn = new Map<string, number>()
const byFile = new Map<string, number>()
for (const n of p.nodes) {
  const t = self.get(n.id) ?? 0
  if (!t) continue
  const f = n.callFrame
  const file =
    f.url
      .replace(/^.*node_modules\//, '')
      .replace(/^file:\/\/.*?\/(src|adapters|bench)\//, '$1/') || '(native)'
  const fn = `${f.functionName || '(anon)'} ${file}:${f.lineNumber + 1}`
  byFn.set(fn, (byFn.get(fn) ?? 0) + t)
  const bucket = file.startsWith('node:') ? file : file.split('/').slice(0, 2).join('/')
  byFile.set(bucket, (byFile.get(bucket) ?? 0) + t)
}
const total = r.requests + 2 * r.rps // the warm-up's requests, approximately
const show = (m: Map<string, number>, n: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${(v / total).toFixed(2).padStart(7)} µs  ${k}`)
    .join('\n')
console.log(`${variant}: ${Math.round(r.rps)} req/s; self time per request (main thread)\n`)
console.log(`${show(byFile, 25)}\n`)
console.log(show(byFn, 45))
