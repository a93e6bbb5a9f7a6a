/**
 * @module test/storage/sqlite-feed-probe
 *
 * SQLite's change feed is a table every process polls, and the process that publishes reads
 * its own message back in the same call: it cannot go silent without an error, so the feed
 * probe (`cache.feedProbeMs`) learns nothing from it. Each instance on it wrote a probe row
 * every probe period (every 2.5 s per process by default) all the same: needless disk writes.
 * With `feedProbeMs: 50`, an instance left alone for 500 ms must have written no probe row,
 * and a key revoked on one instance is still refused at once by another on the same file.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth } from '../../src/internal.js'
import { request } from '../support/core.js'
import { Database } from './sqlite-driver.js'

const SECRET = 'sqlite-feed-probe-secret-0123456789abcdef'
const dir = mkdtempSync(join(tmpdir(), 'tb-sqlite-probe-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('writes no probe rows, and a revocation still reaches the other instance', async () => {
  const path = join(dir, 'tb.db')
  const storages = [sqliteStorage({ path }), sqliteStorage({ path })]
  const [a, b] = storages.map((storage) =>
    createTollbooth({ secret: SECRET, storage, cache: { feedProbeMs: 50 }, failedAuth: false }),
  )
  try {
    await new Promise((r) => setTimeout(r, 500))
    const file = new Database(path)
    const probes = file
      .prepare("SELECT count(*) AS n FROM changes WHERE message LIKE 'tollbooth:feed-probe:%'")
      .get() as { n: number }
    file.close()
    expect(probes.n).toBe(0)
    expect(a!.stats().feed).toEqual({ delivering: true, silent: false, silences: 0 })

    const k = await a!.keys.create({ accountId: 'acct_probe' })
    expect((await b!.authenticate(request(k.key))).allowed).toBe(true)
    await a!.keys.revoke(k.record.id)
    // Within the poll (250 ms) and one more.
    await new Promise((r) => setTimeout(r, 600))
    expect(await b!.authenticate(request(k.key))).toMatchObject({ status: 401 })
  } finally {
    await Promise.all([a!.close(), b!.close()])
    for (const s of storages) await s.close?.()
  }
})
