/**
 * @module test/storage/sqlite-batch
 *
 * The SQLite counters' group commit: the calls of one event-loop turn are applied in one
 * transaction, in call order, and each answers only once it is committed; the rows kept from
 * one batch to the next are read again when another connection (`data_version`) or another
 * writer on the same handle (`total_changes()`) changed the file; a step that throws fails its
 * own call only; a batch that cannot take the write lock fails every call and commits nothing;
 * `close()` commits the calls still waiting.
 */

import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createDb } from '../../adapters/sqlite/db.js'
import {
  type SqliteStorage,
  sqliteCounterBackend,
  sqliteStorage,
} from '../../adapters/sqlite/index.js'
import { StorageUnavailableError } from '../../src/index.js'
import { total, usageEvent } from '../support/core.js'
import { Database } from './sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-batch-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Whether a counter's row is in the file, read by another connection. */
function stored(file: string, key: string): boolean {
  const other = new Database(file)
  try {
    return other.prepare('SELECT 1 FROM counters WHERE key = ?').get(key) !== undefined
  } finally {
    other.close()
  }
}

/** The used count of a total quota, through the counter contract (cost 0). */
async function used(storage: SqliteStorage, key: string): Promise<number> {
  const r = await storage.counters.consume([total(key, 1_000_000, 0)], Date.now())
  return r.results[0]!.used
}

describe('SQLite counters: group commit', () => {
  it('applies one turn’s calls in call order, and answers each once committed', async () => {
    const file = join(dir, 'order.db')
    const storage = sqliteStorage({ path: file })
    const now = Date.now()
    // 50 admissions in one turn on a quota of 20: the first 20 pass, in the order sent.
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => storage.counters.consume([total('q', 20)], now)),
    )
    expect(answers.map((a) => a.allowed)).toEqual(Array.from({ length: 50 }, (_, i) => i < 20))
    expect(answers.slice(0, 20).map((a) => a.results[0]!.used)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    )
    // Answered: committed, so another connection sees it.
    const p = storage.counters.consume([total('q2', 5)], now)
    expect(stored(file, 'q2')).toBe(false)
    expect((await p).allowed).toBe(true)
    expect(stored(file, 'q2')).toBe(true)
    const again = sqliteStorage({ path: file })
    expect(await used(again, 'q')).toBe(20)
    expect(await used(again, 'q2')).toBe(1)
    await again.close()
    await storage.close()
  })

  it('reads a row again once another connection, or another writer on the handle, changed it', async () => {
    const file = join(dir, 'cache.db')
    const a = sqliteStorage({ path: file })
    const b = sqliteStorage({ path: file })
    const now = Date.now()
    for (let i = 0; i < 3; i++) await a.counters.consume([total('k', 100)], now)
    await b.counters.consume([total('k', 100, 5)], now)
    // A's rows of its last batch are stale: another connection committed since.
    expect((await a.counters.consume([total('k', 100)], now)).results[0]!.used).toBe(9)
    expect(await used(b, 'k')).toBe(9)

    // Two storages on one handle: no other connection, the handle's own changes tell.
    const handle = new Database(file)
    const s1 = sqliteStorage({ database: handle })
    const s2 = sqliteStorage({ database: handle })
    await s1.counters.consume([total('h', 100)], now)
    await s2.counters.consume([total('h', 100, 10)], now)
    expect((await s1.counters.consume([total('h', 100)], now)).results[0]!.used).toBe(12)
    // A write of the handle outside the batches (here, the counters' own prune).
    handle.prepare('DELETE FROM counters WHERE key = ?').run('h')
    expect((await s1.counters.consume([total('h', 100)], now)).results[0]!.used).toBe(1)
    await s1.close()
    await s2.close()
    handle.close()
    await a.close()
    await b.close()
  })

  it('fails only the call whose step threw', async () => {
    const file = join(dir, 'throw.db')
    const handle = new Database(file)
    sqliteStorage({ database: handle }) // migrates
    const backend = sqliteCounterBackend(createDb(handle), 0)
    const put = (n: number) => () => ({
      writes: [{ key: 'x', value: { state: { n }, expiresAt: null } }],
      result: n,
    })
    const seen: unknown[] = []
    const calls = [
      backend.transact(['x'], put(1)),
      backend.transact(['x'], () => {
        throw new Error('step failed')
      }),
      backend.transact(['x'], (current) => {
        seen.push(current[0]?.state)
        return put(2)()
      }),
    ]
    const out = await Promise.allSettled(calls)
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((out[1] as PromiseRejectedResult).reason).toEqual(new Error('step failed'))
    expect(seen).toEqual([{ n: 1 }])
    const row = handle.prepare("SELECT state FROM counters WHERE key = 'x'").get() as {
      state: string
    }
    expect(JSON.parse(row.state)).toEqual({ n: 2 })
    handle.close()
  })

  it('fails every call of a batch that cannot take the lock, and commits none of it', async () => {
    const file = join(dir, 'locked.db')
    const storage = sqliteStorage({ path: file, busyTimeoutMs: 50 })
    const now = Date.now()
    await storage.counters.consume([total('l', 100)], now)
    const other = new Database(file)
    other.exec('BEGIN IMMEDIATE')
    const out = await Promise.allSettled(
      Array.from({ length: 5 }, () => storage.counters.consume([total('l', 100)], now)),
    )
    other.exec('COMMIT')
    other.close()
    expect(out.every((o) => o.status === 'rejected')).toBe(true)
    for (const o of out)
      expect((o as PromiseRejectedResult).reason).toBeInstanceOf(StorageUnavailableError)
    expect((await storage.counters.consume([total('l', 100)], now)).results[0]!.used).toBe(2)
    await storage.close()
  })

  it('commits the calls still waiting when the storage closes', async () => {
    const file = join(dir, 'close.db')
    const storage = sqliteStorage({ path: file })
    const now = Date.now()
    const pending = [
      storage.counters.consume([total('c', 10)], now),
      storage.counters.consume([total('c', 10)], now),
    ]
    await storage.close()
    expect((await Promise.all(pending)).map((r) => r.results[0]!.used)).toEqual([1, 2])
    const again = sqliteStorage({ path: file })
    expect(await used(again, 'c')).toBe(2)
    await again.close()
  })
})

describe('SQLite counters: the sweep of expired counters', () => {
  it('deletes them off the call path, a slice at a time: no call waits for the whole table', async () => {
    // 400,000 counters, 200,000 of them expired (idle rate limits of keys used an hour ago).
    const file = join(dir, 'sweep.db')
    const storage = sqliteStorage({ path: file, pruneEvery: 50, checkpointMs: 0 })
    const now = Date.now()
    const db = storage.database
    db.exec('BEGIN')
    const insert = db.prepare('INSERT INTO counters (key, state, expires_at) VALUES (?, ?, ?)')
    for (let i = 0; i < 400_000; i++)
      insert.run(
        `{acct_${i % 997}}:k:key_${i.toString(36).padStart(12, '0')}:r0:60/60000`,
        '{"level":1,"at":0}',
        i % 2 === 0 ? now - 1 : now + 3_600_000,
      )
    db.exec('COMMIT')
    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n
    // 200 calls, one after another: every 50th starts a sweep.
    let slowest = 0
    for (let i = 0; i < 200; i++) {
      const start = performance.now()
      await storage.counters.consume([total('live', 1_000_000)], now)
      slowest = Math.max(slowest, performance.now() - start)
    }
    const until = Date.now() + 30_000
    while (count('SELECT count(*) AS n FROM counters WHERE expires_at <= ' + now) > 0) {
      if (Date.now() > until) break
      await new Promise((r) => setTimeout(r, 50))
    }
    console.log(`slowest of 200 calls during the sweeps: ${slowest.toFixed(1)} ms`)
    expect(count(`SELECT count(*) AS n FROM counters WHERE expires_at <= ${now}`)).toBe(0)
    expect(
      count(`SELECT count(*) AS n FROM counters WHERE expires_at > ${now} OR expires_at IS NULL`),
    ).toBe(200_001)
    // A sweep in one statement, in the call, took 170-240 ms here; a slice takes milliseconds.
    expect(slowest).toBeLessThan(100)
    expect(await used(storage, 'live')).toBe(200)
    await storage.close()
  }, 60_000)
})

describe('SQLite: WAL checkpoints by a worker thread', () => {
  /** Writes about `n` usage events' worth of pages (below SQLite's own 1,000-page checkpoint). */
  async function write(storage: SqliteStorage, n: number): Promise<void> {
    const t = Date.now()
    await storage.usage.record(
      Array.from({ length: n }, (_, i) =>
        usageEvent(i, { time: t, path: `/p/${'x'.repeat(100)}` }),
      ),
    )
  }

  it('copies the WAL into the file off the main thread, and not without it', async () => {
    for (const checkpointMs of [50, 0]) {
      const file = join(dir, `checkpoint-${checkpointMs}.db`)
      const storage = sqliteStorage({ path: file, checkpointMs })
      await new Promise((r) => setTimeout(r, 200))
      const before = statSync(file).size
      await write(storage, 1500)
      await new Promise((r) => setTimeout(r, 300))
      const after = statSync(file).size
      // Only a checkpoint grows the database file itself; the commits went to the WAL.
      if (checkpointMs > 0) expect(after).toBeGreaterThan(before + 100_000)
      else expect(after).toBe(before)
      await storage.close()
    }
  })

  it('never keeps the process alive: a script that does not close its storage exits', () => {
    const adapter = pathToFileURL(
      fileURLToPath(new URL('../../adapters/sqlite/index.ts', import.meta.url)),
    ).href
    const script = join(dir, 'no-close.mts')
    writeFileSync(
      script,
      `import { sqliteStorage } from ${JSON.stringify(adapter)}
const s = sqliteStorage({ path: ${JSON.stringify(join(dir, 'no-close.db'))}, checkpointMs: 20 })
await s.counters.consume([{ type: 'window', key: 'k', name: 'n', limit: 10, windowMs: 0, bucketMs: 0, cost: 1 }], Date.now())
await new Promise((r) => setTimeout(r, 100))
console.log('done')
`,
    )
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(out.trim()).toBe('done')
  }, 40_000)

  it('refuses a bad checkpointMs, naming the option', () => {
    expect(() => sqliteStorage({ path: join(dir, 'bad.db'), checkpointMs: -1 })).toThrow(
      /options\.checkpointMs/,
    )
  })
})
