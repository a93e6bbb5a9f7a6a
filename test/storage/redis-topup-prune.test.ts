/**
 * @module test/storage/redis-topup-prune
 *
 * The Redis store's records of keyed top-ups (`AccountStore.topUp`, fields `t:<key>` of the
 * account's HASH) are pruned a bounded step a call. With keyed top-ups steady over their
 * records' life, the earliest record has always expired when the next top-up comes, and the
 * store read the whole HASH to find the expired ones (HGETALL) on every call: its work grew
 * with the records live. Here an account holds 100, then 10,000 live records, and 200 more
 * top-ups come 1 ms apart while the earliest records expire one by one; Redis counts the
 * microseconds of the pruning's reads (HGETALL, HSCAN) per top-up. On a private Redis, whose
 * statistics the test resets.
 */

import { describe, expect, it, type TestContext } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'
import { privateStores } from '../support/fault.js'
import { ready } from '../support/redis.js'

const servers = privateStores()
const LIFE_MS = 1_000_000
const T0 = 1_767_225_600_000

/** A client of the private Redis, a storage on it under `keyPrefix`, and a tollbooth. */
async function open(ctx: TestContext, keyPrefix: string) {
  const client = servers.client(await servers.redis(ctx))
  await ready(client)
  const storage = redisStorage({ client, keyPrefix })
  const tb = createTollbooth({ secret: 'redis-topup-prune-secret-redis-topup-01', storage })
  return { client, storage, tb }
}

describe('Redis keyed top-ups across their records’ expiry', () => {
  it('prunes a bounded step a call: the work per top-up does not grow with the records live', async (ctx) => {
    const { client, storage, tb } = await open(ctx, 'prune:')

    /** What Redis counts of `cmd`: its calls and their microseconds. */
    const stat = async (cmd: string) => {
      const line = (await client.info('commandstats'))
        .split('\r\n')
        .find((l) => l.startsWith(`cmdstat_${cmd}:`))
      const m = /calls=(\d+),usec=(\d+)/.exec(line ?? '')
      return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) }
    }

    /**
     * An account with `live` records (expiring 1 ms apart from T0 + LIFE_MS), then 200 top-ups
     * 1 ms apart from the first record's expiry: the pruning's reads per top-up, the HASH's
     * fields after, and the balance (each top-up adds 1).
     */
    const run = async (live: number) => {
      const id = `acct_prune_${live}`
      await tb.accounts.get(id)
      const topUp = (key: string, now: number) =>
        storage.accounts.topUp(id, { key, amount: 1, now, expiresAt: now + LIFE_MS })
      for (let i = 0; i < live; i += 500)
        await Promise.all(
          Array.from({ length: Math.min(500, live - i) }, (_, j) => topUp(`k${i + j}`, T0 + i + j)),
        )
      await client.config('RESETSTAT')
      for (let i = 0; i < 200; i++) {
        const r = await topUp(`n${i}`, T0 + LIFE_MS + i)
        expect(r?.applied).toBe(true)
      }
      const [hgetall, hscan] = [await stat('hgetall'), await stat('hscan')]
      // A replay of a live record is answered, not credited again.
      const again = await topUp('n199', T0 + LIFE_MS + 300)
      expect(again).toEqual({ applied: false, amount: 1 })
      return {
        usecPerTopUp: (hgetall.usec + hscan.usec) / 200,
        hgetall: hgetall.calls,
        hscan: hscan.calls,
        fields: await client.hlen(`prune:account:${id}`),
        balance: (await storage.accounts.get(id))?.balance,
      }
    }

    try {
      const small = await run(100)
      const large = await run(10_000)
      console.log(
        `keyed top-ups across expiry: 100 live ${JSON.stringify(small)}; 10,000 live ${JSON.stringify(large)}`,
      )
      // Every top-up credited once.
      expect(small.balance).toBe(300)
      expect(large.balance).toBe(10_200)
      // Before: the whole HASH read on each of the 200 calls (HGETALL, 200 calls), 10,000
      // fields each time: 2,290 µs a top-up (3.8 with 100 live). Now one HSCAN step a call:
      // 40-53 µs (9.5 with 100 live, where a step is the whole small HASH).
      expect(large.hgetall).toBe(0)
      expect(large.hscan).toBeLessThanOrEqual(200)
      expect(large.usecPerTopUp).toBeLessThan(500)
      // The HASH stays about its live records (10,000 - 200 expired + 200 new), plus the
      // expired ones the walk has not reached yet and its few own fields.
      expect(large.fields).toBeLessThanOrEqual(10_000 + 200 + 5)
    } finally {
      await tb.close()
    }
  }, 120_000)

  it('keeps the HASH about its live records over many lives of them', async (ctx) => {
    const { client, storage, tb } = await open(ctx, 'lives:')
    try {
      const id = 'acct_lives'
      await tb.accounts.get(id)
      // 6,000 top-ups 1 ms apart, each record living 1,000 ms: 1,000 live at a time, after the
      // first 1,000; the walk meets each expired record within about 1,000 / 64 calls.
      let most = 0
      for (let i = 0; i < 6_000; i += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, j) =>
            storage.accounts.topUp(id, {
              key: `k${i + j}`,
              amount: 1,
              now: T0 + i + j,
              expiresAt: T0 + i + j + 1_000,
            }),
          ),
        )
        if (i >= 1_000) most = Math.max(most, await client.hlen(`lives:account:${id}`))
      }
      console.log(`6,000 keyed top-ups, 1,000 live at a time: the HASH held at most ${most} fields`)
      expect(most).toBeGreaterThanOrEqual(1_000)
      expect(most).toBeLessThan(1_000 * 1.2 + 5)
      expect((await storage.accounts.get(id))?.balance).toBe(6_000)
    } finally {
      await tb.close()
    }
  }, 120_000)
})
