/**
 * @module test/property/skewed-clocks
 *
 * Several instances share one counter store, each reading its own clock, every clock within
 * ±D = 2 s of true time (fixed offsets per instance, and now and then a clock that steps to
 * another offset). Random traffic in true time, each request from a random instance with its
 * clock's reading as `now`. What is proved, on the memory store, on the Redis Lua and (fewer
 * runs, each admission a transaction) on PostgreSQL:
 * - GCRA: the units admitted in any true-time interval of length t are at most
 *   `limit + (t + 2D) * limit / periodMs` (exact GCRA's bound, t widened by the skew). Storing
 *   a request's earlier clock reading as the state's time broke it without bound: 89 through
 *   50 per minute in 6 s with two clocks 1 s apart.
 * - Rolling windows: no true-time interval of length `windowMs - 2D` admits more than `limit`.
 */

import fc from 'fast-check'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PostgresStorage, postgresStorage } from '../../adapters/postgres/index.js'
import { memoryStorage } from '../../src/storage/memory.js'
import type { Check, CounterStore } from '../../src/storage/types.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis } from '../support/redis.js'
import { checkGcra, checkWindow, limitCheck, luaCounters, offset } from './skew.js'

const T0 = 1_767_225_600_000

interface Run {
  limit: number
  periodMs: number
  /** Each instance's clock offset (ms). */
  offsets: number[]
  requests: Array<{ dt: number; instance: number; step: number | null; cost: number }>
}

function run(kind: 'gcra' | 'window'): fc.Arbitrary<Run> {
  return fc
    .record({
      limit: fc.integer({ min: 1, max: 60 }),
      // Windows divide into 24 buckets, as the quotas do, and are longer than 2D.
      periodMs:
        kind === 'gcra'
          ? fc.oneof(fc.integer({ min: 200, max: 20_000 }), fc.constantFrom(1000, 60_000))
          : fc.integer({ min: 3, max: 40 }).map((h) => h * 24 * 250),
      offsets: fc.array(offset, { minLength: 2, maxLength: 5 }),
    })
    .chain((p) =>
      fc.record({
        limit: fc.constant(p.limit),
        periodMs: fc.constant(p.periodMs),
        offsets: fc.constant(p.offsets),
        requests: fc.array(
          fc.record({
            dt: fc.oneof(
              fc.constant(0),
              fc.integer({ min: 0, max: Math.ceil(p.periodMs / p.limit / 4) }),
              fc.integer({ min: 0, max: Math.ceil(p.periodMs / p.limit) }),
              fc.integer({ min: 0, max: p.periodMs }),
            ),
            instance: fc.nat({ max: p.offsets.length - 1 }),
            // A clock stepped to another offset (NTP), now and then.
            step: fc.option(offset, { freq: 5 }),
            cost: kind === 'gcra' ? fc.integer({ min: 1, max: 3 }) : fc.constant(1),
          }),
          { minLength: 1, maxLength: 120 },
        ),
      }),
    )
}

/** Plays `r` against `counters`; returns the admitted units with their true times. */
async function play(counters: CounterStore, key: string, kind: 'gcra' | 'window', r: Run) {
  const offsets = r.offsets.slice()
  const admitted: Array<{ t: number; cost: number }> = []
  let t = T0
  for (const q of r.requests) {
    t += q.dt
    if (q.step !== null) offsets[q.instance] = q.step
    const check = limitCheck(kind, key, r, q.cost)
    const res = await counters.consume([check], t + offsets[q.instance]!)
    if (res.allowed) admitted.push({ t, cost: q.cost })
  }
  return admitted
}

let n = 0
const memory = () => memoryStorage().counters

/**
 * The reported case: two instances alternate every 10 ms for 6 s on 50 per minute, one clock
 * 1 s behind. Exact GCRA admits 50 + 6 * 50 / 60 = 55, the skew bound 56; storing the request's
 * own time admitted 89.
 */
async function reported(c: CounterStore): Promise<number> {
  const key = `{a}:reported${n++}`
  let admitted = 0
  for (let i = 0, t = 0; t < 6000; i++, t += 10) {
    const check: Check = { type: 'gcra', key, name: 'r', limit: 50, windowMs: 60_000, cost: 1 }
    if ((await c.consume([check], T0 + t - (i % 2 ? 1000 : 0))).allowed) admitted++
  }
  return admitted
}

describe('skewed clocks against one memory store', () => {
  it('GCRA admits at most limit + (t + 2D) * limit / period in any interval t', async () => {
    await fc.assert(
      fc.asyncProperty(run('gcra'), async (r) => {
        checkGcra(r, await play(memory(), `{a}:g${n++}`, 'gcra', r))
      }),
      { numRuns: 1500 },
    )
  })

  it('a rolling window admits at most limit in any interval of windowMs - 2D', async () => {
    await fc.assert(
      fc.asyncProperty(run('window'), async (r) => {
        checkWindow(r, await play(memory(), `{a}:w${n++}`, 'window', r))
      }),
      { numRuns: 300 },
    )
  })

  it('reproduces the reported case: two clocks 1 s apart, 50 per minute, 6 s of traffic', async () => {
    expect(await reported(memory())).toBeLessThanOrEqual(56)
  })
})

const client = await connectRedis()

describe.skipIf(!client)('skewed clocks against one Redis (the Lua)', () => {
  const counters = luaCounters(client!, 'skew')

  it('GCRA admits at most limit + (t + 2D) * limit / period in any interval t', async () => {
    await fc.assert(
      fc.asyncProperty(run('gcra'), async (r) => {
        checkGcra(r, await play(counters, `{a}:g${n++}`, 'gcra', r))
      }),
      { numRuns: 300 },
    )
  })

  it('a rolling window admits at most limit in any interval of windowMs - 2D', async () => {
    await fc.assert(
      fc.asyncProperty(run('window'), async (r) => {
        checkWindow(r, await play(counters, `{a}:w${n++}`, 'window', r))
      }),
      { numRuns: 200 },
    )
  })

  it('reproduces the reported case: two clocks 1 s apart, 50 per minute, 6 s of traffic', async () => {
    expect(await reported(counters)).toBeLessThanOrEqual(56)
  })
})

describe.skipIf(skipPostgres)('skewed clocks against one PostgreSQL', () => {
  let pool: pg.Pool
  let drop: () => Promise<void> = async () => {}
  let storage: PostgresStorage
  beforeAll(async () => {
    pool = newPool(4)
    const fresh = await freshSchema(pool)
    drop = fresh.drop
    storage = postgresStorage({ pool, schema: fresh.schema, pruneEvery: 0 })
  })
  afterAll(async () => {
    await storage?.close()
    await drop()
    await pool?.end()
  })

  it('GCRA admits at most limit + (t + 2D) * limit / period in any interval t', async () => {
    await fc.assert(
      fc.asyncProperty(run('gcra'), async (r) => {
        checkGcra(r, await play(storage.counters, `{a}:g${n++}`, 'gcra', r))
      }),
      { numRuns: 100 },
    )
  })

  it('reproduces the reported case: two clocks 1 s apart, 50 per minute, 6 s of traffic', async () => {
    expect(await reported(storage.counters)).toBeLessThanOrEqual(56)
  })
})
