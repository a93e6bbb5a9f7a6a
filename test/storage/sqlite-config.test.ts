/**
 * @module test/storage/sqlite-config
 *
 * Bad input to `tollbooth/sqlite` is a thrown ConfigError naming the option: a path that
 * cannot be opened, a file of a later schema, a file that is not a database (refused and left
 * as it was, never recreated), a file not migrated with `migrate: false`. Also: `migrate()`
 * applies each migration once, and the library's default in-memory storage warns once under
 * `NODE_ENV=production` while a SQLite storage does not.
 */

import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { MIGRATIONS, migrate, sqliteStorage } from '../../adapters/sqlite/index.js'
import { ConfigError, createTollbooth } from '../../src/index.js'
import { Database, type TestDatabase } from './sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('sqliteStorage: bad input', () => {
  it('a path that cannot be opened is a ConfigError naming options.path', () => {
    const path = join(dir, 'no-such-folder', 'x.db')
    expect(() => sqliteStorage({ path })).toThrow(ConfigError)
    expect(() => sqliteStorage({ path })).toThrow(
      /options\.path .*no-such-folder.* cannot be opened: .*\(create its folder first: the file is created, the folder is not\)$/,
    )
  })

  it('a path with a NUL is a ConfigError naming options.path, and opens no file', async () => {
    // The driver hands the path to C, which ends it at the NUL: `a.db\0b` opened `a.db`.
    for (const option of [{ path: join(dir, 'nul.db\u0000x') }]) {
      expect(() => sqliteStorage(option)).toThrow(ConfigError)
      expect(() => sqliteStorage(option)).toThrow(/options\.path must not contain a NUL/)
      await expect(migrate(option)).rejects.toThrow(/options\.path must not contain a NUL/)
    }
    expect(existsSync(join(dir, 'nul.db'))).toBe(false)
  })

  it('refuses a file that is not a database and leaves it untouched', async () => {
    const path = join(dir, 'corrupt.db')
    const junk = Buffer.from(
      'this is not a SQLite file, it is a ledger in plain text\n'.repeat(200),
    )
    writeFileSync(path, junk)
    expect(() => sqliteStorage({ path })).toThrow(
      /options\.path .*corrupt\.db.* is not a usable SQLite database .*will not overwrite/,
    )
    expect(readFileSync(path).equals(junk)).toBe(true)
    await expect(migrate({ path })).rejects.toThrow(ConfigError)
  })

  it('refuses a file whose pages are damaged', async () => {
    const path = join(dir, 'damaged.db')
    const s = sqliteStorage({ path })
    await s.accounts.ensure({
      id: 'acct_1',
      tier: null,
      balance: 5,
      carryover: 0,
      periodStart: 0,
      tierExpiresAt: null,
      billingCustomerId: null,
      metadata: {},
    })
    await s.close()
    // Overwrite the header's page size and the first page's b-tree with junk.
    const bytes = readFileSync(path)
    bytes.fill(0xab, 16, 4096)
    writeFileSync(path, bytes)
    expect(() => sqliteStorage({ path })).toThrow(ConfigError)
    expect(() => sqliteStorage({ path })).toThrow(
      /damaged\.db.* (is not a usable SQLite database|options\.path)/,
    )
  })

  it('refuses a file of a later schema version, naming the option', () => {
    const path = join(dir, 'later.db')
    sqliteStorage({ path }).close()
    const db = new Database(path)
    db.prepare('INSERT INTO tollbooth_migrations (id, name, applied_at) VALUES (?, ?, ?)').run(
      99,
      '0099-future',
      0,
    )
    db.close()
    expect(() => sqliteStorage({ path })).toThrow(
      /options\.path holds a tollbooth schema of a later version \(migration 99/,
    )
    const own = new Database(path)
    expect(() => sqliteStorage({ database: own })).toThrow(
      /options\.database holds a tollbooth schema of a later version/,
    )
    own.close()
  })

  it('refuses a file it cannot write, naming the option, before serving anything', async () => {
    // A read-only handle, as SQLite opens a file on a read-only mount or without write
    // permission: it read fine, and every write failed later (a key create, a flush).
    const path = join(dir, 'readonly.db')
    await sqliteStorage({ path }).close()
    const ReadOnly = Database as unknown as new (
      path: string,
      options: { readonly: boolean },
    ) => TestDatabase
    const ro = new ReadOnly(path, { readonly: true })
    expect(() => sqliteStorage({ database: ro })).toThrow(ConfigError)
    expect(() => sqliteStorage({ database: ro })).toThrow(
      /options\.database cannot be opened for writing \(SQLITE_READONLY/,
    )
    expect(() => sqliteStorage({ database: ro, migrate: false })).toThrow(
      /options\.database cannot be opened for writing \(SQLITE_READONLY/,
    )
    ro.close()
    if (process.getuid?.() !== 0) {
      // Root writes a file whatever its mode.
      chmodSync(path, 0o444)
      expect(() => sqliteStorage({ path })).toThrow(
        /options\.path .*readonly\.db.* cannot be opened for writing/,
      )
      chmodSync(path, 0o644)
    }
    // The file is unchanged and opens for writing as before.
    await sqliteStorage({ path }).close()
  })

  it('with migrate: false, refuses a file not migrated; migrate() applies each step once', async () => {
    const path = join(dir, 'fresh.db')
    expect(() => sqliteStorage({ path, migrate: false })).toThrow(/options\.path is not migrated/)
    expect((await migrate({ path })).applied).toEqual(MIGRATIONS.map((m) => m.name))
    expect((await migrate({ path })).applied).toEqual([])
    await sqliteStorage({ path, migrate: false }).close()
  })

  it('names each bad option', () => {
    expect(() => sqliteStorage({} as never)).toThrow(
      /exactly one of options\.database .* and options\.path/,
    )
    expect(() => sqliteStorage({ database: {} as never })).toThrow(
      /options\.database must be a better-sqlite3 or libsql Database/,
    )
    expect(() => sqliteStorage({ path: join(dir, 'a.db'), busyTimeoutMs: -1 })).toThrow(
      /options\.busyTimeoutMs/,
    )
    expect(() => sqliteStorage({ path: join(dir, 'a.db'), synchronous: 'off' as never })).toThrow(
      /options\.synchronous/,
    )
    expect(() => sqliteStorage({ path: join(dir, 'a.db'), changePollMs: 0 })).toThrow(
      /options\.changePollMs/,
    )
    expect(() => sqliteStorage({ path: join(dir, 'a.db'), pruneEvery: 1.5 })).toThrow(
      /options\.pruneEvery/,
    )
  })

  it('checks its options through parseOptions: one message format, unknown options refused', async () => {
    const path = join(dir, 'a.db')
    expect(() => sqliteStorage({ path, busyTimeoutMs: -1 })).toThrow(
      /^sqliteStorage: options\.busyTimeoutMs must be an integer >= 0 \(milliseconds\), got -1$/,
    )
    expect(() => sqliteStorage({ path, changePollMs: 0 })).toThrow(
      /^sqliteStorage: options\.changePollMs must be an integer >= 1 \(milliseconds\), got 0$/,
    )
    expect(() => sqliteStorage({ path, pruneEvery: 1.5 })).toThrow(
      /^sqliteStorage: options\.pruneEvery must be an integer >= 0, got 1\.5$/,
    )
    expect(() => sqliteStorage({ path, migrate: 'yes' as never })).toThrow(
      /^sqliteStorage: options\.migrate must be a boolean, got "yes"$/,
    )
    expect(() => sqliteStorage({ path, synchronous: 'off' as never })).toThrow(
      /^sqliteStorage: options\.synchronous must be 'normal' or 'full', got "off"$/,
    )
    expect(() => sqliteStorage({ path, onError: 1 as never })).toThrow(
      /^sqliteStorage: options\.onError must be a function, got 1$/,
    )
    expect(() => sqliteStorage({ path, busyTimeout: 5 } as never)).toThrow(
      /^sqliteStorage: options\.busyTimeout is not an option$/,
    )
    await expect(migrate({ path, busyTimeoutMs: -1 })).rejects.toThrow(
      /^migrate: options\.busyTimeoutMs must be an integer >= 0 \(milliseconds\), got -1$/,
    )
  })

  it('sets WAL and the busy timeout on the user’s handle, and leaves it open on close', async () => {
    const db = new Database(join(dir, 'own.db'))
    const s = sqliteStorage({ database: db, busyTimeoutMs: 900 })
    expect((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe(
      'wal',
    )
    expect((db.prepare('PRAGMA busy_timeout').get() as { timeout: number }).timeout).toBe(900)
    await s.close()
    expect(db.open).toBe(true)
    db.close()
  })
})

describe('warnings under NODE_ENV=production', () => {
  it('the default in-memory storage warns once; a SQLite storage does not warn', async () => {
    const env = process.env.NODE_ENV
    process.env.NODE_ENV = 'production'
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const secret = 'sqlite-config-test-secret-0123456789abcdef'
      const s = sqliteStorage({ path: join(dir, 'prod.db') })
      createTollbooth({ secret, storage: s })
      expect(warn).not.toHaveBeenCalled()
      await s.close()
      createTollbooth({ secret })
      createTollbooth({ secret })
      const codes = warn.mock.calls.map((c) => String(c[0]).match(/TOLLBOOTH_\w+/)?.[0])
      expect(codes.filter((c) => c === 'TOLLBOOTH_MEMORY_STORAGE')).toHaveLength(1)
    } finally {
      warn.mockRestore()
      process.env.NODE_ENV = env
    }
  })
})
