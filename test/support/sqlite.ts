/**
 * @module test/support/sqlite
 *
 * For the SQLite migration suites: a file as an earlier version of tollbooth left it
 * (`fileAt`), open on a handle of its own for the rows that version wrote.
 */

import { MIGRATIONS } from '../../adapters/sqlite/index.js'
import { Database, type TestDatabase } from '../storage/sqlite-driver.js'

/**
 * Creates the file at `path` migrated up to migration `upTo` (its `tollbooth_migrations`
 * table says so); the caller writes that version's rows on the handle returned, then closes it.
 */
export function fileAt(path: string, upTo: number): TestDatabase {
  const db = new Database(path)
  db.exec(`CREATE TABLE tollbooth_migrations (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`)
  for (const m of MIGRATIONS.filter((m) => m.id <= upTo)) {
    db.exec(m.sql)
    db.prepare('INSERT INTO tollbooth_migrations VALUES (?, ?, 0)').run(m.id, m.name)
  }
  return db
}
