/**
 * @module test/fault/sqlite-full
 *
 * The disk holding a SQLite file fills up (here: the file may not grow, `max_page_count`,
 * which fails a write with the same `SQLITE_FULL` as a full disk): every call that writes
 * answers as the storage being unavailable (`StorageUnavailableError`, a 503
 * `storage_unavailable` on the management API and on admissions) with a message saying the
 * disk is full, not a driver's error (a 500 `internal_error` on the management API); nothing
 * is half written, and once there is room again every call works.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve } from '@hono/node-server'
import { afterAll, describe, expect, it } from 'vitest'
import { managementApi } from '../../adapters/management/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, isTollboothError } from '../../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-full-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('SQLite: a full disk', () => {
  it('answers 503 storage_unavailable naming the full disk, and works again once there is room', async () => {
    const storage = sqliteStorage({ path: join(dir, 'full.db'), checkpointMs: 0 })
    const errors: unknown[] = []
    const tb = createTollbooth({
      secret: 'sqlite-full-test-secret-0123456789abcdef',
      storage,
      plans: { big: { monthlyCredits: 1000 } },
      defaultTier: 'big',
      failedAuth: false,
      onError: (err: unknown) => errors.push(err),
    })
    const { key: mk } = await tb.keys.create({ accountId: 'acct_admin', kind: 'management' })
    const server = serve({ fetch: managementApi(tb).fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => server.once('listening', r))
    const { port } = server.address() as { port: number }
    const createKey = (label: string) =>
      fetch(`http://127.0.0.1:${port}/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${mk}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `${label} ${'k'.repeat(90)}` }),
      })
    try {
      const db = storage.database
      const pages = (db.prepare('PRAGMA page_count').get() as { page_count: number }).page_count
      db.prepare(`PRAGMA max_page_count = ${pages}`).get()

      // Keys until the file is full.
      const statuses: number[] = []
      let body: { code?: string; error?: string } = {}
      for (let i = 0; i < 1000 && !statuses.includes(503) && !statuses.includes(500); i++) {
        const res = await createKey(`key ${i}`)
        statuses.push(res.status)
        body = (await res.json()) as typeof body
      }
      console.log(
        `created ${statuses.filter((s) => s === 201).length} keys, then ${statuses.at(-1)} ${JSON.stringify(body)}`,
      )
      expect(statuses.at(-1)).toBe(503)
      expect(body.code).toBe('storage_unavailable')
      const thrown = await tb.keys.create({ accountId: 'acct_x' }).then(
        () => null,
        (err: unknown) => err,
      )
      expect(isTollboothError(thrown) && thrown.code).toBe('storage_unavailable')
      expect(String((thrown as Error).message)).toMatch(/tollbooth\/sqlite: .*full \(SQLITE_FULL/)
      expect(db.inTransaction).toBe(false)

      // Room again: the same calls work.
      db.prepare(`PRAGMA max_page_count = ${pages * 100}`).get()
      expect((await createKey('after')).status).toBe(201)
      const { key } = await tb.keys.create({ accountId: 'acct_after' })
      const decision = await tb.authenticate(
        { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'GET', path: '/x' },
        tb.route({ cost: 1 }),
      )
      expect(decision.allowed).toBe(true)
      await tb.settle(decision, { status: 200 })
      await tb.flush()
      expect((await tb.usage.get('acct_after')).requestCount).toBe(1)
    } finally {
      server.close()
      await tb.close()
      await storage.close()
    }
  })
})
