/**
 * @module test/storage/sqlite-driver
 *
 * `better-sqlite3`'s constructor for the tests that open their own handle, typed with the
 * adapter's own `SqliteDatabase` (the package ships no types, and the adapter needs none).
 */

import { createRequire } from 'node:module'
import type { SqliteDatabase } from '../../adapters/sqlite/index.js'

export type TestDatabase = SqliteDatabase & { readonly open: boolean; close(): void }

export const Database = createRequire(import.meta.url)('better-sqlite3') as new (
  path: string,
) => TestDatabase
