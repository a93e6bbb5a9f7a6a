/**
 * @module test/fault/pgbouncer
 *
 * The pooler in front of PostgreSQL fails under traffic: a private PgBouncer
 * (`support/pgbouncer`, transaction pooling) is paused from its console (`PAUSE`, then
 * `RESUME`, as an operator does for a failover), killed (SIGKILL) and started again, then
 * frozen (SIGSTOP) and thawed. Metered requests (authenticate, settle) run throughout on
 * `postgresStorage` through it, the change feed on its own direct pool (`listenPool`), as the
 * README says; the key's quota and the account's credits are leased (`leases.ttlMs` 300, so a
 * fault outlasts a lease taken just before it). Nothing throws; refused requests are 503
 * `storage_unavailable` within the storage timeout; requests pass again after each fault.
 * Once the settle retry queue has emptied and tollbooth is closed (usage flushed, what ended
 * leases give back sent): every admitted request has one usage event, credits charged = units
 * recorded = the key's quota count, and no hold is left. Before, a lease request the store
 * applied but whose answer the killed or frozen pooler lost was never undone: the quota ended
 * 33-284 above the requests served, the credits 21-42 above the units, in about one run in two.
 */

import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth, type TollboothRequest } from '../../src/index.js'
import {
  expectUnavailable,
  privateServer,
  quotaUsed,
  type Refused,
  usageOf,
} from '../support/fault.js'
import { startPgBouncer } from '../support/pgbouncer.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'

const TIMEOUT_MS = 500
/**
 * How long a lease answers in process (`leases.ttlMs`): one taken just before a fault serves
 * the account for up to that long, so a fault lasts longer than it and the storage timeout.
 */
const LEASE_MS = 300
const FAULT_MS = LEASE_MS + TIMEOUT_MS + 500
const ACCOUNT = 'acct_pgbouncer_fault'
const SECRET = 'pgbouncer-fault-secret-0123456789abcdef'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const bouncer = skipPostgres ? null : await privateServer(() => startPgBouncer(4))
afterAll(async () => {
  await bouncer?.stop()
})

describe.skipIf(!bouncer)('PgBouncer paused, killed and frozen under traffic', () => {
  it('loses nothing and leaves no hold', async () => {
    const b = bouncer!
    const direct = newPool(3)
    const { schema, drop } = await freshSchema(direct)
    const pool = new pg.Pool({
      connectionString: b.url('transaction'),
      max: 6,
      connectionTimeoutMillis: TIMEOUT_MS,
    })
    // Idle clients whose pooler went away: without a listener their error ends the process.
    pool.on('error', () => {})
    const errors: unknown[] = []
    const storage = postgresStorage({
      pool,
      listenPool: direct,
      schema,
      preparedStatements: false,
      statementTimeoutMs: 400,
      durableCounters: true,
      onError: (e) => errors.push(e),
    })
    const tb = createTollbooth({
      secret: SECRET,
      storage,
      storageTimeoutMs: TIMEOUT_MS,
      failedAuth: false,
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
      leases: { ttlMs: LEASE_MS },
      usage: { flushIntervalMs: 100, maxBatch: 500 },
      onError: (e) => errors.push(e),
    })
    try {
      const { key, record } = await tb.keys.create({
        accountId: ACCOUNT,
        limits: { quotas: { total: 1_000_000_000 } },
      })
      const request: TollboothRequest = {
        headers: { authorization: `Bearer ${key}` },
        ip: '127.0.0.1',
        method: 'GET',
        path: '/v1/work',
      }
      const route = tb.route({ cost: 1 })
      const admitted: string[] = []
      const refused: (Refused & { phase: string })[] = []
      let phase = 'up'
      let running = true
      const settles: Promise<unknown>[] = []
      const worker = async () => {
        while (running) {
          const t = performance.now()
          const d = await tb.authenticate(request, route)
          if (d.allowed) {
            admitted.push(d.requestId)
            // Not awaited: a settle waiting out a fault does not hold its worker back.
            settles.push(tb.settle(d, { status: 200 }))
          } else refused.push({ status: d.status, code: d.code, ms: performance.now() - t, phase })
        }
      }
      const workers = Array.from({ length: 6 }, worker)
      /** Waits until `n` more requests have been admitted (at most 10 s). */
      const passes = async (n: number) => {
        const want = admitted.length + n
        const end = Date.now() + 10_000
        while (admitted.length < want && Date.now() < end) await sleep(10)
        expect(admitted.length).toBeGreaterThanOrEqual(want)
      }

      await passes(50)
      phase = 'paused'
      await b.admin('PAUSE')
      await sleep(FAULT_MS)
      await b.admin('RESUME')
      phase = 'up'
      await passes(50)
      phase = 'killed'
      await b.kill()
      await sleep(500)
      await b.restart()
      phase = 'up'
      await passes(50)
      phase = 'frozen'
      b.freeze(true)
      await sleep(FAULT_MS)
      b.freeze(false)
      phase = 'up'
      await passes(50)
      running = false
      await Promise.all(workers)
      await Promise.all(settles)

      for (const p of ['paused', 'killed', 'frozen'])
        expect(refused.filter((r) => r.phase === p).length, p).toBeGreaterThan(0)
      expectUnavailable(refused, TIMEOUT_MS)

      const end = Date.now() + 15_000
      while (tb.stats().settleRetries.pending > 0 && Date.now() < end) await sleep(50)
      expect(tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
      // Closed before counting: it flushes the usage and waits for what ended leases give back.
      await tb.close()
      expect(tb.stats().leases).toMatchObject({ held: 0, lostGiveBacks: 0 })

      const counted = postgresStorage({ pool: direct, schema })
      const { requestIds: logged, units } = await usageOf(counted.usage, record.id)
      expect(logged.length, 'usage events vs admitted').toBe(admitted.length)
      expect(logged.sort()).toEqual([...admitted].sort())
      expect(units, 'units recorded vs admitted').toBe(admitted.length)
      const reader = createTollbooth({ secret: SECRET, storage: counted })
      const credits = (await reader.accounts.get(ACCOUNT)).credits.used
      await reader.close()
      await counted.close()
      expect(credits, 'credits charged vs units').toBe(units)
      const quota = await quotaUsed(counted.counters, ACCOUNT, record.id)
      expect(quota, 'quota count vs admitted').toBe(admitted.length)
      const rows = await direct.query<{ state: { holds?: Record<string, unknown> } }>(
        `SELECT state FROM "${schema}".counters WHERE kind = 'hold'`,
      )
      expect(rows.rows.flatMap((r) => Object.keys(r.state?.holds ?? {}))).toEqual([])
      console.log(
        `pgbouncer fault: ${admitted.length} admitted, ${refused.length} x 503 ` +
          `(paused ${refused.filter((r) => r.phase === 'paused').length}, killed ${refused.filter((r) => r.phase === 'killed').length}, frozen ${refused.filter((r) => r.phase === 'frozen').length}; max ${Math.round(Math.max(...refused.map((r) => r.ms)))} ms), ${errors.length} errors reported`,
      )
    } finally {
      await tb.close()
      await storage.close()
      await pool.end()
      await drop()
      await direct.end()
    }
  }, 60_000)
})
