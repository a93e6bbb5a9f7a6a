/**
 * @module bench/redis-memory
 *
 * Redis memory per key: `MEMORY USAGE … SAMPLES 0` summed over the keys of this run (a prefix
 * of its own, deleted after) after each step. (`INFO memory` deltas also count the server's
 * buffers and scripts, and moved by a factor of 3 between runs.)
 * - a stored key record (`tb.keys.create`);
 * - an active key: the state its first request leaves (the counters of the HTTP benchmark's
 *   key: a per-minute rate limit and a daily quota, its account's credit counter, and the
 *   account record), after the request is settled. Usage events are kept in memory here.
 *
 * Usage: `npx tsx bench/redis-memory.ts [keys=100000]` with REDIS_URL (default
 * redis://127.0.0.1:6379). Prints one line per figure and a JSON line.
 */

import { Redis } from 'ioredis'
import { redisStorage } from '../adapters/redis/index.js'
import { createTollbooth, memoryStorage } from '../src/index.js'

const N = Number(process.argv[2] ?? 100_000)
const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
const prefix = `tbmem${process.pid}:`

/** Bytes of every key under this run's prefix, as MEMORY USAGE counts them. */
async function used(): Promise<number> {
  let total = 0
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    const pipe = client.pipeline()
    for (const k of batch) pipe.memory('USAGE', k, 'SAMPLES', 0)
    for (const [err, n] of (await pipe.exec()) ?? []) if (!err) total += Number(n)
  } while (cursor !== '0')
  return total
}

/** Runs `fn(i)` for i < N, 64 at a time. */
async function each(fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < N) await fn(next++)
    }),
  )
}

try {
  const redis = redisStorage({ client, keyPrefix: prefix })
  const tb = createTollbooth({
    secret: 'redis-memory-benchmark-secret-0123456789',
    storage: { ...redis, usage: memoryStorage().usage },
    plans: { bench: { monthlyCredits: 1e15 } },
    defaultTier: 'bench',
    failedAuth: false,
    cache: false,
  })
  const route = tb.route({ cost: 1 })
  const limits = { rateLimits: [{ limit: 1e9, windowMs: 60_000 }], quotas: { daily: 1e9 } }
  const keys: string[] = new Array(N)
  const m0 = await used()
  await each(async (i) => {
    keys[i] = (await tb.keys.create({ accountId: `acct_${i}`, limits })).key
  })
  const m1 = await used()
  await each(async (i) => {
    const d = await tb.authenticate(
      { headers: { authorization: `Bearer ${keys[i]}` }, ip: null, method: 'GET', path: '/' },
      route,
    )
    if (!d.allowed) throw new Error(`refused: ${d.status}`)
    await tb.settle(d, { status: 200 })
  })
  const m2 = await used()
  const record = (m1 - m0) / N
  const active = (m2 - m1) / N
  console.log(`Redis memory, ${N} keys (MEMORY USAGE of this run's keys):`)
  console.log(`  key record:                        ${record.toFixed(0)} B per key`)
  console.log(`  active key (counters + account):   ${active.toFixed(0)} B per key`)
  console.log(JSON.stringify({ keys: N, recordBytes: record, activeBytes: active }))
  await tb.close()
  await redis.close?.()
} finally {
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (batch.length) await client.del(...batch)
  } while (cursor !== '0')
  client.disconnect()
}
