/**
 * @module test/storage/postgres-keys
 *
 * Keys on PostgreSQL beyond the conformance suite: `lastUsedAt` flushes of several instances
 * touching the same keys in opposite orders queue instead of deadlocking and keep the latest
 * time; records with every kind of JSON and text survive the round trip; a duplicate hash
 * surfaces as the database's unique violation.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PostgresStorage, postgresStorage } from '../../adapters/postgres/index.js'
import { makeKey } from '../../adapters/testing/fixtures.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'

describe.skipIf(skipPostgres)('postgres keys', () => {
  let a: pg.Pool
  let b: pg.Pool
  let drop: () => Promise<void> = async () => {}
  let one: PostgresStorage
  let two: PostgresStorage

  beforeAll(async () => {
    a = newPool(10)
    b = newPool(10)
    const s = await freshSchema(a)
    drop = s.drop
    one = postgresStorage({ pool: a, schema: s.schema })
    two = postgresStorage({ pool: b, schema: s.schema })
  })

  afterAll(async () => {
    await drop()
    await Promise.all([a?.end(), b?.end()])
  })

  it('takes concurrent lastUsedAt flushes in opposite orders without deadlock', async () => {
    const keys = Array.from({ length: 200 }, () => makeKey({ accountId: 'acct_touch' }))
    for (const k of keys) await one.keys.insert(k)
    const ids = keys.map((k) => k.id)
    await Promise.all(
      Array.from({ length: 12 }, (_, round) => {
        const order = round % 2 ? ids.slice().reverse() : ids
        const store = round % 2 ? two : one
        return store.keys.touch(order.map((id) => ({ id, lastUsedAt: 1000 + round })))
      }),
    )
    for (const id of [ids[0]!, ids[99]!, ids[199]!]) {
      expect((await two.keys.get(id))?.lastUsedAt).toBe(1011)
    }
  })

  it('round-trips text, JSON and limits exactly', async () => {
    const k = makeKey({
      name: `It's "quoted" \\ back\\slash — ünïcödé 😀`,
      category: null,
      scopes: ['a b', 'c,d', '"e"', '{f}', ''],
      metadata: { n: 1.5, big: 2 ** 53 - 1, tiny: 5e-324, s: "x'y", arr: [null, true, { z: [] }] },
      limits: {
        quotas: { total: 1, daily: 2, weekly: 3, monthly: 4 },
        rateLimits: [
          { limit: 1e9, windowMs: 60_000 },
          { limit: 5, windowMs: 1000, unit: 'tokens' },
        ],
        concurrency: 1,
        budget: 12.75,
        timeBlocks: [{ start: 1, end: 2 }],
      },
      expiresAt: 8_640_000_000_000_000,
    })
    await one.keys.insert(k)
    expect(await two.keys.getByHash(k.hash)).toEqual(k)
    await expect(one.keys.insert(makeKey({ hash: k.hash }))).rejects.toMatchObject({
      code: '23505',
    })
  })
})
