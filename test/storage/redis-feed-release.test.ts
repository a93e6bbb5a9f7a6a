/**
 * @module test/storage/redis-feed-release
 *
 * The Redis change feed's subscriber connection (the one tollbooth opens with
 * `client.duplicate()`) is closed once its last subscriber leaves, as the PostgreSQL and SQLite
 * feeds stop listening then: after `tb.close()` and the app closing its own client, nothing of
 * tollbooth's keeps the process alive, with or without `storage.close()` (which the README's
 * snippet, building the storage inside `createTollbooth`, has no handle for). A later subscriber
 * opens a new connection and hears changes again.
 */

import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/internal.js'
import { connectRedis, prefixPerTest } from '../support/redis.js'

const client = await connectRedis()
afterAll(() => client?.disconnect())

const SECRET = 'redis-feed-release-secret-redis-feed-release'

/** Subscribers of `channel` on the server, polled until `want` (the server sees a close late). */
async function subscribersOf(channel: string, want: number): Promise<number> {
  let n = -1
  for (let i = 0; i < 100; i++) {
    const [, count] = (await client!.pubsub('NUMSUB', channel)) as [string, number]
    n = Number(count)
    if (n === want) return n
    await new Promise((r) => setTimeout(r, 20))
  }
  return n
}

describe.skipIf(!client)('redis change feed: the subscriber connection', () => {
  const prefix = prefixPerTest(client!)

  it('is closed by tb.close() (its last subscriber), and reopened by a later one', async () => {
    const keyPrefix = prefix('feed')
    const channel = `${keyPrefix}changes`
    const storage = redisStorage({ client: client!, keyPrefix })
    const tb = createTollbooth({ secret: SECRET, storage })
    const { key } = await tb.keys.create({ accountId: 'acct_feed' })
    const req = {
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/x',
    }
    const d = await tb.authenticate(req)
    expect(d.allowed).toBe(true)
    if (d.allowed) await tb.settle(d, { status: 200 })
    expect(await subscribersOf(channel, 1)).toBe(1)

    await tb.close()
    expect(await subscribersOf(channel, 0)).toBe(0)

    // A second instance on the same storage subscribes again, and hears a revocation.
    const tb2 = createTollbooth({ secret: SECRET, storage })
    const seen = await tb2.authenticate(req)
    expect(seen.allowed).toBe(true)
    if (seen.allowed) await tb2.settle(seen, { status: 200 })
    expect(await subscribersOf(channel, 1)).toBe(1)
    await tb2.close()
    expect(await subscribersOf(channel, 0)).toBe(0)
    await storage.close?.()
  })
})
