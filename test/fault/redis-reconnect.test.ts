/**
 * @module test/fault/redis-reconnect
 *
 * A Redis connection that drops and comes back at once (a `CLIENT KILL`, a proxy's idle cut, a
 * failover's switch: ioredis reconnects within 50-100 ms) under steady traffic, on a private
 * redis-server. A call made while the client reconnects waits for it, up to `reconnectWaitMs`
 * (250 ms by default), and is sent once it is ready; past that wait it is refused with nothing
 * sent. So requests arriving in the gap are served, not answered 503, and nothing is counted
 * for a refused one (only the calls in flight at the cut fail with it). Before, every request
 * arriving in the gap was refused at once (the client's offline queue had run such calls
 * late, after their 503, so they were refused rather than queued): 4,227 refusals for 64
 * served in the 600 ms, the 10 made while the client was down all 503.
 */

import type { Redis } from 'ioredis'
import { describe, expect, it, type TestContext } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'
import { keyFigures, metered, meteredKey, privateStores } from '../support/fault.js'
import { bearer } from '../support/leases.js'
import { ready } from '../support/redis.js'

const stores = privateStores()
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Closes every connection of the server but `admin`'s, as a proxy or a failover would. */
async function cutConnections(admin: Redis): Promise<number> {
  const self = Number(await admin.client('ID'))
  const list = String(await admin.client('LIST'))
  let cut = 0
  for (const line of list.split('\n')) {
    const id = Number(/(?:^|\s)id=(\d+)/.exec(line)?.[1])
    if (!id || id === self) continue
    cut += Number(await admin.client('KILL', 'ID', String(id)).catch(() => 0))
  }
  return cut
}

/** A private redis-server, a client for the storage, an admin client that cuts its connections. */
async function clients(ctx: TestContext): Promise<{ client: Redis; admin: Redis }> {
  const server = await stores.redis(ctx)
  const client = stores.client(server)
  const admin = stores.client(server)
  await Promise.all([ready(client), ready(admin)])
  return { client, admin }
}

describe('Redis connections cut and reconnected under traffic', () => {
  for (const reconnectWaitMs of [undefined, 0])
    it(`requests in the gap are ${reconnectWaitMs === 0 ? 'refused, nothing counted (reconnectWaitMs 0)' : 'served (the default wait)'}`, async (ctx) => {
      const { client, admin } = await clients(ctx)
      const storage = redisStorage({
        client,
        keyPrefix: `reconnect${Math.random().toString(36).slice(2, 8)}:`,
        ...(reconnectWaitMs === undefined ? {} : { reconnectWaitMs }),
      })
      const tb = createTollbooth({
        secret: 'redis-reconnect-secret-redis-reconnect-0001',
        storage,
        ...metered(2_000),
        onError: () => {},
      })
      try {
        const account = 'acct_reconnect'
        const { key, record } = await meteredKey(tb, account, true)
        const route = tb.route({ cost: 1 })
        const statuses: number[] = []
        const one = async () => {
          const d = await tb.authenticate(bearer(key), route)
          if (d.allowed) await tb.settle(d, { status: 200 })
          statuses.push(d.allowed ? 200 : d.status)
        }
        // 8 requests in flight at every moment for 600 ms; the connections cut at 150 ms.
        const until = Date.now() + 600
        const workers = Array.from({ length: 8 }, async () => {
          while (Date.now() < until) await one()
        })
        await sleep(150)
        expect(await cutConnections(admin)).toBeGreaterThan(0)
        // Requests made while the client is down, whatever the workers meet.
        // (The counters' own connection, cut in the same loop, has seen it too a moment later.)
        while (client.status === 'ready') await sleep(1)
        await sleep(5)
        const before = statuses.length
        await Promise.all(Array.from({ length: 10 }, () => one()))
        const gap = statuses.slice(before)
        await Promise.all(workers)

        const served = statuses.filter((s) => s === 200).length
        const refused = statuses.filter((s) => s === 503).length
        console.log(
          `reconnectWaitMs ${reconnectWaitMs ?? 'default'}: ${served} served, ${refused} refused (503); made while the client was down: ${gap.join(' ')}`,
        )
        expect(served + refused).toBe(statuses.length)
        // A call in flight at the cut fails with it (it may have run: the core cancels it), so
        // the requests then in flight are refused either way: at most one per worker and
        // connection cut (the client's and the counters' own).
        if (reconnectWaitMs === undefined) {
          expect(gap.filter((s) => s !== 200).length).toBe(0)
          expect(refused).toBeLessThanOrEqual(16)
        }
        // Every admitted request recorded once, nothing counted for a refused one, no slot held.
        await ready(client)
        const f = await keyFigures({ tb, storage, account, keyId: record.id }, () => Date.now())
        expect(f).toMatchObject({ daily: served, monthly: served, used: served, events: served })
        expect(f.slots).toBe(0)
      } finally {
        await tb.close().catch(() => {})
        await storage.close?.()
      }
    }, 30_000)

  it('many calls waiting for the reconnect add one ready listener to the client, no MaxListenersExceededWarning', async (ctx) => {
    const { client, admin } = await clients(ctx)
    const storage = redisStorage({
      client,
      keyPrefix: `listeners${Math.random().toString(36).slice(2, 8)}:`,
    })
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
    process.on('warning', onWarning)
    try {
      const before = client.listenerCount('ready')
      expect(await cutConnections(admin)).toBeGreaterThan(0)
      while (client.status === 'ready') await sleep(1)
      // 50 calls made while the client reconnects (a few ms of traffic on a busy instance).
      const calls = Array.from({ length: 50 }, (_, i) => storage.keys.get(`key_${i}`))
      const waiting = client.listenerCount('ready') - before
      const results = await Promise.allSettled(calls)
      await sleep(10)
      console.log(
        `ready listeners added by 50 waiting calls: ${waiting}; warnings: ${warnings.length}`,
      )
      expect(results.filter((r) => r.status === 'fulfilled').length).toBe(50)
      expect(waiting).toBeLessThanOrEqual(1)
      expect(client.listenerCount('ready')).toBe(before)
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([])
    } finally {
      process.off('warning', onWarning)
      await storage.close?.()
    }
  }, 30_000)

  it('calls that give up waiting (Redis down past reconnectWaitMs) take their ready listener with them', async (ctx) => {
    const server = await stores.redis(ctx)
    const client = stores.client(server)
    client.on('error', () => {})
    await ready(client)
    const storage = redisStorage({
      client,
      keyPrefix: `giveup${Math.random().toString(36).slice(2, 8)}:`,
    })
    try {
      const before = client.listenerCount('ready')
      await server.kill()
      while (client.status === 'ready') await sleep(1)
      const results = await Promise.allSettled(
        Array.from({ length: 30 }, (_, i) => storage.keys.get(`key_${i}`)),
      )
      const reasons = results.map((r) =>
        r.status === 'rejected' ? (r.reason as { notSent?: boolean }).notSent : 'served',
      )
      expect(reasons).toEqual(Array.from({ length: 30 }, () => true))
      expect(client.listenerCount('ready')).toBe(before)
      await server.restart()
      await ready(client)
      expect(await storage.keys.get('key_0')).toBeNull()
    } finally {
      await storage.close?.()
    }
  }, 30_000)
})
