/**
 * @module bench/postgres-miss
 *
 * `authenticate()` on a key-cache miss against PostgreSQL holding 1 000 000 keys (by default):
 * the cost a request pays when its key is not in this instance's cache (first use, after the
 * TTL, after a revocation elsewhere). The filler keys go in with one
 * `INSERT … SELECT generate_series`, then 1 000 real keys through `tb.keys.create`; the cache
 * is off, so every call is a miss.
 *
 * Measured, one call at a time on one connection's worth of latency (p50 / p99 / mean):
 * - `SELECT 1`: the round trip to the server, the floor;
 * - `keys.getByHash`: the storage lookup alone;
 * - authenticate, a known key without limits: lookup + pipeline (no counters);
 * - authenticate, a known key with a rate limit and a daily quota: plus one `consume`
 *   transaction (BEGIN, lock-and-read, write, COMMIT);
 * - authenticate, a well-formed key that is not stored: the 401 path.
 *
 * Usage: `npx tsx bench/postgres-miss.ts [iterations=5000] [keys=1000000]` with DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/test). Uses a schema `tb_bench_<random>`, dropped after.
 */

import pg from 'pg'
import { migrate, postgresStorage } from '../adapters/postgres/index.js'
import { REAL, runMissBench } from './cache-miss.js'

const URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const N = Number(process.argv[2] ?? 5000)
const FILLER = Number(process.argv[3] ?? 1_000_000) - REAL
const SECRET = 'postgres-miss-benchmark-secret-0123456789'

async function main() {
  const pool = new pg.Pool({ connectionString: URL, max: 4 })
  const schema = `tb_bench_${Math.random().toString(36).slice(2, 10)}`
  try {
    await migrate({ pool, schema })
    const t = performance.now()
    await pool.query(
      `INSERT INTO "${schema}".keys (id, hash, start, name, account_id, kind, created_at, limits)
       SELECT 'key_0' || lpad(i::text, 9, '0'), md5(i::text) || md5((-i)::text), 'sk_live_abcd',
              'filler', 'acct_' || (i % 5000), 'consumption', 1767225600000 + i, '{}'
       FROM generate_series(1, ${FILLER}) AS i`,
    )
    console.log(`inserted ${FILLER} filler keys in ${(performance.now() - t).toFixed(0)} ms`)
    const storage = postgresStorage({ pool, schema })
    await runMissBench({
      storage,
      secret: SECRET,
      n: N,
      total: FILLER + REAL,
      floor: ['SELECT 1 (round trip)', () => pool.query('SELECT 1')],
      async sample() {
        await pool.query(`ANALYZE "${schema}".keys`)
        const { rows } = await pool.query<{ hash: string }>(
          `SELECT hash FROM "${schema}".keys ORDER BY random() LIMIT 1000`,
        )
        return rows.map((r) => r.hash)
      },
    })
    await storage.close()
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  }
}

await main()
