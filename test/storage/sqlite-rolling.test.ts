/**
 * @module test/storage/sqlite-rolling
 *
 * A rolling deploy on one SQLite file: a process of this version keeps running while a later
 * version, started beside it, migrates the file past what this one knows. A later migration
 * that keeps this version's statements working (a column added) changes nothing for it; one
 * that breaks them (here, as migration 2 did to the version before it: the usage totals keyed
 * by one more column, so this version's upsert names no key of the table) fails its calls as
 * the storage being unavailable (a 503 `storage_unavailable`), naming both schema versions,
 * not with a bare SQLite error (a 500 on the request path), and write nothing.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { MIGRATIONS, sqliteStorage } from '../../adapters/sqlite/index.js'
import { expectFailsAsNewer, expectKeepsServing, rollingEvent } from '../support/rolling.js'
import { Database } from './sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-rolling-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const LATEST = MIGRATIONS[MIGRATIONS.length - 1]!.id

/** Another process of a later version migrates the file (its own connection). */
function laterMigration(path: string, sql: string): void {
  const db = new Database(path)
  try {
    db.exec(`BEGIN IMMEDIATE; ${sql};
      INSERT INTO tollbooth_migrations (id, name, applied_at) VALUES (${LATEST + 1}, 'later', 0);
      COMMIT`)
  } finally {
    db.close()
  }
}

describe('SQLite: the file migrated past this version by a later one', () => {
  it('a later migration this version can work with: it keeps serving', async () => {
    const path = join(dir, 'compatible.db')
    const storage = sqliteStorage({ path, checkpointMs: 0 })
    await expectKeepsServing(storage, (sql) => laterMigration(path, sql))
    await storage.close()
  })

  it('one it cannot work with: its calls fail as unavailable, naming both versions', async () => {
    const path = join(dir, 'breaking.db')
    const storage = sqliteStorage({ path, checkpointMs: 0 })
    await storage.usage.record([rollingEvent(1)])
    laterMigration(
      path,
      `CREATE TABLE usage_totals_next (account_id TEXT NOT NULL, hour INTEGER NOT NULL,
         category TEXT NOT NULL, key_category TEXT NOT NULL, region TEXT NOT NULL,
         requests INTEGER NOT NULL, units REAL NOT NULL,
         PRIMARY KEY (account_id, hour, category, key_category, region)) WITHOUT ROWID;
       INSERT INTO usage_totals_next SELECT account_id, hour, category, key_category, '', requests,
         units FROM usage_totals;
       DROP TABLE usage_totals;
       ALTER TABLE usage_totals_next RENAME TO usage_totals`,
    )
    await expectFailsAsNewer(storage.usage.record([rollingEvent(2)]), {
      later: LATEST + 1,
      known: LATEST,
    })
    // Nothing of the failed batch was written.
    const count = storage.database.prepare('SELECT count(*) AS n FROM usage_events').get() as {
      n: number
    }
    expect(count.n).toBe(1)
    await storage.close()
  })
})
