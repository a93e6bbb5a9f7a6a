/**
 * @module test/limits/shared-counters
 *
 * The same guarantee as `concurrent-admission.test.ts` across instances: two tollbooth
 * instances on one real Redis (`REDIS_URL`), 1,000 concurrent admissions split between them
 * on one key with a limit of 100, exactly 100 through. Skipped when Redis is down (unless
 * `TOLLBOOTH_REQUIRE_SERVICES=1`).
 */

import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, manualClock, type Tollbooth } from '../../src/internal.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { MINUTE, req, SECRET, T0 } from './setup.js'

const client = await connectRedis()
const prefixes: string[] = []

afterAll(async () => {
  if (!client) return
  for (const p of prefixes) await deletePrefix(client, p)
  await client.quit()
})

function twoInstances() {
  const keyPrefix = testPrefix('limits')
  prefixes.push(keyPrefix)
  const clock = manualClock(T0)
  const storage = redisStorage({ client: client!, keyPrefix })
  const make = () => createTollbooth({ secret: SECRET, clock, storage, cache: false })
  return { a: make(), b: make(), clock }
}

async function flood(instances: Tollbooth[], key: string, n = 1000): Promise<number> {
  const ds = await Promise.all(
    Array.from({ length: n }, (_, i) => instances[i % instances.length]!.authenticate(req(key))),
  )
  return ds.filter((d) => d.allowed).length
}

describe.skipIf(!client)('1,000 concurrent admissions on two instances sharing Redis', () => {
  it('admits exactly 100 under a total quota of 100', async () => {
    const { a, b } = twoInstances()
    const { key } = await a.keys.create({ accountId: 'acct_1', limits: { quotas: { total: 100 } } })
    expect(await flood([a, b], key)).toBe(100)
    await Promise.all([a.close(), b.close()])
  })

  it('admits exactly 100 under a rate limit of 100 per minute, using no daily quota on refusals', async () => {
    const { a, b, clock } = twoInstances()
    const { key } = await a.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { daily: 150 }, rateLimits: [{ limit: 100, windowMs: MINUTE }] },
    })
    expect(await flood([a, b], key)).toBe(100)
    clock.advance(MINUTE)
    // The 900 refused requests used none of the daily quota: 50 of it are left.
    expect(await flood([a, b], key)).toBe(50)
    await Promise.all([a.close(), b.close()])
  })
})
