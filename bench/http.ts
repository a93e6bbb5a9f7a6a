/**
 * @module bench/http
 *
 * HTTP benchmark: for each framework, one server process holding every variant on its own
 * port (bench/servers/*.ts), loaded in turn by wrk (or autocannon when wrk is absent) from a
 * second process. Server and loader are pinned to different cores with taskset when there is
 * one. Variants are reshuffled every cycle and each ratio is taken against the bare server of
 * the same cycle, because this machine's speed moves ±20 % between runs a minute apart.
 * Bounded: cycles × variants × slice seconds per framework, 127.0.0.1 only.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'

export interface Sample {
  rps: number
  p50ms: number
  p99ms: number
  cpuUsPerReq: number
}

export interface VariantResult {
  variant: string
  samples: Sample[]
  /** Per-cycle ratio to the bare server of the same cycle. */
  ratios: number[]
  headers: number
  /** Redis commands per request counted at the variant's client, per cycle (Redis variants). */
  redisPerRequest?: number[]
  /**
   * Redis commands per request seen by MONITOR over sequential requests (Redis variants): in
   * all, and those the requests waited for (see monitorPerRequest).
   */
  monitorPerRequest?: { all: number; admissions: number }
  /**
   * The Redis server's CPU time per request, µs, per cycle (Redis variants): `INFO cpu`
   * (user + sys, every thread of redis-server) before and after the load.
   */
  redisCpuUsPerReq?: number[]
}

/** The CPU time the Redis server has used so far, µs (`INFO cpu`: user + sys). */
async function redisCpuUs(client: import('ioredis').Redis): Promise<number> {
  const info = await client.info('cpu')
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1])
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6
}

/**
 * Commands per request as the Redis server sees them: MONITOR on while `n` requests are sent
 * one after another (and their settles have landed). Counts every client's commands (not
 * those a script runs inside Redis), so it is run with nothing else loading Redis. `all` is
 * every command; `admissions` leaves out tollbooth's calls that carry settles and no check
 * (sent after a response, when no admission of the account came within `settleBatchMs`):
 * what the requests waited for.
 */
async function monitorPerRequest(
  url: string,
  key: string,
  n: number,
): Promise<{ all: number; admissions: number }> {
  const { Redis } = await import('ioredis')
  const { SETTLE_FUNCTION } = await import('../adapters/redis/scripts.js')
  // No ready check: the monitor connection inherits it, and its INFO, echoed back by MONITOR,
  // was read as INFO's reply (ioredis: "Command queue state error").
  const client = new Redis(process.env.REDIS_URL!, { enableReadyCheck: false })
  const monitor = await client.monitor()
  let all = 0
  let settlesOnly = 0
  // Commands a script runs inside Redis show up too, with source 'lua': not round trips.
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua') return
    all++
    // Settles sent on their own call the settle function (the same code, its own name).
    if (args[0]?.toLowerCase() === 'fcall' && args[1] === SETTLE_FUNCTION) settlesOnly++
  })
  await new Promise((resolve) => setTimeout(resolve, 100))
  all = 0
  settlesOnly = 0
  for (let i = 0; i < n; i++) {
    const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } })
    await res.arrayBuffer()
  }
  await new Promise((resolve) => setTimeout(resolve, 300))
  const counts = { all: all / n, admissions: (all - settlesOnly) / n }
  monitor.disconnect()
  client.disconnect()
  return counts
}

/** Commands the variant's Redis client has sent (counted in bench/servers/common.ts). */
async function redisCommands(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/redis-commands`)
  return Number(await res.text())
}

const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export const tools = {
  wrk: has('wrk'),
  taskset: has('taskset') && cpus().length >= 2,
  valgrind: has('valgrind') && has('redis-server'),
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime, in clock ticks (1/100 s)
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim())
  if (!m) return Number.NaN
  const n = Number(m[1])
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n
}

async function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    p.stdout.on('data', (d) => {
      out += d
    })
    p.stderr.on('data', (d) => {
      out += d
    })
    p.on('error', reject)
    p.on('exit', () => resolve(out))
  })
}

export async function loadOnce(
  url: string,
  key: string,
  seconds: number,
  connections: number,
): Promise<Omit<Sample, 'cpuUsPerReq'> & { requests: number }> {
  if (tools.wrk) {
    const args = [
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      '--latency',
      '-H',
      `Authorization: Bearer ${key}`,
      url,
    ]
    const out = tools.taskset
      ? await run('taskset', ['-c', '1', 'wrk', ...args])
      : await run('wrk', args)
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
    const requests = Number(/(\d+) requests in/.exec(out)?.[1])
    const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '')
    const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '')
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
    if (non2xx) throw new Error(`${url}: ${non2xx[1]} non-2xx responses`)
    return { rps, p50ms: p50, p99ms: p99, requests }
  }
  const { default: autocannon } = await import('autocannon')
  const r = await autocannon({
    url,
    connections,
    duration: seconds,
    headers: { authorization: `Bearer ${key}` },
  })
  if (r.non2xx > 0) throw new Error(`${url}: ${r.non2xx} non-2xx responses`)
  return {
    rps: r.requests.average,
    p50ms: r.latency.p50,
    p99ms: r.latency.p99,
    requests: r.requests.total,
  }
}

function shuffle<T>(xs: T[]): T[] {
  const a = xs.slice()
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

interface Server {
  child: ChildProcess
  pid: number
  ports: Record<string, number>
  key: string
}

async function startServer(framework: string, variants: 'memory' | 'storage'): Promise<Server> {
  const args = ['--import', 'tsx', `bench/servers/${framework}.ts`]
  const env = { ...process.env, BENCH_VARIANTS: variants }
  const child = tools.taskset
    ? spawn('taskset', ['-c', '0', process.execPath, ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env,
      })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${framework} server did not start`)), 30_000)
    child.stdout!.on('data', (d) => {
      out += d
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (line) {
        clearTimeout(timer)
        const info = JSON.parse(line)
        resolve({ child, ...info })
      }
    })
    child.on('exit', (code) => reject(new Error(`${framework} server exited with ${code}`)))
  })
}

async function headerCount(url: string, key: string): Promise<number> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } })
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}`)
  let n = 0
  res.headers.forEach((_v, k) => {
    if (/^(x-|ratelimit)/i.test(k)) n++
  })
  await res.arrayBuffer()
  return n
}

/**
 * Loads every variant of `framework` in turn, `o.cycles` times, reshuffled each cycle. The
 * memory variants run in one server process; the storage variants (SQLite, and Redis or
 * PostgreSQL with REDIS_URL or DATABASE_URL) in a second, with its own bare server, which they
 * are measured against.
 */
export async function benchFramework(
  framework: string,
  variants: readonly string[],
  o: {
    cycles: number
    seconds: number
    connections: number
    /** Load only these variants (and each process's bare server); all when absent. */
    only?: readonly string[]
  },
): Promise<VariantResult[]> {
  const servers: Server[] = [await startServer(framework, 'memory')]
  // SQLite needs no server: the storage process always runs (BENCH_SQLITE=0 and no URL: not).
  if (process.env.REDIS_URL || process.env.DATABASE_URL || process.env.BENCH_SQLITE !== '0')
    servers.push(await startServer(framework, 'storage'))
  // One entry per (process, variant); the second process's bare is named apart.
  const entries: Array<{ name: string; v: string; s: Server; bare: string }> = []
  for (const [i, s] of servers.entries()) {
    const bare = i === 0 ? 'bare' : 'bare (storage process)'
    const own =
      i === 0
        ? [...variants, ...Object.keys(s.ports).filter((v) => !variants.includes(v))]
        : Object.keys(s.ports)
    for (const v of own)
      if (v === 'bare' || !o.only || o.only.includes(v))
        entries.push({ name: v === 'bare' ? bare : v, v, s, bare })
  }
  const redisClient = entries.some((e) => e.v.endsWith('-redis'))
    ? new (await import('ioredis')).Redis(process.env.REDIS_URL!)
    : null
  try {
    const results = new Map<string, VariantResult>()
    for (const e of entries) {
      const url = `http://127.0.0.1:${e.s.ports[e.v]}/hello`
      results.set(e.name, {
        variant: e.name,
        samples: [],
        ratios: [],
        headers: await headerCount(url, e.s.key),
      })
      await loadOnce(url, e.s.key, 1, o.connections) // warm up: JIT and caches
    }
    for (let c = 0; c < o.cycles; c++) {
      const cycle = new Map<string, Sample>()
      for (const e of shuffle(entries)) {
        const url = `http://127.0.0.1:${e.s.ports[e.v]}/hello`
        // Let the previous variant's tail (settles, storage writes) finish first.
        await new Promise((resolve) => setTimeout(resolve, 250))
        const redis = e.v.endsWith('-redis')
        const redisBefore = redis ? await redisCommands(e.s.ports[e.v]!) : 0
        const redisCpuBefore = redis ? await redisCpuUs(redisClient!) : 0
        const before = cpuTicks(e.s.pid)
        const r = await loadOnce(url, e.s.key, o.seconds, o.connections)
        const cpuMs = (cpuTicks(e.s.pid) - before) * 10
        if (redis) {
          // Settles still in flight when the load stops finish within a few ms.
          await new Promise((resolve) => setTimeout(resolve, 200))
          const n = (await redisCommands(e.s.ports[e.v]!)) - redisBefore
          const cpuUs = (await redisCpuUs(redisClient!)) - redisCpuBefore
          const res = results.get(e.name)!
          const perRequest = (x: number) => x / Math.max(1, r.requests)
          res.redisPerRequest = [...(res.redisPerRequest ?? []), perRequest(n)]
          res.redisCpuUsPerReq = [...(res.redisCpuUsPerReq ?? []), perRequest(cpuUs)]
        }
        const sample = {
          rps: r.rps,
          p50ms: r.p50ms,
          p99ms: r.p99ms,
          cpuUsPerReq: (cpuMs * 1000) / Math.max(1, r.requests),
        }
        cycle.set(e.name, sample)
        results.get(e.name)!.samples.push(sample)
      }
      for (const e of entries) {
        const sample = cycle.get(e.name)!
        results.get(e.name)!.ratios.push(sample.rps / cycle.get(e.bare)!.rps)
      }
      process.stderr.write(`  ${framework} cycle ${c + 1}/${o.cycles} done\n`)
    }
    for (const e of entries.filter((x) => x.v.endsWith('-redis'))) {
      const url = `http://127.0.0.1:${e.s.ports[e.v]}/hello`
      results.get(e.name)!.monitorPerRequest = await monitorPerRequest(url, e.s.key, 200)
    }
    return entries.map((e) => results.get(e.name)!)
  } finally {
    redisClient?.disconnect()
    for (const s of servers) s.child.kill('SIGTERM')
  }
}

export function quantile(xs: number[], q: number): number {
  const a = xs.slice().sort((x, y) => x - y)
  if (a.length === 0) return Number.NaN
  const pos = (a.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return a[lo]! + (a[hi]! - a[lo]!) * (pos - lo)
}
