/**
 * @module bench/postgres-http
 *
 * The central PostgreSQL counter path over real HTTP: a Hono server (@hono/node-server, its
 * own process) with `requireApiKey` and the counters in PostgreSQL (keys, accounts and usage
 * in memory, as cached keys would be; leases off, so every admission is a store call), loaded
 * by autocannon from this process with 32 connections on 127.0.0.1. Scenarios:
 * - `hot`: one key;
 * - `one-account`: 1,000 keys of one account (each request the next key);
 * - `many-accounts`: 1,000 keys of 1,000 accounts.
 * Each key carries a per-minute rate limit and a daily quota, its account a plan's credits,
 * all far above what a run reaches. Reported per scenario and run: req/s, p50/p99 latency,
 * and PostgreSQL CPU per request, read from /proc/<pid>/stat of the server's backends
 * (`application_name` marks them) before and after the run.
 *
 * Usage: `npm run bench:postgres-http -- [seconds=10] [runs=3] [scenarios=all]` (scenarios
 * comma-separated) with DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
 * `BENCH_LEASES=1` runs with leases as configured by default (hot keys mostly answered in
 * process), to measure what a deployment gets rather than the central path alone.
 * `TOLLBOOTH_SRC=<dir>` loads `src/` and `adapters/` from another tree (to measure a previous
 * version: `git archive main src adapters | tar -x -C .tmp/before`). Uses a schema
 * `tb_bench_<random>`, dropped after.
 */

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import pg from 'pg'

const URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SECRET = 'postgres-http-benchmark-secret-0123456789'
const CONNECTIONS = 32
const KEYS = 1000
const SCENARIOS = ['hot', 'one-account', 'many-accounts'] as const
/** The tree `src/` and `adapters/` are loaded from. */
const ROOT = process.env.TOLLBOOTH_SRC ?? new globalThis.URL('..', import.meta.url).pathname
type Scenario = (typeof SCENARIOS)[number]

/** The server: one port, the keys of every scenario on stdout as one JSON line. */
async function serve(): Promise<void> {
  const root = ROOT
  const { serve: listen } = await import('@hono/node-server')
  const { Hono } = await import('hono')
  const core = (await import(`${root}/src/index.ts`)) as typeof import('../src/index.js')
  const hono = (await import(
    `${root}/adapters/hono/index.ts`
  )) as typeof import('../adapters/hono/index.js')
  const postgres = (await import(
    `${root}/adapters/postgres/index.ts`
  )) as typeof import('../adapters/postgres/index.js')
  const schema = process.env.BENCH_SCHEMA!
  const pool = new pg.Pool({
    connectionString: URL,
    application_name: schema,
    idleTimeoutMillis: 0,
  })
  const counters = postgres.postgresStorage({ pool, schema }).counters
  const tb = core.createTollbooth({
    secret: SECRET,
    storage: {
      ...core.memoryStorage(),
      counters,
    },
    plans: { bench: { monthlyCredits: 1e15 } },
    defaultTier: 'bench',
    failedAuth: false,
    leases: process.env.BENCH_LEASES === '1' ? undefined : false,
  })
  const limits = { rateLimits: [{ limit: 1e9, windowMs: 60_000 }], quotas: { daily: 1e9 } }
  const create = async (accountId: string) =>
    (await tb.keys.create({ accountId, name: 'bench', limits })).key
  const keys: Record<Scenario, string[]> = {
    hot: [await create('acct_hot')],
    'one-account': [],
    'many-accounts': [],
  }
  for (let i = 0; i < KEYS; i++) {
    keys['one-account'].push(await create('acct_one'))
    keys['many-accounts'].push(await create(`acct_many_${i}`))
  }
  const app = new Hono()
  app.use('*', hono.requireApiKey(tb, { cost: 1 }))
  app.get('/', (c) => c.text('ok'))
  const server = listen({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
    console.log(JSON.stringify({ port: info.port, keys }))
  })
  process.on('SIGTERM', async () => {
    // The transactions the counters ran (an older tree's may not say).
    const stats = (counters as { stats?: () => unknown }).stats
    if (stats) console.error(`counters: ${JSON.stringify(stats())}`)
    server.close()
    await tb.close()
    await pool.end()
    process.exit(0)
  })
}

/** CPU seconds (user + system) of the server's PostgreSQL backends, by pid. */
async function backendCpu(admin: pg.Pool, schema: string): Promise<Map<number, number>> {
  const { rows } = await admin.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
    [schema],
  )
  const out = new Map<number, number>()
  for (const { pid } of rows) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
      // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second).
      out.set(pid, (Number(fields[11]) + Number(fields[12])) / 100)
    } catch {
      // Not on this machine (a remote server), or gone: not counted.
    }
  }
  return out
}

async function load(port: number, keys: string[], seconds: number) {
  const { default: autocannon } = await import('autocannon')
  let i = 0
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/`,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        setupRequest(req: { headers?: Record<string, string> }) {
          const key = keys[i++ % keys.length]!
          return { ...req, headers: { ...req.headers, authorization: `Bearer ${key}` } }
        },
      },
    ],
  })
  if (r.non2xx > 0) throw new Error(`${r.non2xx} non-2xx responses of ${r.requests.total}`)
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, n: r.requests.total }
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 10)
  const runs = Number(process.argv[3] ?? 3)
  const only = process.argv[4]?.split(',') ?? SCENARIOS
  const schema = `tb_bench_${Math.random().toString(36).slice(2, 10)}`
  const admin = new pg.Pool({ connectionString: URL, max: 2 })
  const { migrate } = (await import(
    `${ROOT}/adapters/postgres/index.ts`
  )) as typeof import('../adapters/postgres/index.js')
  await migrate({ pool: admin, schema })
  const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--serve'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_SCHEMA: schema },
  })
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve)
      child.once('exit', (code) => reject(new Error(`server exited (${code})`)))
    })
    const { port, keys } = JSON.parse(line) as { port: number; keys: Record<Scenario, string[]> }
    console.log(`src: ${process.env.TOLLBOOTH_SRC ?? 'this checkout'}, ${seconds} s per run`)
    console.log('scenario        run   req/s   p50 ms  p99 ms  PG CPU µs/req')
    for (let run = 1; run <= runs; run++)
      for (const s of SCENARIOS.filter((x) => only.includes(x))) {
        await load(port, keys[s], 2) // warm: every connection of the pool open
        const before = await backendCpu(admin, schema)
        const r = await load(port, keys[s], seconds)
        const after = await backendCpu(admin, schema)
        let cpu = 0
        for (const [pid, t] of after) cpu += t - (before.get(pid) ?? 0)
        const us = after.size === 0 ? Number.NaN : (cpu * 1e6) / r.n
        console.log(
          `${s.padEnd(15)} ${String(run).padStart(3)} ${r.rps.toFixed(0).padStart(7)} ${String(r.p50).padStart(8)} ${String(r.p99).padStart(7)} ${us.toFixed(0).padStart(14)}`,
        )
      }
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await admin.end()
  }
}

if (process.argv.includes('--serve')) await serve()
else await main()
