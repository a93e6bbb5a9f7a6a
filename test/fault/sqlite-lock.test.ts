/**
 * @module test/fault/sqlite-lock
 *
 * Another process holding the SQLite file's write lock past `busyTimeoutMs`: an admission
 * answers 503 `storage_unavailable` and counts nothing, and a settle that met the lock is
 * retried once the lock is gone, so its charge is not lost (the credit hold is released and
 * charged, not left until its TTL).
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth } from '../../src/index.js'
import { Database } from '../storage/sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-lock-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('SQLite: a write lock held by another process', () => {
  it('answers 503 while held, and retries a settle that met it', async () => {
    const file = join(dir, 'lock.db')
    const storage = sqliteStorage({ path: file, busyTimeoutMs: 50 })
    const errors: unknown[] = []
    const tb = createTollbooth({
      secret: 'sqlite-lock-test-secret-0123456789abcdef',
      storage,
      plans: { big: { monthlyCredits: 1000 } },
      defaultTier: 'big',
      failedAuth: false,
      onError: (err: unknown) => errors.push(err),
    })
    const { key } = await tb.keys.create({ accountId: 'acct_lock' })
    const route = tb.route({ cost: 1 })
    const req = {
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/x',
    }
    const other = new Database(file)
    const warm = await tb.authenticate(req, route)
    expect(warm.allowed).toBe(true)
    await tb.settle(warm, { status: 200 })

    // An admission while another connection holds the lock.
    other.exec('BEGIN IMMEDIATE')
    const refused = await tb.authenticate(req, route)
    if (refused.allowed) throw new Error('admitted while the file was locked')
    expect(refused.status).toBe(503)
    other.exec('COMMIT')

    // A settle while the lock is held, then the lock goes.
    const admitted = await tb.authenticate(req, route)
    expect(admitted.allowed).toBe(true)
    other.exec('BEGIN IMMEDIATE')
    await tb.settle(admitted, { status: 200 })
    expect(errors.some((e) => /locked by another connection/.test(String(e)))).toBe(true)
    other.exec('COMMIT')
    other.close()
    await vi.waitFor(
      () => {
        const rows = storage.database
          .prepare("SELECT state FROM counters WHERE key LIKE '{acct_lock}:credits:%'")
          .all() as Array<{ state: string }>
        expect(rows).toHaveLength(1)
        const state = JSON.parse(rows[0]!.state) as { used: number; holds: object }
        // Both requests charged, no hold left behind.
        expect([state.used, Object.keys(state.holds).length]).toEqual([2, 0])
      },
      { timeout: 5000, interval: 50 },
    )
    expect((await tb.usage.get('acct_lock')).credits.used).toBe(2)
    await tb.close()
    await storage.close()
  })

  it('close() writes the queued usage once the lock goes, within its bound', async () => {
    // A process shutting down (SIGTERM) while another holds the file's write lock a while
    // (a long write, a backup): close() tried the events once, rejected after busyTimeoutMs,
    // and the process exited with them.
    const file = join(dir, 'close-lock.db')
    const storage = sqliteStorage({ path: file, busyTimeoutMs: 100 })
    const tb = createTollbooth({
      secret: 'sqlite-lock-test-secret-0123456789abcdef',
      storage,
      failedAuth: false,
      usage: { flushIntervalMs: 600_000 },
      onError: () => {},
    })
    const { key } = await tb.keys.create({ accountId: 'acct_close' })
    const req = {
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/x',
    }
    for (let i = 0; i < 5; i++) {
      const d = await tb.authenticate(req)
      expect(d.allowed).toBe(true)
      await tb.settle(d, { status: 200 })
    }
    const other = new Database(file)
    other.exec('BEGIN IMMEDIATE')
    const held = setTimeout(() => other.exec('COMMIT'), 1000)
    const start = performance.now()
    const closed = await tb.close().then(
      () => 'resolved',
      (err: unknown) => String(err),
    )
    const ms = Math.round(performance.now() - start)
    clearTimeout(held)
    if (other.inTransaction) other.exec('COMMIT')
    other.close()
    await storage.close()
    const again = sqliteStorage({ path: file })
    const recorded = (await again.usage.summarize('acct_close', 0, Date.now() + 60_000)).requests
    await again.close()
    console.log(`close() ${closed} after ${ms} ms; events recorded: ${recorded} of 5`)
    expect(closed).toBe('resolved')
    expect(recorded).toBe(5)
  })
})
