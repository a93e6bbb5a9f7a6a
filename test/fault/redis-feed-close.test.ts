/**
 * @module test/fault/redis-feed-close
 *
 * The Redis change feed's subscriber connection released (`tb.close()`, its last subscriber
 * gone, the user's client ended) just as it comes back from a Redis restart. ioredis
 * resubscribes a reconnected subscriber by itself (`autoResubscribe`) with a promise nobody
 * can handle: closed before Redis answers, that SUBSCRIBE rejected with "Connection is
 * closed." as an unhandled rejection, which ends a Node process run with the default
 * `--unhandled-rejections=throw` (seen once in CI, from test/fault/settle-reorder's
 * `tb.close()`). The feed subscribes its reconnected connection itself, with a handler.
 *
 * On a private redis-server, killed and restarted by pid, behind a proxy that holds back what
 * the server sends a subscriber: at its connection's `ready` (the resubscribe sent), Redis's
 * answer is held and the feed released, as when a process stops right after a reconnect.
 */

import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { until } from '../support/core.js'
import { privateStores } from '../support/fault.js'
import { startProxy } from '../support/proxy.js'
import { FAIL_FAST, ready } from '../support/redis.js'

const servers = privateStores()

describe('the Redis change feed released as its connection comes back', () => {
  it('leaves no unhandled rejection behind', async (ctx) => {
    const server = await servers.redis(ctx)
    const proxy = await startProxy(server.port, /SUBSCRIBE/i)
    const client = new Redis(proxy.port, '127.0.0.1', { ...FAIL_FAST, retryStrategy: () => 20 })
    client.on('error', () => {})
    await ready(client)
    // The connections the storage opens from the user's client (the feed's subscriber).
    const opened: Redis[] = []
    const duplicate = client.duplicate.bind(client)
    client.duplicate = ((...args: Parameters<typeof duplicate>) => {
      const c = duplicate(...args)
      opened.push(c)
      return c
    }) as typeof client.duplicate
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    process.on('unhandledRejection', onRejection)
    const storage = redisStorage({ client, keyPrefix: 'feed-close:' })
    try {
      const feed = storage.changes!
      const off = await feed.subscribe(() => {})
      const sub = opened.find((c) => c.options.maxRetriesPerRequest === null)
      expect(sub, 'the subscriber connection').toBeDefined()
      await until(() => sub!.status === 'ready')

      // Its next `ready` comes with the resubscribe sent; the feed is released then.
      const released = new Promise<void>((resolve) =>
        sub!.once('ready', () => {
          proxy.mute(true)
          void off()
          resolve()
        }),
      )
      await server.kill()
      await server.restart()
      await released
      await until(() => sub!.status === 'end')
      await new Promise((r) => setTimeout(r, 200))
      expect(rejections.map(String), 'unhandled rejections').toEqual([])

      proxy.mute(false)
      // The feed still works: a new subscriber hears a message published after it.
      const heard: string[] = []
      const off2 = await feed.subscribe((m) => heard.push(m))
      await feed.publish('after')
      await until(() => heard.includes('after'))
      await off2()
    } finally {
      process.off('unhandledRejection', onRejection)
      await storage.close?.()
      client.disconnect()
      await proxy.close()
    }
  }, 30_000)
})
