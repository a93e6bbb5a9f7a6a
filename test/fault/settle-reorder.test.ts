/**
 * @module test/fault/settle-reorder
 *
 * A settle's first attempt that fails for the instance and reaches the store late, after its
 * retry. The retry of a settle is a release `ifHeld` (it charges only while the hold is there);
 * the first attempt was a plain release, which a store applies as "drop the hold if there, add
 * the charge": landing after the retry, it charged the request a second time. Now the first
 * attempt is `ifHeld` too while the store surely holds the request's hold (within its TTL, its
 * renewals included, less twice the clocks' skew), so the two charge once in either order.
 *
 * On a private redis-server behind a TCP proxy: the connection that carries the settle's first
 * attempt stalls (the proxy keeps the bytes and closes the client's side, so the client fails
 * the call and connects again), the retry goes through the new connection and lands, then the
 * stalled bytes reach Redis. No lease (`leases: false`): the core's own settle. Afterwards:
 * the request's usage event says its cost, and the credits charged say the same.
 */

import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'
import { privateStores, usageOf } from '../support/fault.js'
import { startHoldingProxy } from '../support/proxy.js'
import { ready } from '../support/redis.js'

const servers = privateStores()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('a settle whose first attempt reaches Redis after its retry', () => {
  it('charges the request once: credits charged = units recorded', async (ctx) => {
    const server = await servers.redis(ctx)
    const proxy = await startHoldingProxy(server.port)
    const options = {
      host: '127.0.0.1',
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      // The README's options: a command of a connection that closed is not sent again.
      autoResendUnfulfilledCommands: false,
      commandTimeout: 1000,
      retryStrategy: () => 50,
    }
    const client = new Redis(proxy.port, options)
    client.on('error', () => {})
    const direct = new Redis(server.port, options)
    direct.on('error', () => {})
    const secret = 'settle-reorder-secret-settle-reorder-42'
    const account = 'acct_settle_reorder'
    const tb = createTollbooth({
      secret,
      storage: redisStorage({ client }),
      storageTimeoutMs: 1000,
      failedAuth: false,
      leases: false,
      cache: { feedProbeMs: 0 },
      plans: { pro: { monthlyCredits: 1000 } },
      defaultTier: 'pro',
      usage: { flushIntervalMs: 600_000, maxBatch: 100_000, retentionMs: 86_400_000 },
      onError: () => {},
    })
    try {
      await ready(client)
      await ready(direct)
      const { key, record } = await tb.keys.create({ accountId: account })
      const route = tb.route({ cost: 5 })
      const d = await tb.authenticate(
        { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'GET', path: '/' },
        route,
      )
      expect(d.allowed).toBe(true)
      // The settle's first attempt stalls with its connection; the client fails it.
      proxy.hold()
      await tb.settle(d, { status: 200 })
      for (let i = 0; i < 100 && tb.stats().settleRetries.retried < 1; i++) await sleep(50)
      expect(tb.stats().settleRetries.retried, 'the settle retried').toBe(1)
      expect(proxy.held, 'the first attempt held back').toBeGreaterThan(0)
      // Then it reaches Redis, after its retry.
      await proxy.deliver()
      await tb.flush()

      const storage = redisStorage({ client: direct })
      const { requestIds, units } = await usageOf(storage.usage, record.id)
      const reader = createTollbooth({ secret, storage, plans: { pro: { monthlyCredits: 1000 } } })
      const used = (await reader.accounts.get(account)).credits.used
      await reader.close()
      console.log(
        `settle reordered: ${requestIds.length} event, ${units} units, ${used} credits charged`,
      )
      expect(requestIds.length).toBe(1)
      expect(units).toBe(5)
      // Before: 10 (the first attempt, a plain release, charged again after the retry).
      expect(used, 'credits charged vs units recorded').toBe(units)
    } finally {
      await tb.close().catch(() => {})
      client.disconnect()
      direct.disconnect()
      await proxy.close()
    }
  }, 30_000)
})
