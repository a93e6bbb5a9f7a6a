/**
 * @module test/storage/leased-release-order
 *
 * A credit lease's release reaches the store as its attempts land, not as they were sent. Its
 * first attempt can fail for the caller and still be applied later (a call timed out on a store
 * that runs it once it thaws, on a connection other than its retry's), after the retry. The
 * retry is a release `ifHeld`; the first attempt was a plain release, which every store applies
 * as "drop the hold if there, add the charge" — so landing after the retry it charged the lease's
 * charges a second time. Now every release of a lease is `ifHeld` from its first attempt (a hold
 * the store no longer has is made again first), so its attempts charge once in any order.
 *
 * Deterministic: the decorator runs over each real store through a pass-through that fails the
 * first attempt of a lease's release for the caller without sending it, then applies it to the
 * store after the retry has landed (the reversed order). The rule is the stores' own (the core's
 * counters for memory, SQLite and PostgreSQL; the Redis script), so all four are run.
 *
 * Also kept: a lease released after its store hold lapsed still charges, once (the hold is made
 * again, then released); and on PostgreSQL a release held up by a row lock from another
 * connection past its deadline is not committed by the adapter, so it lands once, before and
 * after this change (the reversal needs an attempt that fails for the caller yet lands).
 */

import { describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { leasedCounters } from '../../src/storage/leased-counters.js'
import type { Check, CounterStore, SettleOp } from '../../src/storage/types.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { fourStores } from '../support/stores.js'

const stores = await fourStores('lease-order')

const KEY = '{acct_order}:credits'
const hold = (holdId: string, ttlMs = 30_000): Check => ({
  type: 'hold',
  key: KEY,
  name: 'credits',
  limit: 1_000_000,
  amount: 3,
  holdId,
  ttlMs,
})

/**
 * `inner` as it is, but the first settle with a lease's release after `arm()` fails for the
 * caller without reaching the store; `late()` applies it then (it lands after its retry). With
 * `arm(true)`, it is applied at once and fails for the caller all the same (its answer lost).
 */
function reordering(inner: CounterStore) {
  let armed: false | 'late' | 'lost answer' = false
  let held: SettleOp[] | null = null
  const store: CounterStore = {
    ...inner,
    consume: (checks, now, admission) => inner.consume(checks, now, admission),
    settle: async (ops, now) => {
      if (armed && ops.some((op) => op.type === 'release' && op.holdId.startsWith('lease:'))) {
        const mode = armed
        armed = false
        held = [...ops]
        if (mode === 'lost answer') await inner.settle(ops, now)
        throw new Error('timed out (the attempt is still on its way)')
      }
      return inner.settle(ops, now)
    },
  }
  return {
    store,
    arm: (lostAnswer = false) => {
      armed = lostAnswer ? 'lost answer' : 'late'
    },
    late: async (now: number) => {
      expect(held, 'a lease release was sent').not.toBeNull()
      await inner.settle(held!, now)
    },
  }
}

/**
 * A decorator over `inner` (through `reordering`) with short credit leases (1 s, a store hold of
 * 6 s) on an injected clock, holding one lease with the charges of 100 requests (2 each).
 */
async function shortLease(inner: CounterStore) {
  const wire = reordering(inner)
  const t0 = Date.now()
  let at = t0
  const counters = leasedCounters(wire.store, {
    minUnits: 4,
    rateMs: 100,
    flushEveryMs: 0,
    holdLeaseMs: 1000,
    holdGraceMs: 5000,
    // The clock of the give-back's retries.
    clock: () => at,
  })
  let charged = 0
  for (let i = 0; i < 100; i++) {
    const now = t0 + i
    expect((await counters.consume([hold(`s${i}`, 3000)], now)).allowed).toBe(true)
    await counters.settle([{ type: 'release', key: KEY, holdId: `s${i}`, charge: 2 }], now)
    charged += 2
  }
  expect(counters.stats().leases).toBe(1)
  const setClock = (t: number) => {
    at = t
  }
  return { wire, counters, charged, t0, setClock }
}

describe.each(Object.entries(stores))('a credit lease released out of order: %s', (_, make) => {
  it.skipIf(!make)(
    'its first attempt landing after its retry charges nothing more: the store holds exactly the charges',
    async () => {
      const storage = await make!()
      const wire = reordering(storage.counters)
      const counters = leasedCounters(wire.store, { minUnits: 4, rateMs: 100, flushEveryMs: 0 })
      let charged = 0
      for (let i = 0; i < 200; i++) {
        const r = await counters.consume([hold(`r${i}`)], Date.now())
        expect(r.allowed).toBe(true)
        await counters.settle(
          [{ type: 'release', key: KEY, holdId: `r${i}`, charge: 2 }],
          Date.now(),
        )
        charged += 2
      }
      expect(counters.stats().localSettles, 'settled against a lease').toBeGreaterThan(0)
      expect(counters.stats().leases, 'a lease alive').toBe(1)
      wire.arm()
      // The lease's release: its first attempt "times out", its retry (ifHeld) lands.
      await counters.close(Date.now())
      // Then the first attempt lands.
      await wire.late(Date.now())
      // Before: 400 charged, then the lease's charges again (542 to 740 for 400, by run).
      expect(await storage.counters.held(KEY, Date.now())).toBe(charged)
      await storage.close?.()
    },
    30_000,
  )
})

describe.each(Object.entries(stores))(
  'a credit lease released after its store hold lapsed: %s',
  (_, make) => {
    it.skipIf(!make)(
      'still charges what its requests were charged, once (the hold is made again, then released)',
      async () => {
        const storage = await make!()
        const { wire, counters, charged, t0, setClock } = await shortLease(storage.counters)
        // The instance stalled past the lease's store hold (1 s + 5 s): released only now; its
        // first attempt lands after its retry, as above.
        wire.arm()
        const late = t0 + 10_000
        setClock(late)
        await counters.flush(late, true)
        await wire.late(late)
        expect(await storage.counters.held(KEY, late)).toBe(charged)
        await storage.close?.()
      },
      30_000,
    )
  },
)

describe.skipIf(skipPostgres)(
  'a credit lease released while another connection holds its row (PostgreSQL)',
  () => {
    it('charges once: an attempt past its deadline is not committed, so none lands after its retry', async () => {
      const pool = newPool(4)
      const { schema, drop } = await freshSchema(pool)
      const locker = await pool.connect()
      try {
        const storage = postgresStorage({ pool, schema, statementTimeoutMs: 300 })
        const counters = leasedCounters(storage.counters, {
          minUnits: 4,
          rateMs: 100,
          flushEveryMs: 0,
        })
        let charged = 0
        for (let i = 0; i < 200; i++) {
          expect((await counters.consume([hold(`p${i}`)], Date.now())).allowed).toBe(true)
          await counters.settle(
            [{ type: 'release', key: KEY, holdId: `p${i}`, charge: 2 }],
            Date.now(),
          )
          charged += 2
        }
        expect(counters.stats().leases).toBe(1)
        const calls = counters.stats().leaseCalls
        await locker.query('BEGIN')
        await locker.query(`SELECT * FROM "${schema}".counters WHERE key = $1 FOR UPDATE`, [KEY])
        const closed = counters.close(Date.now())
        // The release and its first retries wait on the lock past their deadline (300 ms each).
        await new Promise((r) => setTimeout(r, 1_500))
        await locker.query('COMMIT')
        await closed
        expect(counters.stats().leaseCalls - calls, 'the release tried again').toBeGreaterThan(2)
        expect(counters.stats().lostGiveBacks).toBe(0)
        expect(await storage.counters.held(KEY, Date.now())).toBe(charged)
      } finally {
        locker.release()
        await drop()
        await pool.end()
      }
    }, 30_000)
  },
)

describe.each(Object.entries(stores))(
  'a lapsed lease hold made again, its release answered lost: %s',
  (_, make) => {
    it.skipIf(!make)(
      'is not made again by a retry after that hold lapsed too: its charges land once',
      async () => {
        const storage = await make!()
        const { wire, counters, charged, t0, setClock } = await shortLease(storage.counters)
        // Released after its store hold lapsed: the hold is made again (for 6 s), then released;
        // that release lands but its answer is lost, and the retry comes once the hold made
        // again would have lapsed too (the store down that long).
        wire.arm(true)
        const late = t0 + 10_000
        setClock(late)
        const ended = counters.flush(late, true)
        setClock(late + 7_000)
        await ended
        // A retry that made the hold again would have charged the lease's charges twice.
        expect(await storage.counters.held(KEY, late + 7_000)).toBe(charged)
        await storage.close?.()
      },
      30_000,
    )
  },
)
