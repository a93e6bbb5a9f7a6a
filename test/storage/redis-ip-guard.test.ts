/**
 * @module test/storage/redis-ip-guard
 *
 * What the failed-auth guard costs Redis, on a private redis-server (so DBSIZE and INFO
 * commandstats count tollbooth alone), with two tollbooth instances sharing it: 10,000
 * malformed keys from 10,000 addresses cost no Redis command and leave no Redis key; an
 * address that keeps failing is still blocked across the two instances, at its 20th failure,
 * for 2 script runs; the block is listed, and lifting it serves the client again.
 */

import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Denial, manualClock, type Tollbooth } from '../../src/internal.js'
import { privateStores } from '../support/fault.js'
import { FAIL_FAST, ready } from '../support/redis.js'

const SECRET = 'redis-ip-guard-secret-redis-ip-guard-secret'
const T0 = Date.UTC(2026, 11, 3, 12, 0, 0)

const servers = privateStores()

/** Calls per Redis command since the last CONFIG RESETSTAT (CONFIG and INFO left out). */
async function commandCalls(c: Redis): Promise<Record<string, number>> {
  const info = await c.info('commandstats')
  const out: Record<string, number> = {}
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (!m[1]!.startsWith('config') && m[1] !== 'info') out[m[1]!] = Number(m[2])
  }
  return out
}

const junk = (i: number) => `sk_live_${i.toString(36).padStart(33, 'Z')}`
const req = (key: string, ip: string) => ({
  headers: { authorization: `Bearer ${key}` },
  ip,
  method: 'GET',
  path: '/v1/thing',
})

describe('failed-auth guard on Redis', () => {
  let redis: Redis
  const clock = manualClock(T0)
  let a: Tollbooth
  let b: Tollbooth
  servers.withRedis(async (server) => {
    redis = servers.client(server, FAIL_FAST)
    await ready(redis)
    const storage = () => redisStorage({ client: redis, keyPrefix: 'g:', settleBatchMs: 0 })
    // No feed probe: its PUBLISH every 2.5 s is no request's command, and would land among
    // the counted ones now and then.
    const cache = { feedProbeMs: 0 }
    a = createTollbooth({ secret: SECRET, clock, storage: storage(), cache })
    b = createTollbooth({ secret: SECRET, clock, storage: storage(), cache })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
  })

  it('10,000 malformed keys from 10,000 addresses: no Redis command, no Redis key', async () => {
    // Both instances' change-feed connections subscribed first: their handshake (ioredis 6
    // sends HELLO) is set-up, not a request's command.
    for (let i = 0; i < 100; i++) {
      const channels = (await redis.call('PUBSUB', 'CHANNELS')) as string[]
      const counts = channels.length
        ? ((await redis.call('PUBSUB', 'NUMSUB', ...channels)) as Array<string | number>)
        : []
      if (counts.filter((_, j) => j % 2 === 1).reduce((t: number, n) => t + Number(n), 0) >= 2)
        break
      await new Promise((r) => setTimeout(r, 50))
    }
    await redis.config('RESETSTAT')
    const started = performance.now()
    for (let i = 0; i < 10_000; i++) {
      const d = await (i % 2 ? a : b).authenticate(
        req(junk(i), `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`),
      )
      expect(d.allowed).toBe(false)
    }
    const ms = performance.now() - started
    console.log(`10,000 malformed keys: ${(ms / 10).toFixed(1)} µs each`)
    expect(await commandCalls(redis)).toEqual({})
    expect(await redis.dbsize()).toBe(0)
  })

  it('blocks an address failing on both instances at its 20th failure, for 2 script runs', async () => {
    const { key } = await a.keys.create({ accountId: 'acct_1' })
    const ip = '198.51.100.4'
    const keyRecords = await redis.dbsize()
    await redis.config('RESETSTAT')
    const statuses: number[] = []
    for (let i = 0; i < 20; i++)
      statuses.push(
        ((await (i % 2 ? a : b).authenticate(req(junk(i), ip))) as { status: number }).status,
      )
    expect(statuses).toEqual([...Array(19).fill(401), 403])
    // Each instance tells Redis from its 10th failure there, with the ten: two script runs,
    // and the second blocks. Inside them: no more than these commands.
    const calls = await commandCalls(redis)
    expect((calls['evalsha'] ?? 0) + (calls['eval'] ?? 0)).toBe(2)
    expect(calls['hset']).toBe(1)
    expect(calls['hincrby']).toBe(1)
    expect(calls['zadd']).toBe(2)
    expect(await redis.dbsize()).toBe(2 + keyRecords)
    // The instance that decided (the 20th failure was on a) refuses the address at once,
    // even with a good key, for the 15 minutes of the block.
    const decided = (await a.authenticate(req(key, ip))) as Denial
    expect(decided.status).toBe(403)
    expect(decided.headers['Retry-After']).toBe('900')
    // The other learns of it at its next failure there (it has counted 10 already).
    expect(((await b.authenticate(req(junk(99), ip))) as Denial).status).toBe(403)
    expect(((await b.authenticate(req(key, ip))) as Denial).status).toBe(403)
    // Listed, and lifted from either instance.
    expect(await a.ipBlocks.list()).toEqual({
      data: [{ ip, until: T0 + 900_000 }],
      nextCursor: null,
    })
    expect(await a.ipBlocks.lift(ip)).toBe(true)
    expect(((await a.authenticate(req(key, ip))) as { allowed: boolean }).allowed).toBe(true)
    expect(await b.ipBlocks.get(ip)).toBeNull()
  })
})
