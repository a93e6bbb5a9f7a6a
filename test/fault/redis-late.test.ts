/**
 * @module test/fault/redis-late
 *
 * Redis killed and restarted (its data kept, AOF) under an ioredis client with its default
 * options: the offline queue on, as a client made by `new Redis(url)` has it. Every call sent
 * while the connection is down used to wait in that queue and run once Redis was back, long
 * after tollbooth answered for it: each refused request's admission counted its limits and
 * held its credits, and only its cancel, queued behind it in the core's retry queue, undid it,
 * while that queue had room for one cancel per refused request (`maxPendingSettles`, 5 here
 * against 20 requests refused: 15 quota units, 15 credit holds and 15 concurrency slots left);
 * a top-up and a key creation answered "outcome unknown" were applied at the restart. Now a
 * call is refused at once while the client has lost its connection, nothing sent: the
 * requests are 503 at once, nothing is consumed for them, the top-up and the key are not made.
 * Private server started here, ended by pid.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth } from '../../src/index.js'
import { keyFigures, metered, meteredKey, privateServer, whileFrozen } from '../support/fault.js'
import { bearer, dailyQuota } from '../support/leases.js'
import { ready } from '../support/redis.js'
import { startRedisServer } from './redis-server.js'

const TIMEOUT_MS = 300
const dir = mkdtempSync(join(tmpdir(), 'tollbooth-redis-late-'))
const server = await privateServer(() =>
  startRedisServer(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]),
)
const clients: Redis[] = []
afterAll(async () => {
  for (const c of clients) c.disconnect()
  await server?.kill()
  rmSync(dir, { recursive: true, force: true })
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe.skipIf(!server)('Redis killed and restarted, ioredis with its default options', () => {
  /**
   * A tollbooth on a client of its own, with a key of `exact` limits; its clock runs `skew`'s
   * `ms` ahead of the machine's (moved by the test); room for `maxPendingSettles` cancels.
   */
  const setup = async (exact: boolean, skew = { ms: 0 }, maxPendingSettles = 5) => {
    const now = () => Date.now() + skew.ms
    /** What tollbooth reported to `onError`. */
    const reported: string[] = []
    // ioredis's defaults: offline queue on, commands resent after a reconnect.
    const client = new Redis(`redis://127.0.0.1:${server!.port}`)
    client.on('error', () => {})
    clients.push(client)
    await ready(client)
    const storage = redisStorage({
      client,
      keyPrefix: `late${Math.random().toString(36).slice(2, 8)}:`,
    })
    const tb = createTollbooth({
      secret: 'redis-late-secret-redis-late-secret-0001',
      storage,
      ...metered(TIMEOUT_MS),
      clock: { now },
      // Room for 5 cancels: fewer than the requests refused while Redis is down below.
      maxPendingSettles,
      onError: (err) => reported.push(err instanceof Error ? err.message : String(err)),
    })
    const account = `acct_late_${exact ? 'exact' : 'leased'}`
    const { key, record } = await meteredKey(tb, account, exact)
    return { client, storage, tb, key, keyId: record.id, account, now, reported }
  }
  type Setup = Awaited<ReturnType<typeof setup>>

  /** What the store counts for the key and its account, once the retries have landed. */
  const figures = async (s: Setup) => {
    // Once the client and the counters' connection (their own with these options: a read
    // waits for its `ready`) are back.
    await ready(s.client)
    await s.storage.counters.held(`{${s.account}}:probe`, s.now())
    const figures = await keyFigures(s, s.now)
    return {
      ...figures,
      limit: (await s.tb.accounts.get(s.account)).credits.limit,
      keys: (await s.tb.keys.list(s.account)).data.length,
    }
  }

  /** `n` requests of 1 credit at once, each settled with 200 when admitted. */
  const requests = (tb: Setup['tb'], key: string, n: number) => {
    const route = tb.route({ cost: 1 })
    return Promise.all(
      Array.from({ length: n }, async () => {
        const t = Date.now()
        const d = await tb.authenticate(bearer(key), route)
        if (d.allowed) await tb.settle(d, { status: 200 })
        return { status: d.allowed ? 200 : d.status, ms: Date.now() - t }
      }),
    )
  }

  for (const exact of [true, false])
    it(`nothing is consumed for a request refused while it was down (${exact ? 'every limit decided by the store' : 'leased limits'})`, async () => {
      const s = await setup(exact)
      const served = await requests(s.tb, s.key, 10)
      expect(served.map((o) => o.status)).toEqual(Array(10).fill(200))
      const before = await figures(s)
      expect(before).toMatchObject({ daily: 10, used: 10, events: 10, slots: 0, keys: 1 })
      // Cached again (the usage flush dropped the key from the cache): the requests below
      // reach the counters.
      expect((await requests(s.tb, s.key, 2)).map((o) => o.status)).toEqual([200, 200])

      await server!.kill()
      // Once the client has seen its connection close (calls in flight then are resent by
      // ioredis after the reconnect, see the README).
      while (s.client.status === 'ready') await sleep(1)
      const refused = await requests(s.tb, s.key, 20)
      const topUp = await s.tb.accounts.addCredits(s.account, 100).then(
        () => 'credited',
        (e: Error) => e.message,
      )
      const created = await s.tb.keys.create({ accountId: s.account }).then(
        () => 'created',
        (e: Error) => e.message,
      )
      await server!.restart()
      const after = await figures(s)
      const again = await requests(s.tb, s.key, 5)
      console.log(
        `Redis killed (ioredis defaults, ${exact ? 'exact' : 'leased'}): 20 refused in ${Math.min(...refused.map((o) => o.ms))}-${Math.max(...refused.map((o) => o.ms))} ms; top-up: ${topUp}; key: ${created}; before ${JSON.stringify(before)}, after ${JSON.stringify(after)}; retries ${JSON.stringify(s.tb.stats().settleRetries)}`,
      )
      expect(refused.map((o) => o.status)).toEqual(Array(20).fill(503))
      // Refused at once: nothing waited in the client's queue.
      for (const o of refused) expect(o.ms).toBeLessThan(TIMEOUT_MS)
      // Before: "did not answer within 300 ms … its outcome is unknown", and both applied.
      expect(topUp).toMatch(/\(tb\.accounts\.addCredits\): the store failed \(NOT_CONNECTED\)/)
      expect(created).toMatch(/\(tb\.keys\.create\): the store failed \(NOT_CONNECTED\)/)
      // Before: daily and monthly 27 and credits 27 (12 served), 15 slots held, a limit of
      // 1,100 and 2 keys.
      expect(after).toEqual({ ...before, daily: 12, monthly: 12, used: 12, events: 12, units: 12 })
      expect(again.map((o) => o.status)).toEqual(Array(5).fill(200))
      // Never sent, so never cancelled: no cancel took room in the retry queue (before: 15
      // of 20 dropped as "queue full", `maxPendingSettles` 5) and none reported so.
      expect(s.tb.stats().settleRetries.dropped).toBe(0)
      expect(s.reported.filter((m) => /queue full/.test(m))).toEqual([])
      await s.tb.close()
    }, 60_000)

  it('an admission a frozen Redis runs past the life of its record is undone by its cancel', async () => {
    const skew = { ms: 0 }
    const s = await setup(true, skew, 10_000)
    // A key with a daily quota alone, on an account of its own: its admission's record is a
    // line of a list (the other key's is its credit hold).
    const lone = await s.tb.keys.create({
      accountId: 'acct_late_lone',
      limits: { quotas: { daily: 1000 }, exact: true },
    })
    const free = s.tb.route({})
    const loneRequests = (n: number) =>
      Promise.all(
        Array.from({ length: n }, () =>
          s.tb.authenticate(bearer(lone.key), free).then((d) => (d.allowed ? 200 : d.status)),
        ),
      )
    const loneCount = async () => {
      await s.tb.flush()
      const daily = dailyQuota(0, { key: `{acct_late_lone}:k:${lone.record.id}:q:daily` })
      return (await s.storage.counters.consume([daily], s.now())).results[0]!.used
    }
    expect((await requests(s.tb, s.key, 3)).map((o) => o.status)).toEqual([200, 200, 200])
    expect(await loneRequests(1)).toEqual([200])
    const before = await figures(s)
    const loneBefore = await loneCount()
    // Cached again: the requests below reach the counters.
    expect((await requests(s.tb, s.key, 2)).map((o) => o.status)).toEqual([200, 200])
    expect(await loneRequests(1)).toEqual([200])

    let refused: Array<{ status: number }> = []
    let loneRefused: number[] = []
    await whileFrozen(server!, async (thaw) => {
      refused = await requests(s.tb, s.key, 5)
      loneRefused = await loneRequests(5)
      // Frozen past a record's life (60 s): the instance's clock moved on by 61 s.
      skew.ms += 61_000
      thaw()
    })
    const after = await figures(s)
    const loneAfter = await loneCount()
    console.log(
      `Redis frozen 61 s: 5 + 5 refused; before ${JSON.stringify(before)} (+2 served), after ${JSON.stringify(after)}; a quota alone ${loneBefore} (+1 served) -> ${loneAfter}; retries ${JSON.stringify(s.tb.stats().settleRetries)}`,
    )
    expect(refused.map((o) => o.status)).toEqual(Array(5).fill(503))
    expect(loneRefused).toEqual(Array(5).fill(503))
    // Before: daily and monthly 10, credits 10 charged or held for 5 units, 5 slots held; the
    // quota alone 7.
    expect(after).toEqual({ ...before, daily: 5, monthly: 5, used: 5, events: 5, units: 5 })
    expect(loneAfter).toBe(loneBefore + 1)
    await s.tb.close()
  }, 60_000)
})
