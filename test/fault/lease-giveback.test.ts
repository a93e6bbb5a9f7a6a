/**
 * @module test/fault/lease-giveback
 *
 * A lease's give-back (a quota lease's unused units, a negative `add`) sent while the store is
 * frozen (SIGSTOP: the connection stays open, the command waits in it) with the client's command
 * timeout the README recommends: the attempt times out, yet Redis applies it when it thaws. A
 * give-back retried after such a timeout is applied twice: the quota's count falls below what
 * was admitted, and the key is served that many requests beyond its limit. On a private
 * redis-server, ended by pid.
 */

import type { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { leasedCounters } from '../../src/storage/leased-counters.js'
import { privateStores } from '../support/fault.js'
import { dailyQuota, LEASE } from '../support/leases.js'

const servers = privateStores()

describe('a lease give-back timed out while Redis is frozen', () => {
  let client: Redis | null = null

  // With a hash tag the lease's charge is recorded and its give-back is a cancel of the record
  // (retried, applied once); without one it is a negative add (sent once).
  for (const [name, key] of [
    ['a cancel of the lease record', '{acct_gb}:q:daily'],
    ['a negative add (no record)', 'acct_gb_plain:q:daily'],
  ] as const)
    it(`is applied once (${name}): the quota counts exactly what was admitted after Redis thaws`, async (ctx) => {
      const server = await servers.redis(ctx)
      client ??= servers.client(server, {
        maxRetriesPerRequest: 1,
        commandTimeout: 300,
        autoResendUnfulfilledCommands: false,
      })
      const storage = redisStorage({ client })
      const counters = leasedCounters(storage.counters, LEASE)
      let admitted = 0
      for (let i = 0; i < 300; i++)
        if ((await counters.consume([dailyQuota(1, { key })], Date.now())).allowed) admitted++
      expect(admitted).toBe(300)
      const parked = counters.stats().parkedUnits
      expect(parked, 'a quota lease with unused units').toBeGreaterThan(0)

      server.freeze(true)
      const closed = counters.close(Date.now())
      // Several attempts time out (300 ms each, 100-400 ms apart) while their commands wait in
      // the connection; then Redis answers again.
      await new Promise((r) => setTimeout(r, 2_000))
      server.freeze(false)
      await closed
      const r = await storage.counters.consume([dailyQuota(0, { key })], Date.now())
      expect(
        r.results[0]!.used,
        `the count after ${parked} unused units were given back (${admitted} admitted)`,
      ).toBe(admitted)
    }, 30_000)
})
