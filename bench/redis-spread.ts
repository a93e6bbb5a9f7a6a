/**
 * @module bench/redis-spread
 *
 * Redis calls per request when the load is spread over many accounts (issue 23: "spread
 * traffic is one round trip too"). A settle rides along with its account's next admission
 * only when one comes within `settleBatchMs`; spread over 1,000 accounts, it almost never
 * does, so what counts is how the settles left over are sent.
 *
 * One tollbooth instance (keys and accounts in memory, counters on Redis under a fresh
 * prefix), 1,000 accounts with one key each (a per-minute rate limit, a daily quota and a
 * concurrency limit of 4, whose lease every settle releases):
 * - under load: `--requests` admissions (64 in flight) over random keys, each settled without
 *   waiting (as the framework adapters do); calls counted at the ioredis client;
 * - sequential: 200 requests one after another over random keys, calls seen by MONITOR from
 *   this client's connection (nothing a script runs inside Redis).
 * Then every lease must be released (each settle applied exactly once): 4 admissions at once
 * of every key pass.
 *
 * Usage: `REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/redis-spread.ts [--requests=20000]`
 * (prints one JSON line; deletes its keys after).
 */

import { Redis } from 'ioredis'
import { redisStorage } from '../adapters/redis/index.js'
import { createTollbooth, memoryStorage, type TollboothRequest } from '../src/index.js'

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const arg = (name: string, d: number) =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? d)
const REQUESTS = arg('requests', 20_000)
const ACCOUNTS = arg('accounts', 1000)
const IN_FLIGHT = 64

// `autoResendUnfulfilledCommands: false` and a `commandTimeout`: the counters run on this
// client, whose commands alone MONITOR counts below (else on a connection of their own,
// adapters/redis/store.ts).
const client = new Redis(url, {
  maxRetriesPerRequest: 1,
  autoResendUnfulfilledCommands: false,
  commandTimeout: 2000,
})
let sent = 0
const send = client.sendCommand.bind(client)
client.sendCommand = ((...args: Parameters<typeof send>) => {
  sent++
  return send(...args)
}) as typeof send
const prefix = `benchspread${process.pid}:`
const storage = redisStorage({ client, keyPrefix: prefix })
const tb = createTollbooth({
  secret: 'bench-secret-bench-secret-bench-secret!',
  storage: { ...memoryStorage(), counters: storage.counters },
  usage: { flushIntervalMs: 60_000 },
})
const keys: string[] = []
for (let i = 0; i < ACCOUNTS; i++) {
  const { key } = await tb.keys.create({
    accountId: `acct_${i}`,
    limits: {
      rateLimits: [{ limit: 1e9, windowMs: 60_000 }],
      quotas: { daily: 1e9 },
      concurrency: 4,
    },
  })
  keys.push(key)
}
const req = (key: string): TollboothRequest => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'GET',
  path: '/',
})
const pick = () => keys[Math.floor(Math.random() * keys.length)]!

// Warm the key and account caches, so only counter calls are left.
for (const k of keys) tb.settleLater(await tb.authenticate(req(k)), { status: 200 })
await tb.flush()

let refused = 0
let next = 0
const before = sent
const started = performance.now()
await Promise.all(
  Array.from({ length: IN_FLIGHT }, async () => {
    while (next++ < REQUESTS) {
      const d = await tb.authenticate(req(pick()))
      if (!d.allowed) refused++
      tb.settleLater(d, { status: 200 })
    }
  }),
)
const loadMs = performance.now() - started
const underLoad = (sent - before) / REQUESTS
await tb.flush()

// Sequential, by MONITOR: this client's commands only (it shares the server).
const port = String((client as unknown as { stream: { localPort: number } }).stream.localPort)
// monitor() opens a connection of its own: both are closed after.
const base = new Redis(url, { enableReadyCheck: false })
const monitor = await base.monitor()
let seen = 0
monitor.on('monitor', (_t: string, _args: string[], source: string) => {
  if (source.endsWith(`:${port}`)) seen++
})
await new Promise((r) => setTimeout(r, 100))
seen = 0
for (let i = 0; i < 200; i++) tb.settleLater(await tb.authenticate(req(pick())), { status: 200 })
await tb.flush()
await new Promise((r) => setTimeout(r, 200))
const sequential = seen / 200
monitor.disconnect()
base.disconnect()

// Every lease released exactly once: each key admits 4 at once again.
let leaked = 0
for (const k of keys) {
  const ds = await Promise.all(Array.from({ length: 4 }, () => tb.authenticate(req(k))))
  leaked += ds.filter((d) => !d.allowed).length
  for (const d of ds) tb.settleLater(d, { status: 200 })
}
await tb.close()

let cursor = '0'
do {
  const [c, found] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
  cursor = c
  if (found.length) await client.del(...found)
} while (cursor !== '0')
client.disconnect()

console.log(
  JSON.stringify({
    accounts: ACCOUNTS,
    requests: REQUESTS,
    refused,
    reqPerSec: Math.round(REQUESTS / (loadMs / 1000)),
    callsPerRequestUnderLoad: Number(underLoad.toFixed(3)),
    callsPerRequestSequentialMonitor: Number(sequential.toFixed(3)),
    leasesNotReleased: leaked,
  }),
)
