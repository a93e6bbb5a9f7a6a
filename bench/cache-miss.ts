/**
 * @module bench/cache-miss
 *
 * What `bench/postgres-miss.ts` and `bench/sqlite-miss.ts` share: with the store filled (by
 * the script, in its own SQL), 1 000 real keys go in through `tb.keys.create` (half with a
 * rate limit and a quota), and `authenticate()` is timed on a key-cache miss, one call at a
 * time (p50 / p99 / mean): the store's floor, `keys.getByHash`, a known key without and with
 * limits, and a well-formed key that is not stored (401).
 */

import { createTollbooth, type Storage } from '../src/index.js'

export const REAL = 1000

interface Figures {
  p50: number
  p99: number
  mean: number
}

async function measure(label: string, n: number, fn: (i: number) => Promise<unknown>) {
  for (let i = 0; i < Math.min(500, n); i++) await fn(i) // warm-up: JIT, plans, buffers
  const ms = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await fn(i)
    ms[i] = performance.now() - t
  }
  ms.sort()
  const f: Figures = {
    p50: ms[Math.floor(n * 0.5)]!,
    p99: ms[Math.floor(n * 0.99)]!,
    mean: ms.reduce((s, x) => s + x, 0) / n,
  }
  const fmt = (x: number) => `${x.toFixed(3)} ms`.padStart(10)
  console.log(`${label.padEnd(46)} p50 ${fmt(f.p50)}  p99 ${fmt(f.p99)}  mean ${fmt(f.mean)}`)
  return f
}

const request = (key: string) => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'GET',
  path: '/v1/thing',
})

export interface MissBench {
  storage: Storage
  secret: string
  /** Calls per measurement. */
  n: number
  /** Keys in the store (filler and real). */
  total: number
  /** The store's floor: a label and one call (`SELECT 1`). */
  floor: [string, () => Promise<unknown>]
  /** After the real keys went in: refresh the planner's statistics, then 1 000 stored hashes. */
  sample(): Promise<string[]>
}

/** Creates the real keys, then prints and returns every measurement. */
export async function runMissBench(b: MissBench): Promise<Record<string, Figures>> {
  const options = {
    secret: b.secret,
    storage: b.storage,
    cache: false as const,
    failedAuth: false as const,
  }
  const tb = createTollbooth(options)
  const t = performance.now()
  const plain: string[] = []
  const limited: string[] = []
  for (let i = 0; i < REAL; i++) {
    const limits =
      i % 2 ? { rateLimits: [{ limit: 1e9, windowMs: 1000 }], quotas: { daily: 1e9 } } : {}
    const { key } = await tb.keys.create({ accountId: `acct_real_${i % 50}`, limits })
    ;(i % 2 ? limited : plain).push(key)
  }
  console.log(
    `created ${REAL} keys through tb.keys.create in ${(performance.now() - t).toFixed(0)} ms`,
  )
  const hashes = await b.sample()
  // Well-formed keys (right prefix and checksum) that are not stored: minted by a second
  // instance whose key store keeps nothing.
  const stranger = createTollbooth({ ...options, storage: { ...b.storage, keys: nullKeys() } })
  const unknown: string[] = []
  for (let i = 0; i < 1000; i++)
    unknown.push((await stranger.keys.create({ accountId: 'acct_x' })).key)
  const n = b.n
  console.log(`\nauthenticate() on a cache miss, ${b.total} keys, ${n} calls each, one at a time:`)
  const out = {
    roundTrip: await measure(b.floor[0], n, b.floor[1]),
    getByHash: await measure('keys.getByHash', n, (i) =>
      b.storage.keys.getByHash(hashes[i % hashes.length]!),
    ),
    noLimits: await measure('authenticate: known key, no limits', n, (i) =>
      tb.authenticate(request(plain[i % plain.length]!)).then(expectAllowed),
    ),
    withLimits: await measure('authenticate: known key, rate limit + quota', n, (i) =>
      tb.authenticate(request(limited[i % limited.length]!)).then(expectAllowed),
    ),
    unknownKey: await measure('authenticate: unknown key (401)', n, (i) =>
      tb.authenticate(request(unknown[i % unknown.length]!)).then((d) => {
        if (d.allowed || d.status !== 401) throw new Error('expected a 401')
      }),
    ),
  }
  console.log(JSON.stringify(out))
  await tb.close()
  await stranger.close()
  return out
}

function expectAllowed(d: { allowed: boolean; status?: number }) {
  if (!d.allowed) throw new Error(`expected an admission, got ${d.status}`)
}

/** A key store that keeps nothing: keys minted on it exist nowhere. */
function nullKeys() {
  return {
    insert: async () => {},
    get: async () => null,
    getByHash: async () => null,
    list: async () => ({ data: [], nextCursor: null }),
    update: async () => null,
    rotate: async () => null,
    delete: async () => false,
    touch: async () => {},
  }
}
