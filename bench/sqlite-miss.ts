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
import { REAL, runMissBench } from './cache-miss.js'

const N = Number(process.argv[2] ?? 5000)
const FILLER = Number(process.argv[3] ?? 1_000_000) - REAL
const SECRET = 'sqlite-miss-benchmark-secret-0123456789'

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-miss-'))
  try {
    const storage = sqliteStorage({ path: join(dir, 'miss.db') })
    const db = storage.database
    const t = performance.now()
    db.exec(
      `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${FILLER})
       INSERT INTO keys (id, hash, start, name, account_id, kind, created_at, limits)
       SELECT 'key_0' || printf('%09d', i), printf('%016x%016x%016x%016x', i, -i, i * 7919, i * 104729),
              'sk_live_abcd', 'filler', 'acct_' || (i % 5000), 'consumption', 1767225600000 + i, '{}'
       FROM s`,
    )
    console.log(`inserted ${FILLER} filler keys in ${(performance.now() - t).toFixed(0)} ms`)
    const one = db.prepare('SELECT 1')
    await runMissBench({
      storage,
      secret: SECRET,
      n: N,
      total: FILLER + REAL,
      floor: ['SELECT 1 (statement floor)', async () => one.get()],
      async sample() {
        db.exec('ANALYZE')
        const rows = db.prepare('SELECT hash FROM keys ORDER BY random() LIMIT 1000').all()
        return (rows as Array<{ hash: string }>).map((r) => r.hash)
      },
    })
    await storage.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
