/**
 * @module test/fault/lease-close
 *
 * `tb.close()` while the store is down, with requests still in flight on a credit lease. At
 * close each such request's local hold is moved into a store hold of its own; the store is down
 * (killed), so the move fails, and the request's settle, which comes after, fails too. Its
 * retry (the core's settle queue, `ifHeld`) then found no hold at the store once it was back
 * and charged nothing: the request's usage event said 2 credits, the account was charged 0
 * for it. Now the decorator keeps those requests' holds as ones the store does not hold, and
 * their settle first makes the hold again (no limit: its credits were held by the lease), then
 * releases it with `ifHeld`, so it charges once however often it is sent.
 *
 * On a private PostgreSQL started here (its data survives the kill), killed by pid while
 * `close()` runs and restarted within the lease give-back's retries. Afterwards: no crash,
 * every admitted request has its usage event, the credits charged equal the units recorded,
 * and no hold is left on any counter.
 *
 * And a credit lease that ends while the store is down for 8 s: its release was given up after
 * about 6 s of retries, its charges never reached the store (505 held for 400 charged: the
 * lease's hold left until its TTL). Now it is retried for as long as its charges are owed.
 */

import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { type Check, createTollbooth, type Decision } from '../../src/index.js'
import { leasedCounters } from '../../src/storage/leased-counters.js'
import { privateStores } from '../support/fault.js'
import { bearer, creditRequests, holdsLeft } from '../support/leases.js'

const SECRET = 'lease-close-secret-lease-close-secret-42'
const SCHEMA = 'tb_lease_close'
const ACCOUNT = 'acct_lease_close'

const servers = privateStores()

describe('tb.close() with PostgreSQL down and requests in flight on a credit lease', () => {
  it('charges each of them once the store is back: credits charged = units recorded, no hold left', async (ctx) => {
    const pgServer = await servers.postgres(ctx)
    const pool = new pg.Pool({
      connectionString: pgServer.url,
      max: 4,
      connectionTimeoutMillis: 1000,
    })
    pool.on('error', () => {})
    await migrate({ pool, schema: SCHEMA })
    const errors: unknown[] = []
    const tb = createTollbooth({
      secret: SECRET,
      // Each commit waits for its WAL write, so the killed server forgets no count.
      storage: postgresStorage({ pool, schema: SCHEMA, durableCounters: true }),
      storageTimeoutMs: 500,
      failedAuth: false,
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
      leases: { maxShare: 0.05 },
      usage: { flushIntervalMs: 600_000, maxBatch: 100_000, retentionMs: 86_400_000 },
      onError: (err) => errors.push(err),
    })
    const { key, record } = await tb.keys.create({ accountId: ACCOUNT })
    expect(await creditRequests(tb, key, 400, 32)).toBe(400)
    // Requests admitted from the lease, still in their handlers when the store goes down.
    const before = tb.stats().leases!.localAdmissions
    const open: Decision[] = []
    const route = tb.route({ cost: 2 })
    for (let i = 0; i < 10; i++) open.push(await tb.authenticate(bearer(key), route))
    expect(open.every((d) => d.allowed)).toBe(true)
    expect(tb.stats().leases!.localAdmissions - before, 'answered from the lease').toBeGreaterThan(
      0,
    )

    await pgServer.kill()
    const closed = tb.close().then(
      () => null,
      (err: unknown) => err,
    )
    // close() has tried to move their holds into the store (it is down); their settles fail
    // too and are queued for retry.
    await new Promise((r) => setTimeout(r, 200))
    for (const d of open) await tb.settle(d, { status: 200 })
    await pgServer.restart()
    const closeError = await closed
    expect(closeError, String(closeError)).toBeNull()

    const check = new pg.Pool({ connectionString: pgServer.url, max: 2 })
    try {
      const storage = postgresStorage({ pool: check, schema: SCHEMA })
      let events = 0
      let units = 0
      let cursor: string | null = null
      do {
        const page = await storage.usage.logs(record.id, { limit: 100, cursor })
        for (const e of page.data) {
          events++
          units += e.units
        }
        cursor = page.nextCursor
      } while (cursor)
      const reader = createTollbooth({ secret: SECRET, storage, plans: { pro: {} } })
      const used = (await reader.accounts.get(ACCOUNT)).credits.used
      await reader.close()
      const held = await holdsLeft(check, SCHEMA)
      expect(events, 'usage events vs admitted').toBe(410)
      expect(units).toBe(2 * 410)
      // Before: 800 charged for 820 recorded (the 10 requests in flight at close lost).
      expect(used, 'credits charged vs units recorded').toBe(units)
      expect(held, 'holds left').toEqual([])
      expect(errors.length, 'the store down was reported').toBeGreaterThan(0)
      console.log(
        `lease close, PostgreSQL down: ${events} events, ${units} units, ${used} credits charged; leases ${JSON.stringify(tb.stats().leases)}`,
      )
    } finally {
      await check.end()
      await pool.end().catch(() => {})
    }
  }, 60_000)
})

describe('a credit lease ended while PostgreSQL is down for 8 s', () => {
  it('its charges land once the store is back: the store holds exactly the charges', async (ctx) => {
    const pgServer = await servers.postgres(ctx)
    const schema = 'tb_lease_down'
    const pool = new pg.Pool({
      connectionString: pgServer.url,
      max: 4,
      connectionTimeoutMillis: 1000,
    })
    pool.on('error', () => {})
    try {
      await migrate({ pool, schema })
      const storage = postgresStorage({ pool, schema, durableCounters: true })
      const counters = leasedCounters(storage.counters, {
        minUnits: 4,
        rateMs: 100,
        flushEveryMs: 0,
      })
      const key = '{acct_lease_down}:credits'
      let charged = 0
      for (let i = 0; i < 200; i++) {
        const hold: Check = {
          type: 'hold',
          key,
          name: 'credits',
          limit: 1_000_000,
          amount: 3,
          holdId: `d${i}`,
          ttlMs: 30_000,
        }
        expect((await counters.consume([hold], Date.now())).allowed).toBe(true)
        await counters.settle([{ type: 'release', key, holdId: `d${i}`, charge: 2 }], Date.now())
        charged += 2
      }
      expect(counters.stats().leases).toBe(1)
      await pgServer.kill()
      // The lease ends (a timer's sweep, a flush, close) while the store is down.
      const ended = counters.flush(Date.now(), true)
      await new Promise((r) => setTimeout(r, 8_000))
      await pgServer.restart()
      await ended
      await counters.close(Date.now())
      // Before: its release was given up after about 6 s (lostGiveBacks 1): 2 × the requests
      // settled against it missing from the store.
      expect(await storage.counters.held(key, Date.now())).toBe(charged)
      expect(counters.stats().lostGiveBacks).toBe(0)
    } finally {
      await pool.end().catch(() => {})
    }
  }, 60_000)
})
