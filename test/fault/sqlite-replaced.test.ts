/**
 * @module test/fault/sqlite-replaced
 *
 * The SQLite file deleted, or another moved in over its name, while processes run on it (a
 * restore from a backup, a clean-up script, a deploy that ships a database). Each process
 * keeps its handle on the old file, which no name reaches any more: every write there is lost
 * at the next start. The storage notices and refuses to write (`StorageUnavailableError`, a
 * 503), says so through `onError`, and never writes to the old file again.
 */

import { copyFileSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { FILE_CHECK_MS } from '../../adapters/sqlite/db.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, isTollboothError } from '../../src/index.js'
import { Database } from '../storage/sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-replaced-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function setup(file: string) {
  // The storage's own reports (the core reports the calls that failed to its own onError).
  const errors: unknown[] = []
  const storage = sqliteStorage({ path: file, checkpointMs: 0, onError: (e) => errors.push(e) })
  const tb = createTollbooth({
    secret: 'sqlite-replaced-test-secret-0123456789abcdef',
    storage,
    plans: { big: { monthlyCredits: 1000 } },
    defaultTier: 'big',
    failedAuth: false,
    onError: () => {},
  })
  return { storage, tb, errors }
}

/** Keys created after the file went, as seen by a process started on the path afterwards. */
async function createAfter(tb: ReturnType<typeof setup>['tb'], n: number) {
  const results: Array<string | Error> = []
  for (let i = 0; i < n; i++) {
    results.push(
      await tb.keys.create({ accountId: `acct_${i}` }).then(
        (k) => k.record.id,
        (err: Error) => err,
      ),
    )
  }
  return results
}

describe('SQLite: the file deleted or replaced under a running storage', () => {
  it('deleted: writes are refused as unavailable, not lost', async () => {
    const file = join(dir, 'deleted.db')
    const { storage, tb, errors } = setup(file)
    const { key, record: before } = await tb.keys.create({ accountId: 'acct_before' })
    const admit = () =>
      tb.authenticate(
        { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'GET', path: '/x' },
        tb.route({ cost: 1 }),
      )
    expect((await admit()).allowed).toBe(true)
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
    await new Promise((r) => setTimeout(r, FILE_CHECK_MS + 20))
    // An admission (its counters are written) is answered 503, not admitted into the old file.
    expect(await admit()).toMatchObject({
      allowed: false,
      status: 503,
      code: 'storage_unavailable',
    })
    const results = await createAfter(tb, 5)
    const written = results.filter((r) => typeof r === 'string')
    const refused = results.filter((r) => r instanceof Error)
    console.log(`deleted: ${written.length} writes taken, ${refused.length} refused`)
    // Not tb.close(): it would retry writing the admission's lastUsedAt to the file gone.
    await storage.close()
    // A process started afterwards: what the running one wrote since is not there.
    const next = setup(file)
    const found = []
    for (const id of written) if (await next.storage.keys.get(id as string)) found.push(id)
    expect(await next.storage.keys.get(before.id)).toBeNull()
    await next.storage.close()
    expect(found).toEqual(written)
    expect(refused.length).toBe(5)
    for (const err of refused) {
      expect(isTollboothError(err) && err.code).toBe('storage_unavailable')
      expect((err as Error).message).toMatch(/deleted\.db.*(deleted|replaced)/)
    }
    // Reported once, when found.
    const reported = errors.filter((e) => /deleted\.db" was deleted/.test(String(e)))
    expect(reported.length).toBe(1)
  })

  it('replaced by another file moved in: writes are refused as unavailable, not lost', async () => {
    const file = join(dir, 'replaced.db')
    const { storage, tb, errors } = setup(file)
    await tb.keys.create({ accountId: 'acct_before' })
    // A copy (a backup) moved in over the name, as `mv backup.db replaced.db` does.
    const backup = join(dir, 'backup.db')
    const b = sqliteStorage({ path: backup, checkpointMs: 0 })
    await b.close()
    copyFileSync(backup, `${backup}.tmp`)
    renameSync(`${backup}.tmp`, file)
    await new Promise((r) => setTimeout(r, FILE_CHECK_MS + 20))
    const results = await createAfter(tb, 5)
    const written = results.filter((r) => typeof r === 'string')
    const refused = results.filter((r) => r instanceof Error)
    console.log(`replaced: ${written.length} writes taken, ${refused.length} refused`)
    await tb.close()
    await storage.close()
    const next = setup(file)
    const found = []
    for (const id of written) if (await next.storage.keys.get(id as string)) found.push(id)
    await next.storage.close()
    expect(found).toEqual(written)
    expect(refused.length).toBe(5)
    for (const err of refused) {
      expect(isTollboothError(err) && err.code).toBe('storage_unavailable')
      expect((err as Error).message).toMatch(/replaced\.db" was replaced by another file/)
    }
    expect(errors.filter((e) => /replaced\.db" was replaced/.test(String(e))).length).toBe(1)
  })

  it('a handle given (options.database): the same, and a file left alone is never refused', async () => {
    const file = join(dir, 'given.db')
    const db = new Database(file)
    const errors: unknown[] = []
    const storage = sqliteStorage({ database: db, checkpointMs: 0, onError: (e) => errors.push(e) })
    const ensure = (id: string) =>
      storage.accounts.ensure({
        id,
        tier: null,
        balance: 0,
        carryover: 0,
        periodStart: 0,
        tierExpiresAt: null,
        billingCustomerId: null,
        metadata: {},
      })
    for (let i = 0; i < 3; i++) {
      await ensure(`acct_${i}`)
      await new Promise((r) => setTimeout(r, FILE_CHECK_MS + 5))
    }
    expect(errors).toEqual([])
    renameSync(file, join(dir, 'given-moved.db'))
    await new Promise((r) => setTimeout(r, FILE_CHECK_MS + 20))
    const err = await ensure('acct_after').then(
      () => null,
      (e: unknown) => e,
    )
    expect(isTollboothError(err) && err.code).toBe('storage_unavailable')
    expect(String((err as Error).message)).toMatch(/given\.db" was deleted/)
    expect(errors.length).toBe(1)
    await storage.close()
    db.close()
  })
})
