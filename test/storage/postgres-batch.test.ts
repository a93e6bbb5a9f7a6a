/**
 * @module test/storage/postgres-batch
 *
 * The PostgreSQL counters in batches per account (`adapters/postgres/counter-batches`):
 * - 200 concurrent admissions of one account against a limit of 50 admit exactly 50 in far
 *   fewer transactions than admissions, counted as connections checked out of a real pool
 *   (each transaction checks out one) and by the store's own count;
 * - admissions, settles and cancels fired together give, call for call, the answers the memory
 *   store gives to the same calls run one by one in the same order, and the same end state;
 * - a transaction that fails (a row locked elsewhere past the deadline) fails every call of
 *   its batch and commits nothing;
 * - another account is served while one account's batch waits on a lock;
 * - when every connection is busy, one transaction serves the calls of many accounts waiting
 *   for a turn; a shared transaction stuck on one account's locked row gives the calls back to
 *   run alone (the others are served); two stores sharing accounts still count exactly;
 * - a transaction runs in one statement (`counters_apply`) on the values its instance last
 *   read or wrote, and under lock when another writer changed a row since (counts exact
 *   across two stores on one schema); a value known expired may have been pruned; a schema
 *   without the function (not migrated to 5) and `preparedStatements: false` still count.
 */

import type pg from 'pg'
import { describe, expect, it } from 'vitest'
import type { PostgresCounters } from '../../adapters/postgres/counters.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { prng } from '../../adapters/testing/fixtures.js'
import {
  type AdmissionId,
  type Check,
  type ConsumeResult,
  type CounterStore,
  memoryStorage,
  type SettleOp,
  StorageUnavailableError,
} from '../../src/index.js'
import { total } from '../support/core.js'
import {
  freshSchema,
  lockCounterRow,
  newPool,
  schemaPerSuite,
  skipPostgres,
} from '../support/postgres.js'

const T0 = 1_767_225_600_000
const DAY = 86_400_000
const HOUR = 3_600_000

/** A real pool whose `connect` is counted: one per transaction of the counters. */
function countingPool(pool: pg.Pool) {
  const counted = {
    connects: 0,
    options: pool.options,
    query: pool.query.bind(pool) as pg.Pool['query'],
    connect: ((...args: Parameters<pg.Pool['connect']>) => {
      counted.connects++
      return (pool.connect as (...a: unknown[]) => unknown)(...args)
    }) as pg.Pool['connect'],
  }
  return counted
}

describe.skipIf(skipPostgres)('PostgreSQL counters in batches per account', () => {
  const pool = newPool(10)
  const db = schemaPerSuite(pool)

  const account = () => `{acct_${Math.random().toString(36).slice(2, 12)}}`

  /** Counters on a pool of `size` connections, with a statement timeout of 1.5 s. */
  const smallStore = (size: number) => {
    const small = newPool(size)
    const counters = postgresStorage({ pool: small, schema: db.schema, statementTimeoutMs: 1500 })
      .counters as PostgresCounters
    return { small, counters }
  }
  const lockRow = (key: string) => lockCounterRow(db.schema, key)

  it('admits exactly 50 of 200 concurrent admissions of one account in far fewer transactions', async () => {
    const counted = countingPool(pool)
    const counters = postgresStorage({ pool: counted, schema: db.schema })
      .counters as PostgresCounters
    const key = `${account()}:q:total`
    const admitted = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        counters.consume([total(key, 50)], T0 + i, { key: `${key}:a:${i}`, ttlMs: 60_000 }),
      ),
    )
    expect(admitted.filter((r) => r.allowed)).toHaveLength(50)
    // In arrival order: the first 50 calls are the admitted ones, each seeing the one before.
    expect(admitted.slice(0, 50).map((r) => r.results[0]!.used)).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    )
    expect(counted.connects).toBeLessThanOrEqual(10)
    // Nothing known, nothing stored: the first transaction runs in one statement.
    expect(counters.stats()).toEqual({
      transactions: counted.connects,
      calls: 200,
      oneStatement: counted.connects,
      changed: 0,
      merged: 0,
      givenBack: 0,
    })
    // The refused admissions left no row behind (their records were never written).
    const rows = await pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".counters WHERE key LIKE $1`,
      [`${key}:a:%`],
    )
    expect(rows.rows[0].n).toBe(50)
  })

  it('answers admissions, settles and cancels fired together as the memory store run one by one', async () => {
    const ref = memoryStorage().counters
    const counted = countingPool(pool)
    const c = postgresStorage({ pool: counted, schema: db.schema }).counters as PostgresCounters
    const rand = prng(20261204)
    const tag = account()
    const n = {
      window: `${tag}:k:1:q:daily`,
      total: `${tag}:q:total`,
      gcra: `${tag}:k:1:r0`,
      hold: `${tag}:c`,
    }
    const cost = () => 1 + Math.floor(rand() * 3)
    const adders = (): Array<Extract<Check, { type: 'window' | 'gcra' }>> => [
      {
        type: 'window',
        key: n.window,
        name: 'daily',
        limit: 40,
        windowMs: DAY,
        bucketMs: HOUR,
        cost: cost(),
      },
      {
        type: 'window',
        key: n.total,
        name: 'total',
        limit: 120,
        windowMs: 0,
        bucketMs: 0,
        cost: cost(),
      },
      { type: 'gcra', key: n.gcra, name: 'rate', limit: 8, windowMs: 1024, cost: cost() },
    ]
    const checksOf = (): Check[] => [
      ...adders().filter(() => rand() < 0.6),
      ...(rand() < 0.5
        ? [
            {
              type: 'hold',
              key: n.hold,
              name: 'concurrency',
              limit: 4,
              amount: 1,
              holdId: `h${Math.floor(rand() * 8)}`,
              ttlMs: 1500,
            } as Check,
          ]
        : []),
    ]
    const admissions: Array<{ id: AdmissionId; at: number; checks: Check[] }> = []
    let now = T0
    let calls = 0
    for (let round = 0; round < 25; round++) {
      // One round: up to 40 calls fired without waiting, then their answers.
      const ops: Array<(s: CounterStore) => Promise<unknown>> = []
      const size = 1 + Math.floor(rand() * 40)
      for (let i = 0; i < size; i++) {
        now += Math.floor(rand() * 60)
        const t = now
        const roll = rand()
        if (roll < 0.6) {
          const checks = checksOf()
          if (checks.length === 0) continue
          const id = { key: `${tag}:a:${round}.${i}`, ttlMs: 60_000 }
          const withId = rand() < 0.5
          admissions.push({ id, at: t, checks })
          ops.push((s) => s.consume(checks, t, withId ? id : undefined))
        } else if (roll < 0.8) {
          const op: SettleOp =
            rand() < 0.5
              ? {
                  type: 'release',
                  key: n.hold,
                  holdId: `h${Math.floor(rand() * 8)}`,
                  charge: Math.floor(rand() * 2),
                  ifHeld: rand() < 0.5,
                }
              : { type: 'add', check: adders()[Math.floor(rand() * 3)]! }
          ops.push((s) => s.settle([op], t))
        } else if (admissions.length > 0) {
          const a = admissions[Math.floor(rand() * admissions.length)]!
          const op: SettleOp = {
            type: 'cancel',
            key: a.id.key,
            ttlMs: 60_000,
            at: a.at,
            checks: a.checks,
          }
          ops.push((s) => s.settle([op], t))
        } else continue
      }
      const got = await Promise.all(ops.map((op) => op(c)))
      const want: unknown[] = []
      for (const op of ops) want.push(await op(ref))
      expect(got, `round ${round}`).toEqual(want)
      calls += ops.length
      // The end state, read one by one on both.
      const probe = adders().map((a) => ({ ...a, cost: 0 }))
      for (const p of probe) {
        const r: ConsumeResult = await ref.consume([p], now)
        expect(await c.consume([p], now), `round ${round} ${p.key}`).toEqual(r)
      }
      expect(await c.held(n.hold, now)).toBe(await ref.held(n.hold, now))
      calls += probe.length + 1
    }
    expect(c.stats().calls).toBe(calls)
    expect(c.stats().transactions).toBeLessThan(calls / 2)
  })

  it('fails every call of a batch whose transaction fails, and commits nothing', async () => {
    const counters = postgresStorage({ pool, schema: db.schema, statementTimeoutMs: 300 })
      .counters as PostgresCounters
    const key = `${account()}:q:total`
    expect((await counters.consume([total(key, 100)], T0)).allowed).toBe(true)
    const release = await lockRow(key)
    let outcomes: PromiseSettledResult<ConsumeResult>[]
    try {
      outcomes = await Promise.allSettled(
        Array.from({ length: 30 }, (_, i) => counters.consume([total(key, 100)], T0 + 1 + i)),
      )
    } finally {
      await release()
    }
    for (const o of outcomes) {
      expect(o.status).toBe('rejected')
      const err = (o as PromiseRejectedResult).reason as { code?: string }
      // The lock wait cut at the deadline (55P03 or 57014, whichever timeout fires first), or
      // the deadline passed before its turn.
      expect(
        err instanceof StorageUnavailableError || err.code === '55P03' || err.code === '57014',
        String(err),
      ).toBe(true)
    }
    // The calls of the first batch failed with the one error of their transaction.
    const first = (outcomes[0] as PromiseRejectedResult).reason
    expect((outcomes[1] as PromiseRejectedResult).reason).toBe(first)
    expect((await counters.consume([total(key, 100, 0)], T0 + 100)).results[0]!.used).toBe(1)
  })

  it('serves another account while one account’s batch waits on a lock', async () => {
    const { small, counters } = smallStore(3)
    try {
      const stuck = `${account()}:q:total`
      const free = `${account()}:q:total`
      await counters.consume([total(stuck, 1000)], T0)
      const release = await lockRow(stuck)
      const burst = Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => counters.consume([total(stuck, 1000)], T0 + i)),
      )
      const served: boolean[] = []
      try {
        for (let i = 0; i < 10; i++)
          served.push((await counters.consume([total(free, 1000)], T0 + i)).allowed)
      } finally {
        await release()
      }
      expect(served).toEqual(Array(10).fill(true))
      // Released in time: the burst commits, in batches.
      expect((await burst).every((o) => o.status === 'fulfilled' && o.value.allowed)).toBe(true)
      expect((await counters.consume([total(stuck, 1000, 0)], T0 + 99)).results[0]!.used).toBe(51)
    } finally {
      await small.end()
    }
  })

  it('serves the calls of many accounts waiting for a turn in shared one-statement transactions', async () => {
    const small = newPool(2)
    try {
      const counters = postgresStorage({ pool: small, schema: db.schema })
        .counters as PostgresCounters
      const keys = Array.from({ length: 100 }, () => `${account()}:q:total`)
      // Three admissions per account against a limit of 2, all at once: 300 calls of 100
      // accounts on two connections.
      const results = await Promise.all(
        keys.flatMap((key, i) =>
          [0, 1, 2].map((j) => counters.consume([total(key, 2)], T0 + 3 * i + j)),
        ),
      )
      for (let i = 0; i < keys.length; i++)
        expect(results.slice(3 * i, 3 * i + 3).map((r) => r.allowed)).toEqual([true, true, false])
      const stats = counters.stats()
      expect(stats.calls).toBe(300)
      // Without merging each account would take its own transactions (at least 100).
      expect(stats.transactions).toBeLessThan(50)
      expect(stats.merged).toBeGreaterThan(0)
      expect(stats.givenBack).toBe(0)
      // Every count as stored: 2 per account.
      for (const key of keys)
        expect((await counters.consume([total(key, 2, 0)], T0 + 999)).results[0]!.used).toBe(2)
    } finally {
      await small.end()
    }
  })

  it('counts exactly when two stores share accounts and both merge them into shared transactions', async () => {
    const poolA = newPool(2)
    const poolB = newPool(2)
    try {
      const a = postgresStorage({ pool: poolA, schema: db.schema }).counters as PostgresCounters
      const b = postgresStorage({ pool: poolB, schema: db.schema }).counters as PostgresCounters
      const keys = Array.from({ length: 30 }, () => `${account()}:q:total`)
      // 30 accounts, limit 5 each, 8 admissions per account per store at once: each store's
      // shared transactions find rows the other one changed (TB409), then run under lock.
      const results = await Promise.all(
        [a, b].flatMap((store, s) =>
          keys.flatMap((key, i) =>
            Array.from({ length: 8 }, (_, j) =>
              store.consume([total(key, 5)], T0 + s * 1000 + i * 8 + j),
            ),
          ),
        ),
      )
      for (let i = 0; i < keys.length; i++) {
        const mine = results.filter((_, n) => Math.floor((n % 240) / 8) === i)
        expect(mine.filter((r) => r.allowed)).toHaveLength(5)
      }
      for (const key of keys)
        expect((await a.consume([total(key, 5, 0)], T0 + 9999)).results[0]!.used).toBe(5)
      const merged = a.stats().merged + b.stats().merged
      expect(merged).toBeGreaterThan(0)
    } finally {
      await poolA.end()
      await poolB.end()
    }
  })

  it('gives back the calls of a shared transaction stuck on one account’s locked row: the others are served', async () => {
    const { small, counters } = smallStore(2)
    try {
      const stuck = `${account()}:q:total`
      const others = Array.from({ length: 20 }, () => `${account()}:q:total`)
      const first = [`${account()}:q:total`, `${account()}:q:total`]
      // Known values for every account (a transaction on known values may take other groups).
      for (const key of [stuck, ...others, ...first]) await counters.consume([total(key, 1000)], T0)
      const release = await lockRow(stuck)
      // Two calls take both connections; the stuck account's call and the others wait for a
      // turn, and the first transaction to get its connection takes them together.
      const calls = [...first, stuck, ...others].map((key) =>
        counters.consume([total(key, 1000)], T0 + 1).then(
          (r) => r.allowed,
          () => false,
        ),
      )
      let served: boolean[]
      try {
        served = await Promise.all([...calls.slice(0, 2), ...calls.slice(3)])
      } finally {
        await release()
      }
      expect(served).toEqual(Array(22).fill(true))
      expect(counters.stats().givenBack).toBeGreaterThan(0)
      await calls[2]
    } finally {
      await small.end()
    }
  })

  it('runs in one statement on the values it knows, and under lock when another store wrote', async () => {
    const a = postgresStorage({ pool, schema: db.schema }).counters as PostgresCounters
    const b = postgresStorage({ pool, schema: db.schema }).counters as PostgresCounters
    const key = `${account()}:q:total`
    const used = async (c: CounterStore, at: number) =>
      (await c.consume([total(key, 10)], at)).results[0]!.used
    expect(await used(a, T0)).toBe(1)
    expect(await used(a, T0 + 1)).toBe(2)
    // b knows nothing of the row: its guess (no row) is wrong, so it reads under lock.
    expect(await used(b, T0 + 2)).toBe(3)
    // a's value is stale now: found changed, then read under lock.
    expect(await used(a, T0 + 3)).toBe(4)
    expect(a.stats()).toMatchObject({ transactions: 3, calls: 3, oneStatement: 2, changed: 1 })
    expect(b.stats()).toMatchObject({ transactions: 1, calls: 1, oneStatement: 0, changed: 1 })
    // Interleaved bursts of both stores: each admission counted once, none past the limit.
    const both = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).consume([total(key, 30)], T0 + 10 + i)),
    )
    expect(both.filter((r) => r.allowed)).toHaveLength(26)
    expect(await used(a, T0 + 100)).toBe(30)
  })

  it('takes a pruned row for the value it knew expired', async () => {
    const counters = postgresStorage({ pool, schema: db.schema }).counters as PostgresCounters
    const key = `${account()}:k:1:q:minute`
    const check: Check = {
      type: 'window',
      key,
      name: 'minute',
      limit: 5,
      windowMs: 60_000,
      bucketMs: 1_000,
      cost: 1,
    }
    expect((await counters.consume([check], T0)).results[0]!.used).toBe(1)
    expect(await counters.prune(T0 + 3_600_000)).toBeGreaterThanOrEqual(1)
    expect((await counters.consume([check], T0 + 3_600_000)).results[0]!.used).toBe(1)
    expect(counters.stats()).toMatchObject({ transactions: 2, oneStatement: 2, changed: 0 })
  })

  it('counts under lock on a schema without counters_apply, and without prepared statements', async () => {
    const fresh = await freshSchema(pool)
    try {
      await pool.query(`DROP FUNCTION "${fresh.schema}".counters_apply`)
      const old = postgresStorage({ pool, schema: fresh.schema }).counters as PostgresCounters
      const key = `${account()}:q:total`
      for (let i = 0; i < 3; i++)
        expect((await old.consume([total(key, 10)], T0 + i)).results[0]!.used).toBe(i + 1)
      expect(old.stats()).toMatchObject({ transactions: 3, oneStatement: 0, changed: 0 })
    } finally {
      await fresh.drop()
    }
    const unprepared = postgresStorage({ pool, schema: db.schema, preparedStatements: false })
      .counters as PostgresCounters
    const key = `${account()}:q:total`
    for (let i = 0; i < 3; i++)
      expect((await unprepared.consume([total(key, 10)], T0 + i)).results[0]!.used).toBe(i + 1)
    expect(unprepared.stats()).toMatchObject({ transactions: 3, oneStatement: 3, changed: 0 })
  })
})
