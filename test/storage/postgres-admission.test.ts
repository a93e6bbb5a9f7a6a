/**
 * @module test/storage/postgres-admission
 *
 * Issue 20 item 6 on PostgreSQL: admissions of one account stuck behind a row lock (here
 * taken on purpose by another session, as a long transaction or a slow disk would) hold
 * pooled connections past the storage timeout, then commit when the lock goes.
 * - A bystander account keeps being served: the store runs one account's admissions in
 *   batches, at most one transaction waiting on the account's rows (`counter-batches`), the
 *   rest wait in the process; so even with the core's per-account bound (`accountInFlight`)
 *   lifted, the bystander's admissions find a connection.
 * - The admissions answered 503 that commit late are cancelled: the account's counters end
 *   exactly as if they had never been sent.
 */

import { describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import {
  type Check,
  createTollbooth,
  memoryStorage,
  type Storage,
  type TollboothRequest,
} from '../../src/index.js'
import { lockCounterRow, newPool, schemaPerSuite, skipPostgres } from '../support/postgres.js'

const TIMEOUT_MS = 400
const req = (key: string): TollboothRequest => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'GET',
  path: '/v1/x',
})

describe.skipIf(skipPostgres)('PostgreSQL admissions under one account’s burst', () => {
  const pool = newPool(6)
  const db = schemaPerSuite(pool)

  /** A tollbooth with its counters on PostgreSQL, an attacker and a bystander key. */
  const setup = async (accountInFlight?: number) => {
    const storage: Storage = {
      ...memoryStorage(),
      counters: postgresStorage({ pool, schema: db.schema }).counters,
    }
    const tb = createTollbooth({
      secret: 'pg-admission-test-secret-0123456789abcd',
      storage,
      storageTimeoutMs: TIMEOUT_MS,
      failedAuth: false,
      plans: { big: { monthlyCredits: 1_000_000 } },
      defaultTier: 'big',
      ...(accountInFlight === undefined ? {} : { accountInFlight }),
    })
    const suffix = Math.random().toString(36).slice(2, 8)
    const limits = { quotas: { total: 1_000_000 }, concurrency: 1000 }
    const attacker = await tb.keys.create({ accountId: `acct_a${suffix}`, limits })
    const bystander = await tb.keys.create({ accountId: `acct_b${suffix}`, limits })
    const route = tb.route({ cost: 1 })
    const once = async (key: string) => {
      const d = await tb.authenticate(req(key), route)
      if (d.allowed) await tb.settle(d, { status: 200 })
      return d.allowed ? 200 : d.status
    }
    // One request each: the rows exist, the key and the account are cached.
    expect(await once(attacker.key)).toBe(200)
    expect(await once(bystander.key)).toBe(200)
    const quotaKey = `{${attacker.record.accountId}}:k:${attacker.record.id}:q:total`
    return { tb, storage, attacker, bystander, route, once, quotaKey }
  }

  /** Holds the row lock of `key` from another session until `release()`. */
  const lockRow = (key: string) => lockCounterRow(db.schema, key)

  it('keeps serving a bystander while one account’s admissions wait on a lock', async () => {
    const s = await setup()
    const release = await lockRow(s.quotaKey)
    const bystander: number[] = []
    let attacker: number[]
    try {
      const burst = Promise.all(Array.from({ length: 50 }, () => s.once(s.attacker.key)))
      for (let i = 0; i < 20; i++) bystander.push(await s.once(s.bystander.key))
      // The lock lasts until the whole burst is answered: the bystander's 20 requests take
      // less than the storage timeout, and a lock released then would let the attacker's
      // waiting admissions through in time.
      attacker = await burst
    } finally {
      await release()
    }
    expect(bystander).toEqual(Array(20).fill(200))
    // One transaction waited on the lock; the other admissions waited their turn in the
    // process and never took a connection. All timed out.
    expect(attacker).toEqual(Array(50).fill(503))
    await s.tb.flush()
    expect(s.tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
    // Those that committed after their 503 were cancelled: only the first request counts.
    const total: Check = {
      type: 'window',
      key: s.quotaKey,
      name: 'total',
      limit: 1_000_000,
      windowMs: 0,
      bucketMs: 0,
      cost: 0,
    }
    const now = Date.now()
    expect((await s.storage.counters.consume([total], now)).results[0]!.used).toBe(1)
    expect((await s.tb.accounts.get(s.attacker.record.accountId)).credits.used).toBe(1)
    const rows = await pool.query<{ state: { holds: unknown[] } }>(
      `SELECT state FROM "${db.schema}".counters WHERE key LIKE $1 AND kind = 'hold'`,
      [`{${s.attacker.record.accountId}}:%`],
    )
    for (const r of rows.rows) expect(r.state.holds).toEqual([])
    await s.tb.close()
  }, 30_000)

  it('without the core’s per-account bound, the bystander is still served', async () => {
    const s = await setup(100)
    const release = await lockRow(s.quotaKey)
    let burst: Promise<number[]>
    let bystander: number
    try {
      burst = Promise.all(Array.from({ length: 50 }, () => s.once(s.attacker.key)))
      await new Promise((r) => setTimeout(r, 50))
      bystander = await s.once(s.bystander.key)
    } finally {
      await release()
    }
    await burst
    // The burst holds one connection of six (the batch waiting on the lock), not all of them.
    expect(bystander).toBe(200)
    await s.tb.close()
  }, 30_000)
})
