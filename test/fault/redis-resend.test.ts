/**
 * A client of ioredis's defaults (`new Redis(url)`: `autoResendUnfulfilledCommands` on), its
 * connection to Redis cut (a TCP proxy closes the client's side) while admissions and the
 * settles riding with them wait in a frozen Redis's socket. Redis, thawed, runs them; ioredis,
 * reconnected, sent them again: each admission counted twice (3 in flight, admitted: daily and
 * monthly quotas 12 for 9 requests served), and past the storage timeout the cancels of the 3
 * refused undid one run of each, not the other (9 for 6). A client with
 * `autoResendUnfulfilledCommands: false` alone never answered those calls: their cancels never
 * went (9 for 6, 3 concurrency slots held). Now the counters run on a connection tollbooth
 * opens with `client.duplicate()` and options that never send a call twice nor leave it
 * unanswered (`counterConnection` in adapters/redis/store.ts), unless the client's own say so
 * (the README's): a call in flight at the drop fails, its admission is cancelled, its settle
 * retried with `ifHeld`. After the fault: every admitted request recorded once, nothing
 * counted for a refused one, credits charged = credits recorded, no hold left. Private server
 * and proxy started here, the server ended by pid.
 */

import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Decision } from '../../src/index.js'
import { keyFigures, metered, meteredKey, privateServer } from '../support/fault.js'
import { bearer } from '../support/leases.js'
import { startCuttingProxy } from '../support/proxy.js'
import { ready } from '../support/redis.js'
import { startRedisServer } from './redis-server.js'

const TIMEOUT_MS = 1000
const server = await privateServer(() => startRedisServer())
const proxy = server ? await startCuttingProxy(server.port) : null
const clients: Redis[] = []
afterAll(async () => {
  server?.freeze(false)
  for (const c of clients) c.disconnect()
  await proxy?.close()
  await server?.kill()
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The clients' options: ioredis's defaults (offline queue on, commands resent after a
 * reconnect); no resend alone (a call in flight at a drop is then never answered); the
 * README's.
 */
const OPTIONS: Array<[string, RedisOptions]> = [
  ['defaults', {}],
  ['noResend', { autoResendUnfulfilledCommands: false }],
  [
    'recommended',
    {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      connectTimeout: 2000,
      commandTimeout: 1000,
    },
  ],
]

describe.skipIf(!server).each(OPTIONS)(
  'the connection cut under admissions in flight, ioredis options %s',
  (label, options) => {
    const setup = async (name: string) => {
      const client = new Redis(`redis://127.0.0.1:${proxy!.port}`, options)
      client.on('error', () => {})
      clients.push(client)
      await ready(client)
      const storage = redisStorage({
        client,
        keyPrefix: `resend${label}${name}:`,
        settleBatchMs: 1000,
      })
      const tb = createTollbooth({
        secret: 'redis-resend-secret-redis-resend-secret-01',
        storage,
        ...metered(TIMEOUT_MS),
        onError: () => {},
      })
      const account = `acct_resend_${label}_${name}`
      const { key, record } = await meteredKey(tb, account, true)
      return { client, storage, tb, key, keyId: record.id, account }
    }
    type Setup = Awaited<ReturnType<typeof setup>>
    const figures = (s: Setup) => keyFigures(s, Date.now)

    /** `n` admissions of 1 credit at once. */
    const admit = (s: Setup, n: number) => {
      const route = s.tb.route({ cost: 1 })
      return Array.from({ length: n }, () => s.tb.authenticate(bearer(s.key), route))
    }
    const settleAll = (s: Setup, ds: Decision[]) =>
      Promise.all(ds.map((d) => (d.allowed ? s.tb.settle(d, { status: 200 }) : undefined)))

    for (const [thawMs, what] of [
      [100, 'thawed within the storage timeout'],
      [TIMEOUT_MS + 300, 'thawed past the storage timeout'],
    ] as const)
      it(`each admission and settle counted once at most (${what})`, async () => {
        const s = await setup(thawMs < TIMEOUT_MS ? 'soon' : 'late')
        // Served, and cached: the requests below reach the counters at once.
        await settleAll(s, await Promise.all(admit(s, 3)))
        const before = await figures(s)
        expect(before).toMatchObject({ daily: 3, used: 3, events: 3, slots: 0 })

        // Three admissions whose settles wait to ride with the next call.
        const first = await Promise.all(admit(s, 3))
        expect(first.map((d) => d.allowed)).toEqual([true, true, true])
        const firstSettled = settleAll(s, first)
        server!.freeze(true)
        let inFlight: Decision[]
        try {
          const pending = Promise.all(admit(s, 3))
          // Sent into the frozen server's socket (with the settles queued above).
          await sleep(100)
          expect(proxy!.cut()).toBeGreaterThan(0)
          await sleep(thawMs)
          server!.freeze(false)
          inFlight = await pending
        } finally {
          server!.freeze(false)
        }
        await settleAll(s, inFlight)
        await firstSettled.catch(() => {})
        const admitted = inFlight.filter((d) => d.allowed).length
        const after = await figures(s)
        console.log(
          `connection cut (${label}), Redis ${what} (${thawMs} ms): ${admitted} of 3 admitted; before ${JSON.stringify(before)}, after ${JSON.stringify(after)}; retries ${JSON.stringify(s.tb.stats().settleRetries)}`,
        )
        // Before, ioredis's defaults thawed within the timeout: 3 admitted, daily and monthly
        // 12 for 9 recorded; past it: 3 refused, 9 for 6. No resend alone: 3 refused, 9 for 6,
        // 3 slots held, the 3 cancels waiting for ever.
        const served = 6 + admitted
        expect(after).toEqual({
          daily: served,
          monthly: served,
          used: served,
          slots: 0,
          events: served,
          units: served,
        })
        // Serves again.
        const again = await Promise.all(admit(s, 2))
        expect(again.map((d) => d.allowed)).toEqual([true, true])
        await settleAll(s, again)
        await s.tb.close()
      }, 60_000)
  },
)

describe.skipIf(!server)("the counters' own connection", () => {
  /** Connections named `name` the server has open now, subscribers aside. */
  const connectionsNamed = async (observer: Redis, name: string) =>
    ((await observer.client('LIST')) as string)
      .split('\n')
      .filter((l) => l.includes(` name=${name} `) && !/ (p|s)?sub=[1-9]/.test(l)).length
  const until = async (f: () => Promise<boolean>) => {
    const by = Date.now() + 5000
    while (!(await f())) {
      if (Date.now() > by) throw new Error('never happened')
      await sleep(20)
    }
  }

  it("is opened on the first counter call with the client's options, closed with the storage and with the client", async () => {
    const observer = new Redis(server!.port, '127.0.0.1', { db: 3 })
    clients.push(observer)
    await ready(observer)
    const base = 0
    const connections = (o: Redis) => connectionsNamed(o, 'tb-own')
    // ioredis's defaults but a database and a name: the counters' connection has both.
    const client = new Redis(server!.port, '127.0.0.1', { db: 3, connectionName: 'tb-own' })
    client.on('error', () => {})
    clients.push(client)
    await ready(client)
    const storage = redisStorage({ client, keyPrefix: 'own:' })
    const tb = createTollbooth({
      secret: 'redis-resend-secret-redis-resend-secret-01',
      storage,
      failedAuth: false,
      onError: () => {},
    })
    const { key } = await tb.keys.create({
      accountId: 'acct_own',
      limits: { quotas: { daily: 10 }, exact: true },
    })
    expect(await connections(observer)).toBe(base + 1)
    expect((await tb.authenticate(bearer(key), tb.route({}))).allowed).toBe(true)
    expect(await connections(observer)).toBe(base + 2)
    // Its counters are in database 3, under the prefix.
    expect((await observer.keys('own:{acct_own}:*')).length).toBeGreaterThan(0)
    await tb.close()
    expect(storage.closed?.()).toBeUndefined()
    await storage.close?.()
    await until(async () => (await connections(observer)) === base + 1)
    expect(storage.closed?.()).toMatch(/storage\.close\(\)/)
    expect(client.status).toBe('ready')

    // The client closed under a second tollbooth: its counters' connection goes with it.
    const storage2 = redisStorage({ client, keyPrefix: 'own:' })
    await storage2.counters.held('{acct_own}:x', Date.now())
    expect(await connections(observer)).toBe(base + 2)
    await client.quit()
    await until(async () => (await connections(observer)) === base)
    expect(storage2.closed?.()).toMatch(/options\.client was closed/)
  })

  it('comes back when the client, closed, is connected again (client.connect())', async () => {
    const client = new Redis(server!.port, '127.0.0.1', { connectionName: 'tb-again' })
    client.on('error', () => {})
    clients.push(client)
    await ready(client)
    const storage = redisStorage({ client, keyPrefix: 'again:' })
    await storage.counters.held('{acct_again}:x', Date.now())
    // The application closes its client and connects it again (a retryStrategy that gave up,
    // then a health check's connect()): everything the storage does works again.
    client.disconnect()
    await until(async () => client.status === 'end')
    expect(storage.closed?.()).toMatch(/options\.client was closed/)
    await client.connect()
    await sleep(100)
    const closed = storage.closed?.()
    const held = await storage.counters.held('{acct_again}:x', Date.now()).then(
      (v) => `answered ${v}`,
      (err: Error) => `failed: ${err.message}`,
    )
    console.log(`after client.connect(): closed() ${closed}; counters.held ${held}`)
    expect(closed).toBeUndefined()
    expect(held).toMatch(/^answered/)
    await storage.close?.()
    client.disconnect()
  })

  it('is not opened for a client that never sends a call twice nor leaves it unanswered', async () => {
    const observer = new Redis(server!.port, '127.0.0.1')
    clients.push(observer)
    await ready(observer)
    const base = 0
    const connections = (o: Redis) => connectionsNamed(o, 'tb-shared')
    const client = new Redis(server!.port, '127.0.0.1', {
      autoResendUnfulfilledCommands: false,
      commandTimeout: 1000,
      connectionName: 'tb-shared',
    })
    clients.push(client)
    await ready(client)
    const storage = redisStorage({ client, keyPrefix: 'shared:' })
    await storage.counters.held('{acct_shared}:x', Date.now())
    expect(await connections(observer)).toBe(base + 1)
    await storage.close?.()
    client.disconnect()
  })
})
