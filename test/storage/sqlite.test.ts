/**
 * @module test/storage/sqlite
 *
 * The storage conformance suite on `sqliteStorage()`: a file in a temporary folder, removed
 * afterwards; once opened by path (better-sqlite3 loaded by the adapter), once on the user's
 * own handle.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe } from 'vitest'
import { type SqliteStorage, sqliteStorage } from '../../adapters/sqlite/index.js'
import { describeStorageConformance } from '../../adapters/testing/index.js'
import { Database } from './sqlite-driver.js'

describe('sqlite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-'))
  let byPath: SqliteStorage | null = null
  const handle = new Database(join(dir, 'own.db'))
  afterAll(async () => {
    await byPath?.close()
    handle.close()
    rmSync(dir, { recursive: true, force: true })
  })

  describeStorageConformance('sqlite (path)', async () => {
    byPath ??= sqliteStorage({ path: join(dir, 'tollbooth.db'), changePollMs: 20 })
    return { storage: byPath }
  })
  describeStorageConformance('sqlite (own handle)', async () => ({
    storage: sqliteStorage({ database: handle, changePollMs: 20 }),
  }))
})
