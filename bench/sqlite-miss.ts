/**
 * @module bench/sqlite-miss
 *
 * `authenticate()` on a key-cache miss against a SQLite file holding 1 000 000 keys (by
 * default), beside `bench/postgres-miss.ts`: the filler keys go in with one recursive
 * `INSERT … SELECT`, then 1 000 real keys through `tb.keys.create`; the cache is off, so every
 * call is a miss.
 *
 * Measured, one call at a time (p50 / p99 / mean):
 * - `SELECT 1`: a statement's floor through the driver;
 * - `keys.getByHash`: the storage lookup alone;
 * - authenticate, a known key without limits: lookup + pipeline (no counters);
 * - authenticate, a known key with a rate limit and a daily quota: plus one `consume`
 *   transaction (BEGIN IMMEDIATE, read, write, COMMIT);
 * - authenticate, a well-formed key that is not stored: the 401 path.
 *
 * Usage: `npx tsx bench/sqlite-miss.ts [iterations=5000] [keys=1000000]`. The file is in a
 * temporary folder, removed after.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sqliteStorage } from '../adapters/sqlite/index.js'
import { createTollbooth } from '../src/index.js'

const N = Number(process.argv[2] ?? 5000)
const REAL = 1000
const FILLER = Number(process.argv[3] ?? 1_000_000) - REAL
const SECRET = 'sqlite-miss-benchmark-secret-0123456789'

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

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-miss-'))
  try {
    const storage = sqliteStorage({ path: join(dir, 'miss.db') })
    const db = storage.database
    let t = performance.now()
    db.exec(
      `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${FILLER})
       INSERT INTO keys (id, hash, start, name, account_id, kind, created_at, limits)
       SELECT 'key_0' || printf('%09d', i), printf('%016x%016x%016x%016x', i, -i, i * 7919, i * 104729),
              'sk_live_abcd', 'filler', 'acct_' || (i % 5000), 'consumption', 1767225600000 + i, '{}'
       FROM s`,
    )
    console.log(`inserted ${FILLER} filler keys in ${(performance.now() - t).toFixed(0)} ms`)
    const options = { secret: SECRET, storage, cache: false as const, failedAuth: false as const }
    const tb = createTollbooth(options)
    t = performance.now()
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
    db.exec('ANALYZE')
    const hashes = (
      db.prepare('SELECT hash FROM keys ORDER BY random() LIMIT 1000').all() as Array<{
        hash: string
      }>
    ).map((r) => r.hash)
    const stranger = createTollbooth({ ...options, storage: { ...storage, keys: nullKeys() } })
    const unknown: string[] = []
    for (let i = 0; i < 1000; i++)
      unknown.push((await stranger.keys.create({ accountId: 'acct_x' })).key)
    console.log(
      `\nauthenticate() on a cache miss, ${FILLER + REAL} keys, ${N} calls each, one at a time:`,
    )
    const one = db.prepare('SELECT 1')
    const out = {
      roundTrip: await measure('SELECT 1 (statement floor)', N, async () => one.get()),
      getByHash: await measure('keys.getByHash', N, (i) =>
        storage.keys.getByHash(hashes[i % hashes.length]!),
      ),
      noLimits: await measure('authenticate: known key, no limits', N, (i) =>
        tb.authenticate(request(plain[i % plain.length]!)).then(expectAllowed),
      ),
      withLimits: await measure('authenticate: known key, rate limit + quota', N, (i) =>
        tb.authenticate(request(limited[i % limited.length]!)).then(expectAllowed),
      ),
      unknownKey: await measure('authenticate: unknown key (401)', N, (i) =>
        tb.authenticate(request(unknown[i % unknown.length]!)).then((d) => {
          if (d.allowed || d.status !== 401) throw new Error('expected a 401')
        }),
      ),
    }
    console.log(JSON.stringify(out))
    await tb.close()
    await stranger.close()
    await storage.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
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

await main()
