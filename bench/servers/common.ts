/**
 * @module bench/servers/common
 *
 * What every benchmark server shares: a tollbooth instance on the memory store with one key
 * carrying a per-minute rate limit and a daily quota, on a plan whose credits a cost of 1 is
 * charged against (limits far above what a run can reach), and the hand-written floor.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import {
  createTollbooth,
  type HeaderFamilies,
  memoryStorage,
  type RouteOptions,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import { createFloor } from '../floor.js'

export const SECRET = 'bench-secret-bench-secret-bench-secret!'
export const PREFIX = 'sk_live_'

export const ALL_HEADERS: Partial<HeaderFamilies> = {
  requestId: true,
  rateLimit: true,
  ietf: true,
  usage: true,
}
export const RATE_LIMIT_ONLY: Partial<HeaderFamilies> = {
  requestId: false,
  rateLimit: true,
  ietf: false,
  usage: false,
}
export const IETF_ONLY: Partial<HeaderFamilies> = {
  requestId: false,
  rateLimit: false,
  ietf: true,
  usage: false,
}

const OPTIONS = {
  secret: SECRET,
  prefixes: { consumption: PREFIX, management: 'mk_live_' },
  plans: { bench: { monthlyCredits: 1e15 } },
  defaultTier: 'bench',
  failedAuth: false,
} as const

/**
 * Another instance over the same keys, accounts and usage (so the same key works) but with its
 * counters elsewhere: Redis or PostgreSQL, for the storage variants.
 */
export function withCounters(tb: Tollbooth, counters: Storage['counters']): Tollbooth {
  return createTollbooth({ ...OPTIONS, storage: { ...tb.storage, counters } })
}

export async function benchTollbooth(): Promise<{ tb: Tollbooth; key: string }> {
  const tb = createTollbooth({ ...OPTIONS, storage: memoryStorage() })
  const { key } = await tb.keys.create({
    accountId: 'acct_bench',
    name: 'bench',
    limits: { rateLimits: [{ limit: 1e9, windowMs: 60_000 }], quotas: { daily: 1e9 } },
  })
  return { tb, key }
}

export function route(headers: Partial<HeaderFamilies>): RouteOptions {
  return { cost: 1, headers }
}

export const floor = (key: string) => createFloor(PREFIX, SECRET, 10, key)

/** The variants every framework server offers, by name. */
export const VARIANTS = [
  'bare',
  'noop',
  'floor',
  'tollbooth',
  'tollbooth-peer-headers',
  'peer',
] as const
export type Variant = (typeof VARIANTS)[number]

/**
 * Which variants this process serves: the memory ones (the default), or, with
 * BENCH_VARIANTS=storage, `bare` and the storage ones. A storage variant's code paths (promises,
 * other result shapes) would otherwise share the JIT's inline caches with the memory variants
 * and slow them down, which no single-storage application sees.
 */
export const STORAGE_PROCESS = process.env.BENCH_VARIANTS === 'storage'

export function served(extra: Record<string, unknown>): string[] {
  return STORAGE_PROCESS ? ['bare', ...Object.keys(extra)] : [...VARIANTS]
}

const cleanups: Array<() => Promise<unknown>> = []

/**
 * Work the server finishes before it exits on SIGINT or SIGTERM (a schema dropped, say), for
 * at most 5 s: an `exit` listener cannot wait for a query.
 */
export function onShutdown(fn: () => Promise<unknown>): void {
  cleanups.push(fn)
}

/** Prints `{ pid, ports, key }` as one JSON line for the runner. */
export function announce(ports: Record<string, number>, key: string): void {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ports, key })}\n`)
  // Exit normally on a signal, so `--cpu-prof` writes its profile.
  for (const s of ['SIGINT', 'SIGTERM'] as const)
    process.on(s, () => {
      const late = new Promise((resolve) => setTimeout(resolve, 5000).unref())
      void Promise.race([Promise.allSettled(cleanups.map((f) => f())), late]).then(() =>
        process.exit(0),
      )
    })
}

export const portOf = (server: { address(): AddressInfo | string | null }) =>
  (server.address() as AddressInfo).port

/**
 * An ioredis client that counts the commands it sends (other processes may share the Redis
 * server, so counting there would not do), or null without REDIS_URL.
 */
export function countedRedis(): { client: Redis; commands(): number } | null {
  if (!process.env.REDIS_URL) return null
  // As the README recommends: with `autoResendUnfulfilledCommands: false` and a
  // `commandTimeout` the counters run on this client (not on a connection of their own,
  // adapters/redis/store.ts), so its count includes them.
  const client = new Redis(process.env.REDIS_URL, {
    maxRetriesPerRequest: 1,
    autoResendUnfulfilledCommands: false,
    commandTimeout: 2000,
  })
  let n = 0
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((...args: Parameters<typeof send>) => {
    n++
    return send(...args)
  }) as typeof send
  return { client, commands: () => n }
}

/**
 * The Redis variants every framework server offers when REDIS_URL is set: tollbooth with its
 * counters on Redis (keys, accounts and usage stay in memory, as cached keys would), with
 * every header family and with only the peer's (as `tollbooth-peer-headers`), and the peer
 * limiter on its Redis store. Each counts its own commands.
 */
export function redisVariants(tb: Tollbooth): {
  tb: Tollbooth
  peer: Redis
  /** Commands sent so far, by variant. */
  commands: Record<string, () => number>
} | null {
  if (!STORAGE_PROCESS) return null
  const ours = countedRedis()
  const theirs = countedRedis()
  if (!ours || !theirs) return null
  const prefix = `bench${process.pid}:`
  const counters = redisStorage({ client: ours.client, keyPrefix: prefix }).counters
  // The counters outlive the run by their TTLs (a month for credits): deleted at shutdown.
  onShutdown(async () => {
    let cursor = '0'
    do {
      const [next, found] = await ours.client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (found.length > 0) await ours.client.del(...found)
    } while (cursor !== '0')
  })
  return {
    tb: withCounters(tb, counters),
    peer: theirs.client,
    commands: {
      'tollbooth-redis': ours.commands,
      'tollbooth-peer-headers-redis': ours.commands,
      'peer-redis': theirs.commands,
    },
  }
}

/**
 * The SQLite variant (storage process only): another instance with every store in one SQLite
 * file of a temporary folder (removed at exit), holding the same key record, so the same key
 * works. Unlike the Redis and PostgreSQL variants, keys, accounts and usage are on SQLite too:
 * that is how the store is used. BENCH_SQLITE=0 leaves it out.
 */
export async function sqliteVariant(tb: Tollbooth): Promise<Tollbooth | null> {
  if (!STORAGE_PROCESS || process.env.BENCH_SQLITE === '0') return null
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-bench-'))
  const storage = sqliteStorage({ path: join(dir, 'bench.db') })
  process.on('exit', () => {
    void storage.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const page = await tb.storage.keys.list('acct_bench', { limit: 10 })
  for (const k of page.data) await storage.keys.insert(k)
  return createTollbooth({ ...OPTIONS, storage })
}
