/**
 * @module test/fault/sqlite-prune
 *
 * Two API processes on one SQLite file holding a backlog of usage events past the request-log
 * retention (400,000 events two days old, the hour's worth of a busy API, or what a first
 * start with `retentionMs` finds): each process's first usage flush prunes them. The prune
 * must not take the file from the requests: before, it deleted the whole backlog in one
 * transaction (the write lock held and the pruning process's event loop blocked for seconds),
 * so the other process's admissions waited out `busyTimeoutMs` and answered 503, and the
 * pruning one's stalled. Now it deletes in slices, each its own short transaction, with a
 * pause between them: every request is answered 200, none waits anywhere near the busy
 * timeout, and every old event is gone with the totals still equal to the events.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth } from '../../src/index.js'
import type { UsageEvent } from '../../src/storage/types.js'
import { type Instance, startInstance } from '../multi-instance/spawn.js'

const SERVER = fileURLToPath(new URL('../multi-instance/sqlite-server.ts', import.meta.url))
const SECRET = 'sqlite-prune-test-secret-0123456789abcdef'
const BACKLOG = 400_000
const DAY = 86_400_000

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-prune-'))
const running: Instance[] = []
afterAll(async () => {
  await Promise.all(running.map((i) => i.stop()))
  rmSync(dir, { recursive: true, force: true })
})

describe('SQLite: pruning a backlog of usage events', () => {
  it('keeps every request of two processes answered, quickly, while the old events go', async () => {
    const file = join(dir, 'prune.db')
    const storage = sqliteStorage({ path: file })
    const tb = createTollbooth({ secret: SECRET, storage, failedAuth: false })
    const { key } = await tb.keys.create({ accountId: 'acct_live' })
    // Two days old: past the servers' retention (one day).
    const t0 = Date.now() - 2 * DAY
    for (let i = 0; i < BACKLOG; i += 5000) {
      await storage.usage.record(
        Array.from(
          { length: 5000 },
          (_, j): UsageEvent => ({
            id: `ev_${i + j}`,
            requestId: `req_${i + j}`,
            keyId: 'key_old',
            accountId: 'acct_old',
            time: t0 + (i + j) * 5,
            units: 1,
            overage: 0,
            tokens: 0,
            category: null,
            keyCategory: null,
            status: 200,
            durationMs: 1,
            ttfbMs: 1,
            code: null,
            ip: null,
            method: 'GET',
            path: '/v1/work',
            bypassed: false,
            provider: null,
          }),
        ),
      )
    }
    await tb.close()
    await storage.close()

    const env = { TB_FILE: file, TB_SECRET: SECRET }
    const servers = await Promise.all([
      startInstance('A', env, SERVER),
      startInstance('B', env, SERVER),
    ])
    running.push(...servers)

    // 4 clients per process, each one request after another, until the backlog is gone.
    const reader = sqliteStorage({ path: file })
    const left = () =>
      (
        reader.database
          .prepare('SELECT count(*) AS n FROM usage_events WHERE account_id = ?')
          .get('acct_old') as { n: number }
      ).n
    const answers: Array<{ status: number; ms: number; from: string }> = []
    let stop = false
    const client = async (s: Instance) => {
      while (!stop) {
        const start = performance.now()
        const res = await fetch(`${s.url}/v1/work`, { headers: { authorization: `Bearer ${key}` } })
        await res.arrayBuffer()
        answers.push({ status: res.status, ms: performance.now() - start, from: s.name })
      }
    }
    const clients = servers.flatMap((s) => Array.from({ length: 4 }, () => client(s)))
    const until = Date.now() + 60_000
    while (left() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
    const remaining = left()
    // A moment more of traffic after the last slice.
    await new Promise((r) => setTimeout(r, 300))
    stop = true
    await Promise.all(clients)

    const statuses: Record<number, number> = {}
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1
    const slowest = Math.max(...answers.map((a) => a.ms))
    const sorted = answers.map((a) => a.ms).sort((x, y) => x - y)
    console.log(
      `${answers.length} requests while ${BACKLOG} events were pruned: ${JSON.stringify(statuses)}, ` +
        `p50 ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)]!.toFixed(1)} ms, slowest ${slowest.toFixed(0)} ms; events left ${remaining}`,
    )
    expect(remaining).toBe(0)
    expect(statuses).toEqual({ 200: answers.length })
    // The busy timeout is 1,500 ms; a slice holds the lock for milliseconds.
    expect(slowest).toBeLessThan(1000)
    // The totals of the pruned hours went with their events.
    const old = await reader.usage.summarize('acct_old', 0, Date.now())
    expect(old.requests).toBe(0)
    await reader.close()
  }, 120_000)
})
