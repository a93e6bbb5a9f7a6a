/**
 * @module test/storage/sqlite-usage-totals
 *
 * The SQLite usage store's hourly totals after a flushed batch: equal to the per-event sums
 * (admitted events only, each id once, across accounts, hours, usage and key categories), and
 * written with one statement per (account, hour, category, key category) of the batch, not
 * one per event. Statements are counted at a real `better-sqlite3` handle, wrapped to count
 * the executions of each prepared statement.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  type SqliteDatabase,
  type SqliteStorage,
  sqliteStorage,
} from '../../adapters/sqlite/index.js'
import type { UsageEvent } from '../../src/storage/types.js'
import { Database, type TestDatabase } from './sqlite-driver.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-usage-totals-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const HOUR = 3_600_000
const T0 = Date.UTC(2026, 0, 5, 10) // on an hour

/** A real handle whose prepared statements count their `run` calls, by the SQL's first words. */
function counted(file: string): {
  db: SqliteDatabase
  raw: TestDatabase
  runs: Map<string, number>
} {
  const raw = new Database(file)
  const runs = new Map<string, number>()
  const db: SqliteDatabase = {
    prepare(sql) {
      const s = raw.prepare(sql)
      const name = sql.replace(/\s+/g, ' ').trim().split(' ').slice(0, 3).join(' ')
      return {
        run: (...params) => {
          runs.set(name, (runs.get(name) ?? 0) + 1)
          return s.run(...params)
        },
        get: (...params) => s.get(...params),
        all: (...params) => s.all(...params),
      }
    },
    exec: (sql) => raw.exec(sql),
    close: () => raw.close(),
    get name() {
      return raw.name
    },
    get inTransaction() {
      return raw.inTransaction
    },
  }
  return { db, raw, runs }
}

function event(i: number, over: Partial<UsageEvent> = {}): UsageEvent {
  return {
    id: `evt_${i}`,
    requestId: `req_${i}`,
    keyId: `key_${i % 5}`,
    accountId: `acct_${i % 3}`,
    time: T0 + (i % 4) * HOUR + ((i * 7919) % HOUR),
    // Quarters: every sum is exact in binary floating point, in any order.
    units: (i % 9) * 0.25,
    overage: 0,
    tokens: 0,
    category: i % 2 === 0 ? 'chat' : null,
    keyCategory: i % 5 === 0 ? 'production' : i % 5 === 1 ? null : 'test',
    status: 200,
    durationMs: 1,
    ttfbMs: null,
    code: i % 11 === 0 ? 'rate_limited' : null,
    ip: '127.0.0.1',
    method: 'GET',
    path: '/v1/hello',
    bypassed: false,
    provider: null,
    ...over,
  }
}

type Totals = Map<string, { requests: number; units: number }>

/** The totals table's key of an event, as the store groups it. */
const groupOf = (e: UsageEvent) =>
  [
    e.accountId,
    e.time - (e.time % HOUR),
    e.category ?? 'uncategorized',
    e.keyCategory ?? 'uncategorized',
  ].join('|')

/** The per-event sums: admitted events, each id once. */
function expected(events: UsageEvent[]): Totals {
  const seen = new Set<string>()
  const out: Totals = new Map()
  for (const e of events) {
    if (seen.has(e.id)) continue
    seen.add(e.id)
    if (e.code !== null) continue
    const t = out.get(groupOf(e)) ?? { requests: 0, units: 0 }
    t.requests += 1
    t.units += e.units
    out.set(groupOf(e), t)
  }
  return out
}

function stored(raw: TestDatabase): Totals {
  const rows = raw
    .prepare('SELECT account_id, hour, category, key_category, requests, units FROM usage_totals')
    .all() as Array<{
    account_id: string
    hour: number
    category: string
    key_category: string
    requests: number
    units: number
  }>
  return new Map(
    rows.map((r) => [
      [r.account_id, r.hour, r.category, r.key_category].join('|'),
      { requests: r.requests, units: r.units },
    ]),
  )
}

describe('SQLite usage: hourly totals of a batch', () => {
  let storage: SqliteStorage | null = null
  let handle: TestDatabase | null = null
  afterAll(async () => {
    await storage?.close()
    handle?.close()
  })

  it('equal the per-event sums, written once per group of the batch', async () => {
    const { db, raw, runs } = counted(join(dir, 'totals.db'))
    handle = raw
    storage = sqliteStorage({ database: db, checkpointMs: 0 })
    const first = Array.from({ length: 600 }, (_, i) => event(i))
    // A duplicate id inside the batch counts once.
    first.push(event(7, { units: 100 }))
    const groups = expected(first)
    expect(groups.size).toBeGreaterThanOrEqual(30)
    runs.clear()
    await storage.usage.record(first)
    expect(stored(raw)).toEqual(groups)
    expect(runs.get('INSERT INTO usage_events')).toBe(first.length)
    expect(runs.get('INSERT INTO usage_totals')).toBe(groups.size)

    // A second batch adds onto the stored totals; ids already stored add nothing.
    const second = [...Array.from({ length: 300 }, (_, i) => event(600 + i)), ...first.slice(0, 50)]
    const all = [...first, ...second]
    runs.clear()
    await storage.usage.record(second)
    expect(stored(raw)).toEqual(expected(all))
    expect(runs.get('INSERT INTO usage_totals')).toBe(expected(second.slice(0, 300)).size)

    // The summaries read those totals: whole hours, per account.
    for (const account of ['acct_0', 'acct_1', 'acct_2']) {
      const mine = all.filter((e) => e.accountId === account)
      const want = [...expected(mine).values()].reduce(
        (a, t) => ({ requests: a.requests + t.requests, units: a.units + t.units }),
        { requests: 0, units: 0 },
      )
      const s = await storage.usage.summarize(account, T0, T0 + 4 * HOUR)
      expect({ requests: s.requests, units: s.units }).toEqual(want)
    }
  })

  it('writes nothing for a batch of refused or already stored events', async () => {
    const { db, raw, runs } = counted(join(dir, 'refused.db'))
    const s = sqliteStorage({ database: db, checkpointMs: 0 })
    try {
      await s.usage.record([event(1), event(2)])
      const before = stored(raw)
      runs.clear()
      await s.usage.record([event(1), event(3, { code: 'quota_exceeded' }), event(2)])
      expect(runs.get('INSERT INTO usage_totals') ?? 0).toBe(0)
      expect(stored(raw)).toEqual(before)
    } finally {
      await s.close()
      raw.close()
    }
  })
  it('prunes in slices: what is left, events and totals, is what one deletion leaves', async () => {
    const { db, raw, runs } = counted(join(dir, 'prune.db'))
    const s = sqliteStorage({ database: db, checkpointMs: 0 })
    try {
      // 9,000 events over four hours, 3,000 of them in one millisecond (more than a slice).
      const events = Array.from({ length: 9000 }, (_, i) =>
        i < 3000 ? event(i, { time: T0 + HOUR + 1234 }) : event(i),
      )
      for (let i = 0; i < events.length; i += 1000) await s.usage.record(events.slice(i, i + 1000))
      const before = T0 + 2 * HOUR + HOUR / 2
      runs.clear()
      const pruned = await s.usage.prune(before)
      const left = events.filter((e) => e.time >= before)
      expect(pruned).toBe(events.length - left.length)
      // More than one transaction.
      expect(runs.get('DELETE FROM usage_events') ?? 0).toBeGreaterThan(1)
      const want = [...expected(left)].filter(([, t]) => t.requests > 0)
      const got = [...stored(raw)].filter(([, t]) => t.requests !== 0 || t.units !== 0)
      expect(new Map(got)).toEqual(new Map(want))
      expect(await s.usage.prune(before)).toBe(0)
    } finally {
      await s.close()
      raw.close()
    }
  })

  it('a prune cut short by close() ends quietly; the next one deletes the rest', async () => {
    const path = join(dir, 'prune-close.db')
    const events = Array.from({ length: 20_000 }, (_, i) => event(i, { time: T0 + i }))
    let s = sqliteStorage({ path, checkpointMs: 0 })
    for (let i = 0; i < events.length; i += 5000) await s.usage.record(events.slice(i, i + 5000))
    const pruning = s.usage.prune(T0 + HOUR)
    // The first slice is done (synchronously); the storage closes during the pause after it.
    await s.close()
    const pruned = await pruning
    expect(pruned).toBeGreaterThan(0)
    expect(pruned).toBeLessThan(events.length)
    s = sqliteStorage({ path, checkpointMs: 0 })
    expect(pruned + (await s.usage.prune(T0 + HOUR))).toBe(events.length)
    await s.close()
  })
})
