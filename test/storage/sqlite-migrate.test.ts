/**
 * @module test/storage/sqlite-migrate
 *
 * A file of the previous schema (migration 1, written by the version before usage by key
 * category) with events and their totals: opening it migrates it, its totals count under
 * `uncategorized` keys on and off hour boundaries, new events are counted by their key's
 * category beside them, and pruning takes the old events out of the migrated totals.
 * A file of migration 2 (before each closed month's figures were kept) with an account that
 * rolled over: a month closed before shows no carryover nor balance, one closed after does.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { MIGRATIONS, migrate, sqliteStorage } from '../../adapters/sqlite/index.js'
import { expectUpgradedAccount, OLD_ACCOUNT } from '../support/account-upgrade.js'
import { fileAt } from '../support/sqlite.js'
import { expectUpgradedUsage } from '../support/usage-upgrade.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-migrate-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const HOUR = 3_600_000

describe('sqlite migrate: usage by key category', () => {
  it('upgrades a file of migration 1 with events and totals', async () => {
    const path = join(dir, 'v1.db')
    const t0 = 40 * HOUR
    const db = fileAt(path, 1)
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

    expect(await migrate({ path })).toEqual({
      applied: ['0002-usage-key-category', '0003-account-closed-periods', '0004-topups'],
    })
    expect(MIGRATIONS.map((m) => m.id)).toEqual([1, 2, 3, 4])
    const storage = sqliteStorage({ path })
    try {
      await expectUpgradedUsage(storage, t0)
    } finally {
      await storage.close()
    }
  })
})

describe('sqlite migrate: closed months keep their figures', () => {
  it('upgrades a file of migration 2 with an account rolled over', async () => {
    const path = join(dir, 'v2.db')
    const db = fileAt(path, 2)
    const a = OLD_ACCOUNT
    db.prepare(
      `INSERT INTO accounts (id, balance, carryover, period_start) VALUES (?, ?, ?, ?)`,
    ).run(a.id, a.balance, a.carryover, a.periodStart)
    db.prepare(
      `INSERT INTO usage_totals (account_id, hour, category, key_category, requests, units)
       VALUES (?, ?, 'tts', 'uncategorized', 7, ?)`,
    ).run(a.id, a.janHour, a.janUnits)
    db.close()

    // Opening it migrates it.
    const storage = sqliteStorage({ path })
    try {
      await expectUpgradedAccount(storage)
    } finally {
      await storage.close()
    }
  })
})
