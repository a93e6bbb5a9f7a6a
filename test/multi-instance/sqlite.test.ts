/**
 * @module test/multi-instance/sqlite
 *
 * Two API processes on one SQLite file, through real HTTP: a quota of 100 admits exactly 100
 * of 400 concurrent requests split across both (every admission is a `BEGIN IMMEDIATE`
 * transaction on the file), and so do a rate limit and a credit budget of 100 of 1,200, usage
 * counts each once, no credit hold is left behind, and a key revoked through one process is
 * refused by the other within the change feed's poll (`changePollMs`, 250 ms here), although
 * both had it cached for 10 minutes.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SqliteStorage, sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, type Tollbooth } from '../../src/index.js'
import { expectQuotaAcrossTwo, work } from '../support/instances.js'
import { type Instance, startInstance } from './spawn.js'

type KeyLimits = NonNullable<Parameters<Tollbooth['keys']['create']>[0]['limits']>

const SERVER = fileURLToPath(new URL('./sqlite-server.ts', import.meta.url))
const SECRET = 'multi-instance-sqlite-secret-0123456789'
const POLL_MS = 250

describe('two processes on one SQLite file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-multi-sqlite-'))
  const file = join(dir, 'tollbooth.db')
  let a: Instance
  let b: Instance
  let storage: SqliteStorage
  let tb: Tollbooth

  beforeAll(async () => {
    // Migrated here first, so the two processes start on an up-to-date file.
    storage = sqliteStorage({ path: file })
    tb = createTollbooth({ secret: SECRET, storage })
    const env = { TB_FILE: file, TB_SECRET: SECRET, TB_POLL_MS: String(POLL_MS) }
    ;[a, b] = await Promise.all([startInstance('A', env, SERVER), startInstance('B', env, SERVER)])
  }, 60_000)

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    await tb?.close()
    await storage?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('admits exactly 100 of 400 concurrent requests on a total quota of 100', async () => {
    await expectQuotaAcrossTwo([a, b], tb, storage)
  })

  it.each<[string, KeyLimits, number]>([
    ['a rate limit of 100 per hour', { rateLimits: [{ limit: 100, windowMs: 3_600_000 }] }, 429],
    ['a credit budget of 100', { budget: 100 }, 402],
  ])(
    'admits exactly 100 of 1,200 concurrent requests on %s, each metered once, no hold left',
    async (name, limits, refusal) => {
      const accountId = `acct_${name.replace(/\W+/g, '_')}`
      const { key } = await tb.keys.create({ accountId, limits })
      const statuses = await Promise.all(
        Array.from({ length: 1200 }, async (_, i) => {
          const res = await work((i % 2 === 0 ? a : b).url, key)
          await res.arrayBuffer()
          return res.status
        }),
      )
      expect(statuses.filter((s) => s === 200)).toHaveLength(100)
      expect(statuses.filter((s) => s === refusal)).toHaveLength(1100)
      let recorded = 0
      const until = Date.now() + 10_000
      while (recorded < 100 && Date.now() < until) {
        recorded = (await storage.usage.summarize(accountId, 0, Date.now() + 60_000)).requests
        if (recorded < 100) await new Promise((r) => setTimeout(r, 50))
      }
      expect(recorded).toBe(100)
      expect((await tb.usage.get(accountId)).credits.used).toBe(100)
      // Every credit hold released: the account's and the key's.
      const holds = storage.database
        .prepare('SELECT state FROM counters WHERE key LIKE ?')
        .all(`{${accountId}}%`) as Array<{ state: string }>
      for (const h of holds)
        expect((JSON.parse(h.state) as { holds?: unknown[] }).holds ?? []).toEqual([])
    },
  )

  it('refuses a key on B within the change feed’s poll once A revoked it', async () => {
    const { key, record } = await tb.keys.create({ accountId: 'acct_revoke' })
    expect((await work(a.url, key)).status).toBe(200)
    expect((await work(b.url, key)).status).toBe(200)
    expect((await work(b.url, key)).status).toBe(200)
    const revoked = await fetch(`${a.url}/admin/revoke/${record.id}`, { method: 'POST' })
    expect(revoked.status).toBe(200)
    // The publisher hears its own change at once.
    expect((await work(a.url, key)).status).toBe(401)
    const start = performance.now()
    let status = 200
    while (status === 200 && performance.now() - start < 5000) {
      status = (await work(b.url, key)).status
      if (status === 200) await new Promise((r) => setTimeout(r, 5))
    }
    const ms = Math.round(performance.now() - start)
    console.log(`B refused the revoked key ${ms} ms after A's revocation (poll ${POLL_MS} ms)`)
    expect(status).toBe(401)
    // The bound is one poll; the margin covers a loaded machine's timer delays.
    expect(ms).toBeLessThan(POLL_MS * 4)
  })
})
