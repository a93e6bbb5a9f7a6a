/**
 * @module test/multi-instance/sqlite
 *
 * Two API processes on one SQLite file, through real HTTP: a quota of 100 admits exactly 100
 * of 400 concurrent requests split across both (every admission is a `BEGIN IMMEDIATE`
 * transaction on the file), usage counts each once, and a key revoked through one process is
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
import { type Instance, startInstance } from './spawn.js'

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

  const get = (base: string, key: string) =>
    fetch(`${base}/v1/work`, { headers: { authorization: `Bearer ${key}` } })

  it('admits exactly 100 of 400 concurrent requests on a total quota of 100', async () => {
    const { key } = await tb.keys.create({
      accountId: 'acct_multi',
      limits: { quotas: { total: 100 } },
    })
    const responses = await Promise.all(
      Array.from({ length: 400 }, async (_, i) => {
        const inst = i % 2 === 0 ? a : b
        const res = await get(inst.url, key)
        const body = (await res.json()) as { instance?: string; code?: string }
        return { status: res.status, from: inst.name, body }
      }),
    )
    const ok = responses.filter((r) => r.status === 200)
    expect(ok).toHaveLength(100)
    expect(responses.filter((r) => r.status === 429)).toHaveLength(300)
    expect(new Set(responses.filter((r) => r.status === 429).map((r) => r.body.code))).toEqual(
      new Set(['quota_exceeded']),
    )
    console.log(
      `admitted by A: ${ok.filter((r) => r.from === 'A').length}, by B: ${ok.filter((r) => r.from === 'B').length}`,
    )
    for (const r of ok) expect(r.body.instance).toBe(r.from)

    // Each admitted request is metered once, by whichever process served it.
    let requests = 0
    const until = Date.now() + 10_000
    while (requests < 100 && Date.now() < until) {
      requests = (await storage.usage.summarize('acct_multi', 0, Date.now() + 60_000)).requests
      if (requests < 100) await new Promise((r) => setTimeout(r, 50))
    }
    expect(requests).toBe(100)
  })

  it('refuses a key on B within the change feed’s poll once A revoked it', async () => {
    const { key, record } = await tb.keys.create({ accountId: 'acct_revoke' })
    expect((await get(a.url, key)).status).toBe(200)
    expect((await get(b.url, key)).status).toBe(200)
    expect((await get(b.url, key)).status).toBe(200)
    const revoked = await fetch(`${a.url}/admin/revoke/${record.id}`, { method: 'POST' })
    expect(revoked.status).toBe(200)
    // The publisher hears its own change at once.
    expect((await get(a.url, key)).status).toBe(401)
    const start = performance.now()
    let status = 200
    while (status === 200 && performance.now() - start < 5000) {
      status = (await get(b.url, key)).status
      if (status === 200) await new Promise((r) => setTimeout(r, 5))
    }
    const ms = Math.round(performance.now() - start)
    console.log(`B refused the revoked key ${ms} ms after A's revocation (poll ${POLL_MS} ms)`)
    expect(status).toBe(401)
    // The bound is one poll; the margin covers a loaded machine's timer delays.
    expect(ms).toBeLessThan(POLL_MS * 4)
  })
})
