/**
 * @module test/storage/leased-core
 *
 * Leases as `createTollbooth` wires them (docs/leases.md, "In tollbooth"): on by default over
 * counters in another process (here `mapStorage()`, a store whose every call waits a turn of
 * the event loop), never over in-process ones; `exact: true` on a rate limit, a key's limits, a
 * plan or a route keeps its admissions central, as concurrency always is; `tb.stats().leases`
 * shows the figures; `tb.flush()` sends what leases hold and `tb.close()` gives back what they
 * did not use; the `leases` option is validated like every other.
 */

import { describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import {
  ConfigError,
  createTollbooth,
  memoryStorage,
  type RouteOptions,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import { dailyQuota } from '../support/leases.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { mapStorage } from './map-store.js'

const SECRET = 'leased-core-secret-leased-core-secret-42'

/** `count` requests, `width` at a time, each settled with status 200. Returns the admitted. */
async function drive(
  tb: Tollbooth,
  key: string,
  count: number,
  route?: RouteOptions,
  width = 20,
): Promise<number> {
  const r = route ? tb.route(route) : undefined
  let admitted = 0
  let next = 0
  const worker = async () => {
    while (next < count) {
      next++
      const d = await tb.authenticate(
        { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'GET', path: '/' },
        r,
      )
      if (d.allowed) {
        admitted++
        await tb.settle(d, { status: 200 })
      }
    }
  }
  await Promise.all(Array.from({ length: width }, worker))
  return admitted
}

const BIG = { rateLimits: [{ limit: 1_000_000, windowMs: 60_000 }], quotas: { daily: 1_000_000 } }

describe('leases in createTollbooth', () => {
  it('are on over a remote store: most admissions of a hot key answered in process', async () => {
    const tb = createTollbooth({ secret: SECRET, storage: mapStorage() })
    const { key } = await tb.keys.create({ accountId: 'acct_hot', limits: BIG })
    expect(await drive(tb, key, 3000)).toBe(3000)
    const l = tb.stats().leases!
    expect(l.localAdmissions).toBeGreaterThan(2000)
    expect(l.acquired).toBeGreaterThan(0)
    expect(l.storeCallsSaved).toBeGreaterThan(2000)
    expect(l.localAdmissions + l.centralAdmissions).toBe(3000)
    await tb.close()
  })

  it('are off over in-process stores and with leases: false', async () => {
    for (const tb of [
      createTollbooth({ secret: SECRET, storage: memoryStorage() }),
      createTollbooth({ secret: SECRET, storage: mapStorage(), leases: false }),
    ]) {
      const { key } = await tb.keys.create({ accountId: 'acct_off', limits: BIG })
      expect(await drive(tb, key, 200)).toBe(200)
      expect(tb.stats().leases).toBeNull()
      await tb.close()
    }
  })

  const central: Array<[string, (s: Storage) => Promise<[Tollbooth, string, RouteOptions?]>]> = [
    [
      'exact: true on a rate limit (the key has no other limit)',
      async (storage) => {
        const tb = createTollbooth({ secret: SECRET, storage })
        const { key } = await tb.keys.create({
          accountId: 'acct_x1',
          limits: { rateLimits: [{ limit: 1_000_000, windowMs: 60_000, exact: true }] },
        })
        return [tb, key]
      },
    ],
    [
      "exact: true on a key's limits",
      async (storage) => {
        const tb = createTollbooth({ secret: SECRET, storage })
        const { key } = await tb.keys.create({
          accountId: 'acct_x2',
          limits: { ...BIG, exact: true },
        })
        return [tb, key]
      },
    ],
    [
      'exact: true on a route',
      async (storage) => {
        const tb = createTollbooth({ secret: SECRET, storage })
        const { key } = await tb.keys.create({ accountId: 'acct_x3', limits: BIG })
        return [tb, key, { exact: true }]
      },
    ],
    [
      'exact: true on a plan (its rate limits and credits)',
      async (storage) => {
        const tb = createTollbooth({
          secret: SECRET,
          storage,
          plans: {
            pro: {
              monthlyCredits: 1_000_000,
              rateLimits: [{ limit: 1_000_000, windowMs: 60_000 }],
              exact: true,
            },
          },
          defaultTier: 'pro',
        })
        const { key } = await tb.keys.create({ accountId: 'acct_x4' })
        return [tb, key, { cost: 1 }]
      },
    ],
    [
      'a concurrency limit, beside limits that would be leased',
      async (storage) => {
        const tb = createTollbooth({ secret: SECRET, storage })
        const { key } = await tb.keys.create({
          accountId: 'acct_x5',
          limits: { ...BIG, concurrency: 1000 },
        })
        return [tb, key]
      },
    ],
  ]
  for (const [name, make] of central)
    it(`decide centrally: ${name}`, async () => {
      const [tb, key, route] = await make(mapStorage())
      expect(await drive(tb, key, 1000, route)).toBe(1000)
      const l = tb.stats().leases!
      expect(l.localAdmissions).toBe(0)
      expect(l.acquired).toBe(0)
      // (Credits on a store that may come back empty ask for a rebuild first: one more call
      // for each of the first requests.)
      expect(l.centralAdmissions).toBeGreaterThanOrEqual(1000)
      await tb.close()
    })

  it('a plan without exact: its rate limit and credits are leased', async () => {
    const tb = createTollbooth({
      secret: SECRET,
      storage: mapStorage(),
      plans: {
        pro: { monthlyCredits: 1_000_000, rateLimits: [{ limit: 1_000_000, windowMs: 60_000 }] },
      },
      defaultTier: 'pro',
    })
    const { key } = await tb.keys.create({ accountId: 'acct_plan' })
    expect(await drive(tb, key, 2000, { cost: 1 })).toBe(2000)
    expect(tb.stats().leases!.localAdmissions).toBeGreaterThan(1000)
    await tb.close()
    // Every credit charged once, nothing held: the credit leases were released with them.
    const view = await createTollbooth({
      secret: SECRET,
      storage: tb.storage,
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
      leases: false,
    }).accounts.get('acct_plan')
    expect(view.credits.used).toBe(2000)
  })

  it('a burst on a new account: leased from its first instants, on a store that can come back empty', async () => {
    // A total quota and credits on a new account, 128 requests at once (as an HTTP server
    // takes them): every admission of the first instant is seen within one millisecond. The
    // rate of a new span was taken as unknown for its first 10 ms, so the first waves of such
    // a burst all went to the store, and a burst of 4 waves on a limit of 500 admitted
    // nothing from leases.
    const redis = await connectRedis()
    const prefix = testPrefix('leased-core')
    try {
      for (const [store, storage] of [
        ['Map store', mapStorage()],
        ...(redis ? [['Redis', redisStorage({ client: redis, keyPrefix: prefix })] as const] : []),
      ] as const) {
        for (const [name, limits, route] of [
          ['a total quota', { quotas: { total: 500 } }, undefined],
          ['credits', {}, { cost: 1 }],
        ] as const) {
          const tb = createTollbooth({
            secret: SECRET,
            storage,
            plans: { pro: { monthlyCredits: 500 } },
            defaultTier: 'pro',
            leases: { maxShare: 0.05 },
          })
          const { key } = await tb.keys.create({
            accountId: `acct_new_${store.replaceAll(' ', '_')}_${name.replaceAll(' ', '_')}`,
            limits,
          })
          expect(await drive(tb, key, 2000, route, 128)).toBe(500)
          const l = tb.stats().leases!
          expect(l.localAdmissions, `${store}, ${name}`).toBeGreaterThan(0)
          await tb.close()
        }
      }
    } finally {
      if (redis) {
        await deletePrefix(redis, prefix)
        await redis.quit()
      }
    }
  })

  it('flush() sends what the leases hold: another instance on the same Redis sees every credit charged', async () => {
    const redis = await connectRedis()
    if (!redis) return
    const prefix = testPrefix('leased-flush')
    const options = {
      secret: SECRET,
      storage: redisStorage({ client: redis, keyPrefix: prefix }),
      plans: { pro: { monthlyCredits: 1_000_000 } },
      defaultTier: 'pro',
      // No timer rotation within the test: only flush() can send the lease's charges.
      leases: { flushEveryMs: 60_000 },
    }
    const a = createTollbooth(options)
    const b = createTollbooth(options)
    try {
      const { key } = await a.keys.create({ accountId: 'acct_flush' })
      expect(await drive(a, key, 1500, { cost: 1 }, 64)).toBe(1500)
      expect(a.stats().leases!.localAdmissions).toBeGreaterThan(500)
      await a.flush()
      const view = await b.accounts.get('acct_flush')
      expect(view.credits.used).toBe(1500)
    } finally {
      await a.close()
      await b.close()
      await deletePrefix(redis, prefix)
      await redis.quit()
    }
  })

  it('close() with requests in flight on credit leases: another instance cannot spend their credits, none is overspent', async () => {
    const redis = await connectRedis()
    if (!redis) return
    const prefix = testPrefix('leased-close')
    const LIMIT = 2000
    const options = {
      secret: SECRET,
      storage: redisStorage({ client: redis, keyPrefix: prefix }),
      plans: { pro: { monthlyCredits: LIMIT } },
      defaultTier: 'pro',
      leases: { maxShare: 0.05 },
    }
    const a = createTollbooth(options)
    const b = createTollbooth(options)
    try {
      const { key } = await a.keys.create({ accountId: 'acct_close_flight' })
      const req = {
        headers: { authorization: `Bearer ${key}` },
        ip: '127.0.0.1',
        method: 'GET',
        path: '/',
      }
      const route = a.route({ cost: 2 })
      expect(await drive(a, key, 500, { cost: 2 }, 64)).toBe(500)
      // 40 requests admitted on A, still in their handlers when A closes.
      const open = await Promise.all(Array.from({ length: 40 }, () => a.authenticate(req, route)))
      expect(open.every((d) => d.allowed)).toBe(true)
      expect(a.stats().leases!.localAdmissions).toBeGreaterThan(0)
      await a.close()
      // B serves what the store lets it, then A's requests end (2 credits each).
      const served = await drive(b, key, 1000, { cost: 2 }, 16)
      for (const d of open) await a.settle(d, { status: 200 })
      // Their usage events, queued after close, are written now: not by A's out-box timer
      // after the client quit (reported 'Connection is closed' into the next tests).
      await a.flush()
      const used = (await b.accounts.get('acct_close_flight')).credits.used
      // Before: B spent the credits A's requests held, and their settles charged past the
      // limit (2,078 credits used of 2,000).
      expect(used).toBeLessThanOrEqual(LIMIT)
      expect(used).toBe(2 * (500 + 40 + served))
    } finally {
      await b.close()
      await deletePrefix(redis, prefix)
      await redis.quit()
    }
  })

  it('close() gives back what the leases did not use: the quota counts the admitted exactly', async () => {
    const storage = mapStorage()
    const tb = createTollbooth({ secret: SECRET, storage })
    const { key, record } = await tb.keys.create({ accountId: 'acct_q', limits: BIG })
    expect(await drive(tb, key, 1500)).toBe(1500)
    const l = tb.stats().leases!
    expect(l.localAdmissions).toBeGreaterThan(0)
    await tb.close()
    expect(tb.stats().leases!.held).toBe(0)
    const daily = dailyQuota(0, { key: `{acct_q}:k:${record.id}:q:daily`, limit: 1_000_000 })
    const r = await storage.counters.consume([daily], Date.now())
    expect(r.results[0]!.used).toBe(1500)
  })

  it('token limits keep no lease state: their counters, trued-up at settle, are not tracked', async () => {
    const tb = createTollbooth({ secret: SECRET, storage: mapStorage() })
    const keys = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        tb.keys.create({
          accountId: `acct_tok${i}`,
          limits: { rateLimits: [{ limit: 1_000_000, windowMs: 60_000, unit: 'tokens' }] },
        }),
      ),
    )
    for (const { key } of keys) {
      const d = await tb.authenticate({
        headers: { authorization: `Bearer ${key}` },
        ip: '127.0.0.1',
        method: 'GET',
        path: '/',
      })
      expect(d.allowed).toBe(true)
      if (d.allowed) {
        d.report({ tokens: 100 })
        await tb.settle(d, { status: 200 })
      }
    }
    // Before: one state a key, pinned for good (the settle's add): 50, and growing with keys.
    expect(tb.stats().leases!.trackedKeys).toBe(0)
    await tb.close()
  })

  it('validates the leases option and exact flags', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ leases: { maxShare: 0 } }, 'leases.maxShare'],
      [{ leases: { maxShare: 0.9 } }, 'leases.maxShare'],
      [{ leases: { ttlMs: 0 } }, 'leases.ttlMs'],
      [{ leases: { minUnits: 1.5 } }, 'leases.minUnits'],
      [{ leases: { spanMs: -1 } }, 'leases.spanMs'],
      [{ leases: { clockSkewMs: -1 } }, 'leases.clockSkewMs'],
      [{ leases: { clockSkewMs: 1.5 } }, 'leases.clockSkewMs'],
      [{ leases: { bogus: 1 } }, 'leases'],
      [{ leases: true }, 'leases'],
      [{ plans: { pro: { exact: 'yes' } } }, 'plans.pro.exact'],
    ]
    for (const [options, path] of bad) {
      let err: unknown
      try {
        createTollbooth({ secret: SECRET, ...options } as never)
      } catch (e) {
        err = e
      }
      expect(err, JSON.stringify(options)).toBeInstanceOf(ConfigError)
      expect((err as Error).message).toContain(path)
    }
    const tb = createTollbooth({ secret: SECRET, storage: mapStorage() })
    expect(() => tb.route({ exact: 1 } as never)).toThrow(/exact/)
    expect(tb.options.leases).toMatchObject({
      maxShare: 0.01,
      ttlMs: 1000,
      spanMs: 100,
      clockSkewMs: 2000,
    })
  })

  it("rejects a bad exact in a key's limits with the field named", async () => {
    const tb = createTollbooth({ secret: SECRET, storage: mapStorage() })
    await expect(
      tb.keys.create({ accountId: 'acct_v', limits: { exact: 'yes' } as never }),
    ).rejects.toThrow(/exact/)
    await expect(
      tb.keys.create({
        accountId: 'acct_v',
        limits: { rateLimits: [{ limit: 5, windowMs: 1000, exact: 1 }] } as never,
      }),
    ).rejects.toThrow(/exact/)
    await tb.close()
  })

  it('a request answered from a credit lease and running 3 × its hold TTL keeps its credits held to its end', async () => {
    const tb = createTollbooth({
      secret: SECRET,
      storage: mapStorage(),
      leaseTtlMs: 1000,
      reservationTtlMs: 1000,
      plans: { big: { monthlyCredits: 1_000_000 } },
      defaultTier: 'big',
    })
    try {
      const { key } = await tb.keys.create({ accountId: 'acct_1' })
      const credits = `{acct_1}:credits:${new Date().toISOString().slice(0, 7)}`
      let settled = await drive(tb, key, 400, { cost: 1 })
      const before = tb.stats().leases!.localAdmissions
      const long = await tb.authenticate(
        { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'GET', path: '/' },
        tb.route({ cost: 60 }),
      )
      expect(long.allowed).toBe(true)
      expect(tb.stats().leases!.localAdmissions).toBe(before + 1)
      const began = Date.now()
      for (const at of [1500, 2500, 3100]) {
        while (Date.now() - began < at) {
          settled += await drive(tb, key, 20, { cost: 1 })
          await new Promise((r) => setTimeout(r, 50))
        }
        // Once the leases are put in the store (their charges, their requests in flight
        // carried into a new hold): every settled request's 1 credit, and the long request's
        // 60 still held.
        await tb.flush()
        expect(await tb.storage.counters.held(credits, Date.now()), `at ${at} ms`).toBe(
          settled + 60,
        )
      }
      await tb.settle(long, { status: 200, cost: 42 })
      await tb.flush()
      expect((await tb.accounts.get('acct_1')).credits.used).toBe(settled + 42)
    } finally {
      await tb.close()
    }
  })
})
