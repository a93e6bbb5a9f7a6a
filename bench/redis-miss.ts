/**
 * @module bench/redis-miss
 *
 * What a key-cache miss costs Redis, before and after key records were spread over buckets:
 * the lookup by hash of versions before December 2026 (the `{keys}` script: HGET of the hash
 * index, then HGET of the record and of `lastUsedAt`, by EVALSHA) against this version's (one
 * HMGET of the key's own record). A private `redis-server` on a free port (no other load, so
 * its statistics are the lookups' alone) holds `--keys` keys in both layouts; each layout is
 * looked up `--lookups` times, one call at a time, over random stored hashes. Per lookup:
 * Redis's own time for the command (`INFO commandstats`, usec_per_call; a script's includes
 * the commands it runs), Redis's CPU (`INFO cpu`, user + sys: also reading the command and
 * writing the reply) and the round trip seen by the client (the replies left undecoded in both);
 * and the memory of a key record in each layout (MEMORY USAGE of the layout's Redis keys).
 *
 * Usage: `npx tsx bench/redis-miss.ts [--keys=10000] [--lookups=20000]` (needs redis-server;
 * prints a table and a JSON line).
 */

import { Redis } from 'ioredis'
import { keyLayout } from '../adapters/redis/key-layout.js'
import { oldKeyNames } from '../adapters/redis/key-upgrade.js'
import { type Ctx, defineCommands } from '../adapters/redis/store.js'
import { makeKey } from '../adapters/testing/fixtures.js'
import { startRedisServer } from '../test/fault/redis-server.js'

const arg = (name: string, d: number) =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? d)
const KEYS = arg('keys', 10_000)
const LOOKUPS = arg('lookups', 20_000)

const server = await startRedisServer([])
const client = new Redis(server.port, '127.0.0.1')
const ctx: Ctx = { client: defineCommands(client), prefix: 'bench:' }
const old = oldKeyNames(ctx.prefix)
const layout = keyLayout(ctx)

const keys = Array.from({ length: KEYS }, (_, i) =>
  makeKey({ accountId: `acct_${i % 100}`, lastUsedAt: i % 2 ? 1_767_225_600_000 + i : null }),
)
for (let i = 0; i < keys.length; i += 500) {
  const p = client.pipeline()
  for (const k of keys.slice(i, i + 500)) {
    const { lastUsedAt, ...rest } = k
    p.hset(old.rec, k.id, JSON.stringify(rest))
    if (lastUsedAt !== null) p.hset(old.used, k.id, String(lastUsedAt))
    p.hset(old.byHash, k.hash, k.id)
    p.zadd(old.account(k.accountId), 0, k.id)
  }
  await p.exec()
  await Promise.all(keys.slice(i, i + 500).map((k) => layout.create(k).then(() => layout.place(k))))
}

/** Bytes per key of the keys matching `pattern` (MEMORY USAGE … SAMPLES 0, summed). */
async function bytesPerKey(pattern: string): Promise<number> {
  let total = 0
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    for (const k of batch) total += Number(await client.memory('USAGE', k, 'SAMPLES', 0))
  } while (cursor !== '0')
  return total / KEYS
}
const memory = {
  beforeBytesPerKey: await bytesPerKey(`${ctx.prefix}{keys}*`),
  afterBytesPerKey:
    (await bytesPerKey(`${ctx.prefix}{kh:*`)) +
    (await bytesPerKey(`${ctx.prefix}{ki:*`)) +
    (await bytesPerKey(`${ctx.prefix}{u:*`)),
}
console.log(
  `memory per key record: before ${memory.beforeBytesPerKey.toFixed(0)} B, after ${memory.afterBytesPerKey.toFixed(0)} B`,
)

/** `INFO` section as a map of its fields. */
async function info(section: string): Promise<Map<string, string>> {
  const text = await client.info(section)
  return new Map(
    text
      .split('\r\n')
      .filter((l) => l.includes(':'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
  )
}

const cpu = async () => {
  const m = await info('cpu')
  return Number(m.get('used_cpu_user')) + Number(m.get('used_cpu_sys'))
}

async function measure(label: string, command: string, lookup: (hash: string) => Promise<unknown>) {
  for (let i = 0; i < 1000; i++) await lookup(keys[i % KEYS]!.hash) // warm-up (script load, JIT)
  let seed = 7
  const hashes = Array.from({ length: LOOKUPS }, () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return keys[seed % KEYS]!.hash
  })
  await client.config('RESETSTAT')
  const cpu0 = await cpu()
  const t0 = performance.now()
  for (const h of hashes) await lookup(h)
  const wall = ((performance.now() - t0) * 1000) / LOOKUPS
  const cpuUs = (((await cpu()) - cpu0) * 1e6) / LOOKUPS
  const stats = (await info('commandstats')).get(`cmdstat_${command}`) ?? ''
  const usec = Number(/usec_per_call=([\d.]+)/.exec(stats)?.[1])
  const row = { label, usecPerCall: usec, cpuUsPerLookup: cpuUs, roundTripUs: wall }
  console.log(
    `${label.padEnd(44)} ${usec.toFixed(2).padStart(7)} µs/call  ${cpuUs.toFixed(2).padStart(7)} µs CPU  ${wall.toFixed(1).padStart(7)} µs round trip`,
  )
  return row
}

const before = await measure('before: {keys} script (EVALSHA, 3 HGETs)', 'evalsha', (h) =>
  ctx.client.tollboothOldKeyGet(3, old.rec, old.used, old.byHash, 'hash', h),
)
const after = await measure('after: own record (one HMGET)', 'hmget', (h) =>
  client.hmget(layout.names.record(h), 'j', 'u'),
)
console.log(JSON.stringify({ keys: KEYS, lookups: LOOKUPS, before, after, memory }))
client.disconnect()
await server.kill()
