/**
 * @module test/storage/redis-client-listeners
 *
 * Many Redis storages on one client of the user's (one per tenant, per test, per hot reload),
 * none of them closed: each followed the client's `end` with a listener of its own for its
 * life (the counters' connection, closed with the client) and another while its change feed
 * was subscribed, so past 10 storages Node printed a MaxListenersExceededWarning on the user's
 * client; and 11 storages made on a client not ready yet each waited for its first `ready` with
 * a listener of its own. Now one listener per client and event serves every storage on it,
 * removed with the last.
 */

import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import type { Storage } from '../../src/index.js'
import { dailyQuota } from '../support/leases.js'
import { deletePrefix, REDIS_URL, ready, testPrefix } from '../support/redis.js'

const client = new Redis(REDIS_URL)
client.on('error', () => {})
afterAll(() => client.disconnect())

describe('Redis storages sharing one client', () => {
  it('add one end listener to the client however many there are', async () => {
    await ready(client)
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
    process.on('warning', onWarning)
    const storages: Storage[] = []
    const offs: Array<() => void> = []
    const before = client.listenerCount('end')
    const prefix = testPrefix('listeners')
    try {
      for (let i = 0; i < 11; i++) {
        const storage = redisStorage({ client, keyPrefix: `${prefix}${i}:` })
        storages.push(storage)
        // A counter call opens the counters' connection; a subscription, the change feed's.
        await storage.counters.consume([dailyQuota(0, { key: 'q', limit: 10 })], Date.now())
        offs.push(await storage.changes!.subscribe(() => {}))
      }
      await new Promise((r) => setImmediate(r))
      const added = client.listenerCount('end') - before
      console.log(
        `11 storages on one client: ${added} end listener(s) added, warnings ${JSON.stringify(warnings)}`,
      )
      // Before: 22 (one per storage's counters' connection, one per feed subscription) and
      // "MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 end
      // listeners added to [Redis]".
      expect(added).toBe(1)
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([])
      for (const off of offs) off()
      for (const s of storages) await s.close?.()
      // Once the feeds' connections have ended (a disconnect reports its end a tick later).
      for (let i = 0; i < 100 && client.listenerCount('end') > before; i++)
        await new Promise((r) => setTimeout(r, 10))
      expect(client.listenerCount('end')).toBe(before)
    } finally {
      process.off('warning', onWarning)
      await deletePrefix(client, prefix)
    }
  })

  it('add one ready listener to a client not ready yet however many are made on it', async () => {
    const fresh = new Redis(REDIS_URL)
    fresh.on('error', () => {})
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
    process.on('warning', onWarning)
    try {
      const before = fresh.listenerCount('ready')
      for (let i = 0; i < 11; i++) redisStorage({ client: fresh, keyPrefix: `unready${i}:` })
      const added = fresh.listenerCount('ready') - before
      await ready(fresh)
      await new Promise((r) => setImmediate(r))
      console.log(
        `11 storages on a client not ready yet: ${added} ready listener(s) added, warnings ${JSON.stringify(warnings)}`,
      )
      // Before: 12 (one per storage watching for the first ready, one checking the server's
      // eviction policy) and "MaxListenersExceededWarning: … 11 ready listeners added".
      expect(added).toBe(2)
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([])
    } finally {
      process.off('warning', onWarning)
      fresh.disconnect()
    }
  })
})
