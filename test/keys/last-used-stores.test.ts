/**
 * @module test/keys/last-used-stores
 *
 * `usage.lastUsedResolutionMs` on every store: the rule lives in the core (the key's cache
 * entry), and the stored `lastUsedAt` it reads back comes from each store's own `getByHash`.
 * Two instances on one store: within the resolution of a stored time neither writes; past it,
 * the first use writes.
 */

import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, manualClock, memoryStorage, type Storage } from '../../src/internal.js'
import { request, SECRET, T0 } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, prefixPerTest } from '../support/redis.js'

const redis = await connectRedis()
const pool: pg.Pool | null = skipPostgres ? null : newPool(4)
const drops: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const drop of drops) await drop()
  await pool?.end()
  redis?.disconnect()
})
const newPrefix = redis ? prefixPerTest(redis) : () => ''

const stores: Array<[string, boolean, () => Promise<Storage>]> = [
  ['memory', true, async () => memoryStorage()],
  [
    'redis',
    redis !== null,
    async () => redisStorage({ client: redis!, keyPrefix: newPrefix('lu') }),
  ],
  [
    'postgres',
    pool !== null,
    async () => {
      const s = await freshSchema(pool!)
      drops.push(s.drop)
      return postgresStorage({ pool: pool!, schema: s.schema })
    },
  ],
]

describe.each(stores)('lastUsedAt to a resolution on %s', (_name, reachable, make) => {
  it.skipIf(!reachable)(
    'a second instance honours the stored time, then writes past it',
    async () => {
      const storage = await make()
      const clock = manualClock(T0)
      const one = createTollbooth({ secret: SECRET, clock, storage })
      const two = createTollbooth({ secret: SECRET, clock, storage })
      const { key, record } = await one.keys.create({ accountId: 'acct_lu' })
      const use = async (tb: typeof one) => {
        await tb.settle(await tb.authenticate(request(key)), { status: 200 })
        await tb.flush()
        return (await storage.keys.get(record.id))?.lastUsedAt
      }
      expect(await use(one)).toBe(T0)
      clock.advance(59_999)
      expect(await use(two)).toBe(T0)
      expect(await use(one)).toBe(T0)
      clock.advance(1)
      expect(await use(two)).toBe(T0 + 60_000)
      await Promise.all([one.close(), two.close()])
    },
  )
})
