/**
 * @module test/storage/sqlite-migrate
 *
 * A file of the previous schema (migration 1, written by the version before usage by key
 * category) with events and their totals: opening it migrates it, its totals count under
 * `uncategorized` keys on and off hour boundaries, new events are counted by their key's
 * category beside them, and pruning takes the old events out of the migrated totals.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { INIT_SQL, MIGRATIONS, migrate, sqliteStorage } from '../../adapters/sqlite/index.js'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import { Database } from './sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-migrate-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const HOUR = 3_600_000

describe('sqlite migrate: usage by key category', () => {
  it('upgrades a file of migration 1 with events and totals', async () => {
    const path = join(dir, 'v1.db')
    const t0 = 40 * HOUR
    const db = new Database(path)
    db.exec(INIT_SQL)
    db.exec(`CREATE TABLE tollbooth_migrations (
      id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
      INSERT INTO tollbooth_migrations VALUES (1, '0001-init', 0)`)
    // 200 events over two hours as the previous version recorded them, with their totals.
    const insert = db.prepare(
      `INSERT INTO usage_events (id, request_id, key_id, account_id, occurred_at, units,
         category, status, duration_ms, method, path) VALUES (?, ?, 'key_1', 'acct_1', ?, 1, ?,
         200, 1, 'GET', '/')`,
    )
    for (let i = 0; i < 200; i++)
      insert.run(`req_${i}`, `req_${i}`, t0 + i * 36_000, i % 2 === 0 ? 'tts' : null)
    db.exec(`INSERT INTO usage_totals (account_id, hour, category, requests, units)
      SELECT account_id, occurred_at - occurred_at % ${HOUR}, coalesce(category, 'uncategorized'),
             count(*), sum(units) FROM usage_events GROUP BY 1, 2, 3`)
    db.close()

    expect(await migrate({ path })).toEqual({ applied: ['0002-usage-key-category'] })
    expect(MIGRATIONS.map((m) => m.id)).toEqual([1, 2])
    const storage = sqliteStorage({ path })
    try {
      const at = (i: number, keyCategory: string | null) =>
        makeEvent({
          accountId: 'acct_1',
          keyId: 'key_2',
          time: t0 + i * 1000,
          units: 5,
          keyCategory,
        })
      await storage.usage.record([at(1, 'production'), at(2, 'production'), at(3, null)])
      const summary = await storage.usage.summarize('acct_1', t0, t0 + 2 * HOUR)
      expect(summary).toEqual({
        requests: 203,
        units: 215,
        byCategory: {
          tts: { requests: 103, units: 115 },
          uncategorized: { requests: 100, units: 100 },
        },
        byKeyCategory: {
          production: { requests: 2, units: 10 },
          uncategorized: { requests: 201, units: 205 },
        },
      })
      // Off hour boundaries the old events are read themselves (req_0 at t0 left out).
      expect(await storage.usage.summarize('acct_1', t0 + 1, t0 + 2 * HOUR)).toEqual({
        requests: 202,
        units: 214,
        byCategory: {
          tts: { requests: 102, units: 114 },
          uncategorized: { requests: 100, units: 100 },
        },
        byKeyCategory: {
          production: { requests: 2, units: 10 },
          uncategorized: { requests: 200, units: 204 },
        },
      })
      expect(
        await storage.usage.summarize('acct_1', t0, t0 + 2 * HOUR, {
          keyCategory: 'uncategorized',
        }),
      ).toMatchObject({ requests: 201, units: 205 })
      const old = await storage.usage.logs('key_1', { limit: 1 })
      expect(old.data[0]).toMatchObject({ id: 'req_199', keyCategory: null })
      expect(await storage.usage.prune(t0 + 2 * HOUR)).toBe(203)
      expect((await storage.usage.summarize('acct_1', 0, t0 + 2 * HOUR)).requests).toBe(0)
    } finally {
      await storage.close()
    }
  })
})
