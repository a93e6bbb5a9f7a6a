/**
 * @module test/fault/postgres-refused
 *
 * Admissions PostgreSQL never got: the pool could not give a connection, so no query was sent.
 * (1) The private server killed (SIGKILL, by pid): each new connection is refused
 * (`ECONNREFUSED`). (2) The pool exhausted, every connection held elsewhere: each call gives
 * up after the pool's `connectionTimeoutMillis`; (3) or waits as long as it takes (pg's default)
 * and the connection comes after the store's `statementTimeoutMs`, the call then refused
 * unrun. Each time the request is 503 and there is
 * nothing to cancel. Every such admission used to be treated as of unknown outcome, and its
 * cancel queued in the core's retry queue, which has room for `maxPendingSettles` (5 here
 * against 20 refused): 15 dropped as "queue full", reported to `onError`, the 5 others
 * replayed for nothing once the server was back. Now the adapter marks a failed `pool.connect()`
 * and a call refused at its deadline before it ran `notSent` (docs/storage.md) and no cancel is
 * queued. (4) The pool gives up after the core's timeout: the request is 503 of unknown
 * outcome, and its cancel waits for the call's end outside the queue's bound (before, 5 took
 * its room and 15 were dropped as "queue full", each leaving a rejection unhandled, which ends
 * a Node process); the call then fails unsent and nothing is cancelled or dropped. Afterwards the store counts exactly the
 * requests served: quotas, credits used, usage events, no concurrency slot held.
 */

import type pg from 'pg'
import { describe, expect, it, type TestContext } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth } from '../../src/index.js'
import { keyFigures, metered, meteredKey, privateStores } from '../support/fault.js'
import { bearer } from '../support/leases.js'

const TIMEOUT_MS = 1000
const SCHEMA = 'tb_refused'
const servers = privateStores()

describe('PostgreSQL admissions never sent (no connection from the pool)', () => {
  let migrated: Promise<unknown> | undefined

  /** A tollbooth on a pool of `max` (one of which its change feed holds), room for 5 cancels. */
  const setup = async (
    ctx: TestContext,
    exact: boolean,
    max: number,
    // statementTimeoutMs: by default postgresStorage's, below storageTimeoutMs.
    {
      connectMs = 200,
      statementTimeoutMs,
      storageTimeoutMs = TIMEOUT_MS,
    }: { connectMs?: number; statementTimeoutMs?: number; storageTimeoutMs?: number } = {},
  ) => {
    const server = await servers.postgres(ctx)
    migrated ??= migrate({ pool: servers.pool(server, { max: 1 }), schema: SCHEMA })
    await migrated
    const pool = servers.pool(server, { max, connectionTimeoutMillis: connectMs })
    const storage = postgresStorage({
      pool,
      schema: SCHEMA,
      durableCounters: true,
      ...(statementTimeoutMs === undefined ? {} : { statementTimeoutMs }),
    })
    const reported: string[] = []
    const tb = createTollbooth({
      secret: 'postgres-refused-secret-postgres-refused-01',
      storage,
      ...metered(storageTimeoutMs),
      maxPendingSettles: 5,
      onError: (err) => reported.push(err instanceof Error ? err.message : String(err)),
    })
    const account = `acct_refused_${Math.random().toString(36).slice(2, 8)}`
    const { key, record } = await meteredKey(tb, account, exact)
    // Once the change feed has delivered what the key's creation published (the key's cache
    // entry dropped on arrival) and is up (the caches empty when it comes up): a key cached
    // later stays so, and the requests refused wait for their admissions, not its lookup.
    await new Promise<void>((resolve) => {
      const probe = `probe:${Math.random()}`
      const off = storage.changes.subscribe((m) => {
        if (m !== probe) return
        void off.then((f) => f())
        resolve()
      })
      void off.then(() => storage.changes.publish(probe))
    })
    return { server, pool, storage, tb, key, keyId: record.id, account, reported }
  }

  /** `n` requests of 1 credit at once, each settled with 200 when admitted. */
  const requests = (s: Awaited<ReturnType<typeof setup>>, n: number) => {
    const route = s.tb.route({ cost: 1 })
    return Promise.all(
      Array.from({ length: n }, async () => {
        const d = await s.tb.authenticate(bearer(s.key), route)
        if (d.allowed) await s.tb.settle(d, { status: 200 })
        return d.allowed ? 200 : d.status
      }),
    )
  }

  /** Holds every connection of the pool; the function gives them back. */
  const exhaust = async (pool: Awaited<ReturnType<typeof setup>>['pool']) => {
    const held: pg.PoolClient[] = []
    while (pool.totalCount < (pool.options.max ?? 10) || pool.idleCount > 0)
      held.push(await pool.connect())
    return () => {
      for (const c of held) c.release()
    }
  }

  const faults = {
    /**
     * The server killed, then started again. Once the pool has seen its idle connections
     * close: a call given one before that fails on it, its query perhaps sent (a cancel is due).
     */
    killed: async (s: Awaited<ReturnType<typeof setup>>, refuse: () => Promise<void>) => {
      await s.server.kill()
      while (s.pool.idleCount > 0) await new Promise((r) => setTimeout(r, 5))
      await refuse()
      await s.server.restart()
    },
    /** Every connection of the pool held, then given back. */
    exhausted: async (s: Awaited<ReturnType<typeof setup>>, refuse: () => Promise<void>) => {
      const giveBack = await exhaust(s.pool)
      await refuse()
      giveBack()
    },
  }

  for (const [fault, run] of Object.entries(faults))
    for (const exact of [true, false])
      it(`queues no cancel for a request refused with no connection (${fault}, ${exact ? 'exact' : 'leased'})`, async (ctx) => {
        const s = await setup(ctx, exact, 3)
        try {
          expect(await requests(s, 10)).toEqual(Array(10).fill(200))
          const before = await keyFigures(s, Date.now)
          expect(before).toMatchObject({ daily: 10, used: 10, events: 10, slots: 0 })
          // Cached again (the usage flush dropped the key from the cache).
          expect(await requests(s, 2)).toEqual([200, 200])

          let refused: number[] = []
          let queued = -1
          await run(s, async () => {
            refused = await requests(s, 20)
            queued = s.tb.stats().settleRetries.pending
          })
          const after = await keyFigures(s, Date.now)
          const retries = s.tb.stats().settleRetries
          const full = s.reported.filter((m) => /queue full/.test(m)).length
          console.log(
            `PostgreSQL ${fault} (${exact ? 'exact' : 'leased'}): ${refused.filter((x) => x === 503).length} of 20 refused; cancels queued ${queued}, retries ${JSON.stringify(retries)}, "queue full" reported ${full}; before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
          )
          expect(refused).toEqual(Array(20).fill(503))
          // Before: 5 queued (the room there was), 15 dropped as "queue full", 5 retried.
          expect(queued).toBe(0)
          expect(retries).toEqual({ pending: 0, waiting: 0, retried: 0, dropped: 0 })
          expect(full).toBe(0)
          // The store counts the 12 served and nothing of the 20 refused.
          expect(after).toEqual({
            ...before,
            daily: 12,
            monthly: 12,
            used: 12,
            events: 12,
            units: 12,
          })
          expect(await requests(s, 3)).toEqual([200, 200, 200])
        } finally {
          await s.tb.close()
          await s.storage.close()
        }
      }, 60_000)

  it('drops no cancel, and leaves no rejection unhandled, when the pool gives up after the storage timeout', async (ctx) => {
    // The pool gives up after 1.5 s, the core after 1 s: each request is 503 of unknown outcome
    // and its cancel waits for its admission, outside the queue's bound; the admission then
    // fails, never sent, and the cancel goes nowhere.
    const s = await setup(ctx, true, 3, { connectMs: 1500 })
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      expect(await requests(s, 2)).toEqual([200, 200])
      const giveBack = await exhaust(s.pool)
      const refused = await requests(s, 20)
      const answered = s.tb.stats().settleRetries
      await new Promise((r) => setTimeout(r, 1000))
      giveBack()
      const after = await keyFigures(s, Date.now)
      const retries = s.tb.stats().settleRetries
      const full = s.reported.filter((m) => /queue full/.test(m)).length
      console.log(
        `PostgreSQL exhausted past the timeout: ${unhandled.length} unhandled rejections, retries when answered ${JSON.stringify(answered)}, then ${JSON.stringify(retries)}, "queue full" reported ${full}, after ${JSON.stringify(after)}; reported ${JSON.stringify([...new Set(s.reported)])}`,
      )
      expect(refused).toEqual(Array(20).fill(503))
      // Before: 15 unhandled rejections (each would end a Node process), one per cancel dropped.
      expect(unhandled).toEqual([])
      // Answered while the admissions were still waiting for a connection: their cancels
      // wait outside the bound of 5.
      expect(answered).toEqual({ pending: 20, waiting: 20, retried: 0, dropped: 0 })
      // Never sent: nothing cancelled, nothing dropped (before: 15 dropped as "queue full",
      // reported, and the 5 queued waited for nothing).
      expect(retries).toEqual({ pending: 0, waiting: 0, retried: 0, dropped: 0 })
      expect(full).toBe(0)
      expect(after).toMatchObject({ daily: 2, used: 2, events: 2, units: 2, slots: 0 })
    } finally {
      process.off('unhandledRejection', onUnhandled)
      await s.tb.close()
      await s.storage.close()
    }
  }, 60_000)

  it('queues no cancel for a request whose connection came after statementTimeoutMs', async (ctx) => {
    // The pool waits for a connection as long as it takes (pg's default), the store gives up
    // at 400 ms, the core at 1,500: the connections come back at 800, and each call, past its
    // deadline, is refused unsent then.
    const s = await setup(ctx, true, 3, {
      connectMs: 0,
      statementTimeoutMs: 400,
      storageTimeoutMs: 1500,
    })
    try {
      expect(await requests(s, 2)).toEqual([200, 200])
      const giveBack = await exhaust(s.pool)
      setTimeout(giveBack, 800)
      const t = Date.now()
      const refused = await requests(s, 20)
      const ms = Date.now() - t
      const queued = s.tb.stats().settleRetries.pending
      const after = await keyFigures(s, Date.now)
      const retries = s.tb.stats().settleRetries
      console.log(
        `PostgreSQL pool busy past statementTimeoutMs: 20 refused in ${ms} ms; cancels queued ${queued}, retries ${JSON.stringify(retries)}, after ${JSON.stringify(after)}`,
      )
      expect(refused).toEqual(Array(20).fill(503))
      // Refused by the store's deadline, before the core's timeout.
      expect(ms).toBeLessThan(1500)
      // Before: 5 queued and replayed, 15 dropped as "queue full".
      expect(queued).toBe(0)
      expect(retries).toEqual({ pending: 0, waiting: 0, retried: 0, dropped: 0 })
      expect(after).toMatchObject({ daily: 2, used: 2, events: 2, units: 2, slots: 0 })
    } finally {
      await s.tb.close()
      await s.storage.close()
    }
  }, 60_000)
})
