/**
 * @module bench/run
 *
 * `npm run bench` (quick, under 10 minutes) or `npm run bench -- --full`: the micro benchmark
 * and the HTTP benchmark of every framework, printed as tables and written to
 * bench/RESULTS.md with the command, date and machine. Starts and stops its own servers.
 * `--variants=tollbooth,tollbooth-sqlite` (with `--only=express`, say) loads only those
 * variants and the bare servers, skips the micro benchmark, prints the tables and leaves
 * RESULTS.md as it is.
 */

import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { benchFramework, quantile, tools, type VariantResult } from './http.js'
import { VARIANTS } from './servers/common.js'

const full = process.argv.includes('--full')
const only = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',')
const variantsOnly = process.argv
  .find((a) => a.startsWith('--variants='))
  ?.slice(11)
  .split(',')
const o = full
  ? { cycles: 7, seconds: 4, connections: 32 }
  : { cycles: 4, seconds: 2, connections: 32 }
const frameworks = (only ?? ['hono', 'express', 'fastify']).filter((f) =>
  ['hono', 'express', 'fastify'].includes(f),
)

const PEERS: Record<string, string> = {
  hono: 'hono-rate-limiter',
  express: 'express-rate-limit',
  fastify: '@fastify/rate-limit',
}

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—')
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '—')

function table(
  framework: string,
  rs: VariantResult[],
): { md: string; byName: Map<string, VariantResult> } {
  const byName = new Map(rs.map((r) => [r.variant, r]))
  const lines = [
    `### ${framework}`,
    '',
    '| variant | headers | req/s (median) | p50 ms | p99 ms | server CPU µs/req | ratio to bare: median [q1, q3] |',
    '|---|---:|---:|---:|---:|---:|---|',
  ]
  for (const r of rs) {
    const med = (k: 'rps' | 'p50ms' | 'p99ms' | 'cpuUsPerReq') =>
      quantile(
        r.samples.map((s) => s[k]),
        0.5,
      )
    const label = r.variant === 'peer' ? `peer (${PEERS[framework]} + Bearer check)` : r.variant
    lines.push(
      `| ${label} | ${r.headers} | ${f0(med('rps'))} | ${f2(med('p50ms'))} | ${f2(med('p99ms'))} | ${f2(med('cpuUsPerReq'))} | ${f2(quantile(r.ratios, 0.5))} [${f2(quantile(r.ratios, 0.25))}, ${f2(quantile(r.ratios, 0.75))}] |`,
    )
  }
  const redis = byName.get('tollbooth-redis')
  const peerRedis = byName.get('peer-redis')
  if (redis?.redisPerRequest?.length) {
    lines.push(
      '',
      `Redis commands per request, tollbooth-redis (one hot key of one account, leases on as by default: docs/leases.md): ${f2(quantile(redis.redisPerRequest, 0.5))} counted at its ioredis client under load (median of cycles), ${f2(redis.monitorPerRequest?.all ?? Number.NaN)} seen by MONITOR over 200 sequential requests, of which ${f2(redis.monitorPerRequest?.admissions ?? Number.NaN)} before the response — a lease (one FCALL (an EVALSHA where the server has no Functions) for the rate limit, the quota and the credit reservation together) answers the requests of the next 100 ms or 1 % of a limit in process; a request that finds no lease waits for one round trip. Usage events stay in memory here. ${PEERS[framework]} on Redis: ${f2(quantile(peerRedis?.redisPerRequest ?? [], 0.5))} at its client, ${f2(peerRedis?.monitorPerRequest?.all ?? Number.NaN)} by MONITOR. Redis server CPU per request (INFO cpu, user + sys, median of cycles): tollbooth-redis ${f2(quantile(redis.redisCpuUsPerReq ?? [], 0.5))} µs, ${PEERS[framework]} ${f2(quantile(peerRedis?.redisCpuUsPerReq ?? [], 0.5))} µs.`,
    )
  }
  return { md: lines.join('\n'), byName }
}

function targets(framework: string, byName: Map<string, VariantResult>): string[] {
  const ratio = (a: string, b: string) => {
    const xa = byName.get(a)!.ratios
    const xb = byName.get(b)!.ratios
    return quantile(
      xa.map((x, i) => x / xb[i]!),
      0.5,
    )
  }
  const vsFloor = byName.has('floor') ? ratio('tollbooth', 'floor') : Number.NaN
  const redisRows: string[] = []
  if (byName.has('tollbooth-redis') && byName.has('peer-redis')) {
    const tbR = quantile(byName.get('tollbooth-redis')!.ratios, 0.5)
    const peerR = quantile(byName.get('peer-redis')!.ratios, 0.5)
    const hot = quantile(byName.get('tollbooth-redis')!.redisPerRequest ?? [], 0.5)
    const cpu = (v: string) => quantile(byName.get(v)!.redisCpuUsPerReq ?? [], 0.5)
    const tbCpu = cpu('tollbooth-redis')
    const peerCpu = cpu('peer-redis')
    redisRows.push(
      `| ${framework} | Redis: hot key at full load <= 0.05 Redis calls per request (leases) | ${f2(hot)} | ${hot <= 0.05 ? 'met' : 'missed'} |`,
      `| ${framework} | Redis: tollbooth-redis / bare >= peer on Redis / bare | ${f2(tbR)} vs ${f2(peerR)} | ${tbR >= peerR ? 'met' : 'missed'} |`,
      `| ${framework} | Redis: server CPU per request (INFO cpu) <= the peer's | ${f2(tbCpu)} vs ${f2(peerCpu)} µs | ${tbCpu <= peerCpu ? 'met' : 'missed'} |`,
    )
    if (byName.has('tollbooth-peer-headers-redis')) {
      const tbPeerR = quantile(byName.get('tollbooth-peer-headers-redis')!.ratios, 0.5)
      redisRows.push(
        `| ${framework} | Redis: tollbooth-redis (peer's headers) / bare >= peer on Redis / bare | ${f2(tbPeerR)} vs ${f2(peerR)} | ${tbPeerR >= peerR ? 'met' : 'missed'} |`,
      )
    }
    if (byName.has('tollbooth')) {
      // Each against the bare server of its own process, in the same cycles.
      const r = ratio('tollbooth-redis', 'tollbooth')
      redisRows.push(
        `| ${framework} | Redis: tollbooth-redis / bare >= 0.95 x tollbooth (memory) / bare | ${f2(r)} | ${r >= 0.95 ? 'met' : 'missed'} |`,
      )
    }
  }
  if (byName.has('tollbooth-sqlite')) {
    // Each against the bare server of its own process, in the same cycles.
    const r = ratio('tollbooth-sqlite', 'tollbooth')
    redisRows.push(
      `| ${framework} | SQLite: tollbooth-sqlite / bare >= 0.9 x tollbooth (memory) / bare | ${f2(r)} | ${r >= 0.9 ? 'met' : 'missed'} |`,
    )
  }
  // A run with --variants may lack the floor, the peer or tollbooth with the peer's headers.
  if (!byName.has('floor') || !byName.has('peer') || !byName.has('tollbooth-peer-headers'))
    return redisRows
  const peerTb = quantile(byName.get('tollbooth-peer-headers')!.ratios, 0.5)
  const peer = quantile(byName.get('peer')!.ratios, 0.5)
  return [
    `| ${framework} | tollbooth / floor (same headers) >= 0.95 | ${f2(vsFloor)} | ${vsFloor >= 0.95 ? 'met' : 'missed'} |`,
    `| ${framework} | tollbooth (peer's headers) / bare >= peer / bare | ${f2(peerTb)} vs ${f2(peer)} | ${peerTb >= peer ? 'met' : 'missed'} |`,
    ...redisRows,
  ]
}

const started = new Date()
const sections: string[] = []
const targetRows: string[] = []

if (!variantsOnly && existsSync(new URL('./micro.ts', import.meta.url))) {
  process.stderr.write('micro benchmark…\n')
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', 'bench/micro.ts', ...(full ? ['--full'] : [])],
    { encoding: 'utf8' },
  )
  const m = /tollbooth \/ floor \(HTTP key\): ([\d.]+)/.exec(out)
  if (m)
    targetRows.push(
      `| core (micro) | decide + settle >= 0.8 x the floor's ops/s | ${m[1]} | ${Number(m[1]) >= 0.8 ? 'met' : 'missed'} |`,
    )
  sections.push('## Micro: the core per request, memory store, no framework', '', out.trim(), '')
}

sections.push(
  '## HTTP: hello-world route per framework',
  '',
  `Loader: ${tools.wrk ? 'wrk -t1 -c32' : 'autocannon -c32'}, ${o.cycles} cycles × ${o.seconds} s per variant, variants reshuffled each cycle, ratios against the bare server of the same cycle${tools.taskset ? '; server pinned to CPU 0, loader to CPU 1 (taskset)' : ''}. Variants: bare; one no-op middleware; the hand-written floor of the whole job (bench/floor.ts: key parse + checksum, keyed SHA-256, LRU, GCRA + 24-bucket daily quota + credit reservation, request id, 10 headers, settle with a usage event); tollbooth requireApiKey (memory store; key with a per-minute rate limit, a daily quota, cost 1 against plan credits) with every header family (10 headers); the same with only the header family the peer sends; the peer limiter plus a hand-written Bearer check. With REDIS_URL / DATABASE_URL, a second server process serves its own bare server and the storage variants (tollbooth with its counters on Redis or PostgreSQL, on Redis also with only the peer's headers, and the peer on its Redis store), measured against that bare server: sharing a process with them would slow the memory variants (the JIT's inline caches see both code paths), which no single-storage application sees.`,
  '',
)
for (const fw of frameworks) {
  process.stderr.write(`${fw}…\n`)
  const rs = await benchFramework(fw, VARIANTS, { ...o, only: variantsOnly })
  const t = table(fw, rs)
  sections.push(t.md, '')
  targetRows.push(...targets(fw, t.byName))
}

// Scale: memory per key in the memory store, a PostgreSQL cache miss among 1M keys, Redis
// memory per key. Each is its own script, run here as a child process.
if (!variantsOnly && (!only || only.includes('scale'))) {
  const memKeys = full ? 1_000_000 : 200_000
  const node = (args: string[]) =>
    execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 }).trim()
  process.stderr.write(`scale: memory store, ${memKeys} keys…\n`)
  const parts = [
    '## Scale',
    '',
    `Memory store, ${memKeys.toLocaleString('en-US')} keys (\`node --expose-gc --import tsx test/limits/memory-per-key.ts ${memKeys}\`):`,
    '',
    '```',
    node([
      '--expose-gc',
      '--max-old-space-size=8192',
      '--import',
      'tsx',
      'test/limits/memory-per-key.ts',
      String(memKeys),
    ]),
    '```',
    '',
  ]
  // The cost per request as the memory store grows, 1,000 against 1,000,000 keys, cached and
  // on a cache miss, each size in its own process (the quick run: fewer, shorter rounds).
  const scaleArgs = full
    ? ['1000,100000,1000000']
    : ['1000,1000000', '--rounds', '5', '--per-round', '10000']
  process.stderr.write(`scale: memory store, requests among ${scaleArgs[0]} keys…\n`)
  const scale = node(['--import', 'tsx', 'bench/memory-scale.ts', ...scaleArgs])
  parts.push(
    `Memory store, cost per request as it grows (\`npx tsx bench/memory-scale.ts ${scaleArgs.join(' ')}\`):`,
    '',
    scale,
    '',
  )
  const ratio = /1,000,000 keys \/ 1,000 keys: cached ([\d.]+)/.exec(scale)
  if (ratio)
    targetRows.push(
      `| core (memory store) | a cached request among 1,000,000 keys <= 1.5 x among 1,000 (p50) | ${ratio[1]} | ${Number(ratio[1]) <= 1.5 ? 'met' : 'missed'} |`,
    )
  if (process.env.DATABASE_URL) {
    process.stderr.write('scale: PostgreSQL, 1M keys…\n')
    const out = node(['--import', 'tsx', 'bench/postgres-miss.ts', '2000', '1000000'])
    parts.push(
      'PostgreSQL (`npx tsx bench/postgres-miss.ts 2000 1000000`):',
      '',
      '```',
      out
        .split('\n')
        .filter((l) => !l.startsWith('{'))
        .join('\n'),
      '```',
      '',
    )
  }
  if (process.env.REDIS_URL) {
    process.stderr.write('scale: Redis memory per key…\n')
    const out = node(['--import', 'tsx', 'bench/redis-memory.ts', '100000'])
    parts.push(
      'Redis (`npx tsx bench/redis-memory.ts 100000`):',
      '',
      '```',
      out
        .split('\n')
        .filter((l) => !l.startsWith('{'))
        .join('\n'),
      '```',
      '',
    )
  }
  sections.push(...parts)
}

// Leases simulated (injected clock, memory store): store calls and early refusals of 16
// instances sharing one hot account, against the store deciding every request.
if (!variantsOnly && (!only || only.includes('leases'))) {
  process.stderr.write('Leases simulation…\n')
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/leases-sim.ts'], {
    encoding: 'utf8',
  }).trim()
  const rows = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, number | string>)
  sections.push(
    '## Leases: 16 instances, one account, 100,000 req/s (simulated)',
    '',
    "`npx tsx bench/leases-sim.ts`: 16 leased instances over one memory counter store, an injected clock, one account at 100,000 requests per second (rate limit, daily quota and credit reservation on every request, settled 20 ms later); the reference is the same traffic decided by the store request by request. Early refusals are the admissions the reference makes and the leased instances do not; the bound is the design's (docs/leases.md: 2 n leases of the rate limit, n of a window).",
    '',
    '| scenario | store calls/s | per request | reference calls/s | answered in process | admitted | reference admitted | early refusals | bound |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.storeCallsPerSecond} | ${r.storeCallsPerRequest} | ${r.referenceCallsPerSecond} | ${(100 * Number(r.localShare)).toFixed(1)} % | ${r.admitted} | ${r.referenceAdmitted} | ${r.earlyRefusals} | ${r.boundOnShortfall} |`,
    ),
    '',
  )
}

// The counter script's cost in instructions (callgrind on a private redis-server): unlike
// µs, it does not move with the machine's load.
if (!variantsOnly && (!only || only.includes('scale')) && tools.valgrind) {
  process.stderr.write('Redis script cost (callgrind)…\n')
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', 'bench/redis-script-cost.ts', '1000'],
    { encoding: 'utf8' },
  ).trim()
  // The peers' job (a rate limit alone, with its admission record) against the fixed window.
  const json = out.split('\n').find((l) => l.startsWith('{'))
  const cost = json ? (JSON.parse(json) as Record<string, number>) : {}
  const job = cost['tollbooth, the peers\u2019 job: a rate limit alone']
  const fixed = cost['fixed window (the peers\u2019 job)']
  if (job && fixed)
    targetRows.push(
      `| core (Redis) | the peers' job (a rate limit alone) <= 3 x the fixed window, Redis instructions a call | ${(job / fixed).toFixed(2)} (${Math.round(job).toLocaleString('en-US')} / ${Math.round(fixed).toLocaleString('en-US')}) | ${job / fixed <= 3 ? 'met' : 'missed'} |`,
    )
  sections.push(
    '## Redis script cost',
    '',
    'Instructions Redis spends per call (`npx tsx bench/redis-script-cost.ts 1000`: callgrind on a private redis-server, a trivial script subtracted):',
    '',
    ...out.split('\n').filter((l) => !l.startsWith('{')),
    '',
  )
}

const cpu = cpus()[0]?.model ?? 'unknown'
const md = [
  '# Benchmark results',
  '',
  `Command: \`npm run bench${full ? ' -- --full' : ''}\` · date: ${started.toISOString()} · machine: ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  '',
  'Throughput on this machine moves ±20 % between runs a minute apart: compare ratios within one run, not absolute figures across runs.',
  '',
  '## Targets',
  '',
  '| framework | target | measured | |',
  '|---|---|---|---|',
  ...targetRows,
  '',
  ...sections,
].join('\n')

const notes = new URL('./NOTES.md', import.meta.url)
const extra = existsSync(notes) ? `\n${readFileSync(notes, 'utf8')}` : ''
if (!variantsOnly) writeFileSync(new URL('./RESULTS.md', import.meta.url), `${md}\n${extra}`)
console.log(md)
