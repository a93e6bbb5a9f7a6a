/**
 * @module test/storage/redis
 *
 * `redisStorage()` against a real Redis (`REDIS_URL`): the storage conformance suite (each test
 * under its own key prefix, deleted afterwards), then what is particular to Redis: counters
 * expire when idle, every script stays in one Cluster slot, an admission costs one round
 * trip (settles ride along with the next one), a dead Redis gives a fast error rather than a hang, and bad options throw.
 */

import { connect } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { holdState } from '../../adapters/redis/counters.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { CONSUME_FUNCTION, SETTLE_FUNCTION } from '../../adapters/redis/scripts.js'
import { describeStorageConformance } from '../../adapters/testing/index.js'
import { ConfigError, createTollbooth, isTollboothError } from '../../src/index.js'
import {
  connectRedis,
  FAIL_FAST,
  feedDelivered,
  keySlot,
  prefixPerTest,
  REDIS_URL,
  redisFixture,
} from '../support/redis.js'

const client = await connectRedis()
const SECRET = 'redis-test-secret-redis-test-secret-42'

if (client) {
  afterAll(() => client.quit())
  describeStorageConformance('redis', redisFixture(client))
}

/** A command as MONITOR shows it: its arguments and who sent it (`lua` inside a script). */
interface Seen {
  args: string[]
  source: string
}

/** The arguments of a MONITOR line, unescaped (`"a" "b\\n"` -> [a, b\n]). */
function parseArgs(text: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"/g
  for (const m of text.matchAll(re)) {
    out.push(
      m[1]!.replace(/\\(x[0-9a-f]{2}|.)/g, (_, e: string) =>
        e.length === 3
          ? String.fromCharCode(Number.parseInt(e.slice(1), 16))
          : (({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' } as Record<string, string>)[e] ?? e),
      ),
    )
  }
  return out
}

/**
 * Records every command Redis runs while `fn` runs, over a raw MONITOR socket (ioredis's
 * `monitor()` can mistake a line that lands while MONITOR starts for a reply).
 */
async function monitored(fn: () => Promise<void>): Promise<Seen[]> {
  const url = new URL(REDIS_URL)
  const socket = connect(Number(url.port || 6379), url.hostname)
  const seen: Seen[] = []
  let buffer = ''
  socket.on('data', (d: Buffer) => {
    buffer += d.toString('utf8')
    let nl = buffer.indexOf('\r\n')
    while (nl !== -1) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 2)
      const m = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line)
      if (m) seen.push({ source: m[1]!, args: parseArgs(m[2]!) })
      nl = buffer.indexOf('\r\n')
    }
  })
  await new Promise((r) => socket.once('connect', r))
  socket.write('MONITOR\r\n')
  const mark = async (name: string) => {
    const until = Date.now() + 2000
    while (!seen.some((c) => c.args[1] === name) && Date.now() < until) {
      await client!.ping(name)
      await new Promise((r) => setTimeout(r, 10))
    }
    if (!seen.some((c) => c.args[1] === name)) throw new Error(`MONITOR never showed ${name}`)
  }
  try {
    await mark('monitor-start')
    seen.length = 0
    await fn()
    await mark('monitor-end')
  } finally {
    socket.destroy()
  }
  return seen
}

describe.skipIf(!client)('redisStorage on Redis', () => {
  const redis = client!
  /** A fresh key prefix, deleted after the test whatever its outcome. */
  const newPrefix = prefixPerTest(redis)

  it('expires idle counters and keeps the ones that never idle', async () => {
    const prefix = newPrefix('ttl')
    const { counters } = redisStorage({ client: redis, keyPrefix: prefix, idleSlackMs: 0 })
    const now = Date.now()
    const hour = 3_600_000
    await counters.consume(
      [
        {
          type: 'window',
          key: '{a}:day',
          name: 'd',
          limit: 5,
          windowMs: 24 * hour,
          bucketMs: hour,
          cost: 1,
        },
        { type: 'window', key: '{a}:all', name: 't', limit: 5, windowMs: 0, bucketMs: 0, cost: 1 },
        { type: 'gcra', key: '{a}:rate', name: 'r', limit: 10, windowMs: 1000, cost: 3 },
        {
          type: 'hold',
          key: '{a}:lease',
          name: 'c',
          limit: 2,
          amount: 1,
          holdId: 'r1',
          ttlMs: 30_000,
        },
        {
          type: 'hold',
          key: '{a}:credit',
          name: 'b',
          limit: 9,
          amount: 2,
          holdId: 'r1',
          ttlMs: 30_000,
        },
      ],
      now,
    )
    await counters.settle([{ type: 'release', key: '{a}:credit', holdId: 'r1', charge: 1 }], now)
    const ttl = (k: string) => redis.pttl(prefix + k)
    const day = await ttl('{a}:day')
    const idleAt = (Math.floor(now / hour) + 24 + 1) * hour - now
    expect(day).toBeGreaterThan(idleAt - 1000)
    expect(day).toBeLessThanOrEqual(idleAt)
    expect(await ttl('{a}:all')).toBe(-1)
    expect(await ttl('{a}:rate')).toBeGreaterThan(0)
    expect(await ttl('{a}:rate')).toBeLessThanOrEqual(302)
    expect(await ttl('{a}:lease')).toBeGreaterThan(29_000)
    expect(await ttl('{a}:lease')).toBeLessThanOrEqual(30_000)
    expect(await ttl('{a}:credit')).toBe(-1)
    await counters.settle([{ type: 'release', key: '{a}:lease', holdId: 'r1', charge: 0 }], now)
    expect(await redis.exists(prefix + '{a}:lease')).toBe(0)
  })

  it('keeps every script and transaction inside one Redis Cluster slot', async () => {
    const prefix = newPrefix('slot')
    const storage = redisStorage({ client: redis, keyPrefix: prefix })
    const tb = createTollbooth({ secret: SECRET, storage, usage: { flushIntervalMs: 60_000 } })
    const req = (key: string) => ({
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/v1/x',
    })
    const commands = await monitored(async () => {
      const { key, record } = await tb.keys.create({
        accountId: 'acct_slots',
        limits: {
          quotas: { daily: 10, total: 100 },
          rateLimits: [{ limit: 5, windowMs: 1000 }],
          concurrency: 2,
        },
      })
      const d = await tb.authenticate(req(key))
      expect(d.allowed).toBe(true)
      await tb.settle(d, { status: 200 })
      await tb.flush()
      await tb.keys.list('acct_slots')
      await tb.keys.rotate(record.id, { gracePeriodMs: 0 })
      await tb.usage.logs(record.id, {})
      await storage.usage.prune(Date.now() + 1)
    })
    await tb.close()
    await storage.close?.()
    const ours = commands.filter(
      (c) => c.source !== 'lua' && c.args.some((x) => x.startsWith(prefix)),
    )
    expect(
      ours.filter((c) => c.args[0]!.startsWith('eval') || c.args[0] === 'fcall').length,
    ).toBeGreaterThan(8)
    for (const { args } of ours) {
      const keys =
        args[0] === 'evalsha' || args[0] === 'eval' || args[0] === 'fcall'
          ? args.slice(3, 3 + Number(args[2]))
          : args.slice(1).filter((x) => x.startsWith(prefix))
      expect(new Set(keys.map(keySlot)).size, args.join(' ')).toBe(1)
    }
  })

  it('admits a request in one round trip, its settle riding along with the next admission', async () => {
    const prefix = newPrefix('rtt')
    const own = (await connectRedis())!
    const storage = redisStorage({ client: own, keyPrefix: prefix })
    const tb = createTollbooth({ secret: SECRET, storage, usage: { flushIntervalMs: 60_000 } })
    const { key } = await tb.keys.create({
      accountId: 'acct_rtt',
      limits: {
        quotas: { daily: 1000 },
        rateLimits: [{ limit: 100, windowMs: 1000 }],
        concurrency: 5,
      },
    })
    const req = {
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/',
    }
    // The key's and account's changes from create() reach the caches first.
    await feedDelivered(storage)
    await tb.settle(await tb.authenticate(req), { status: 200 }) // warms the key and account caches
    const port = String((own as unknown as { stream: { localPort: number } }).stream.localPort)
    const N = 20
    let admitted = 0
    const commands = await monitored(async () => {
      // As the adapters do: the settle is not awaited before the next request.
      for (let i = 0; i < N; i++) {
        const d = await tb.authenticate(req)
        if (d.allowed) admitted++
        tb.settleLater(d, { status: 200 })
      }
      // The last settle has no admission after it: it goes after settleBatchMs (5 ms).
      await new Promise((r) => setTimeout(r, 50))
    })
    // Every command this instance sent, whatever its keys: the round trips of N requests.
    const mine = commands.filter((c) => c.source.endsWith(`:${port}`))
    expect(admitted).toBe(N)
    expect(mine.map((c) => c.args[0])).toEqual(Array(N + 1).fill('fcall'))
    // fcall function numkeys ...keys …: admissions 2..N each carry the previous request's
    // settle (the release of its concurrency lease: one key more than the first); the last
    // call is that alone, by the settle function. Each admission carries its identity (a
    // record, the last key).
    const first = Number(mine[0]!.args[2])
    expect(mine[0]!.args[3 + first - 1]).toMatch(/\{acct_rtt\}:a:/)
    expect(mine.map((c) => [c.args[1], Number(c.args[2])])).toEqual([
      [CONSUME_FUNCTION, first],
      ...Array(N - 1).fill([CONSUME_FUNCTION, first + 1]),
      [SETTLE_FUNCTION, 1],
    ])
    // The leases were all released: 5 requests at once are admitted.
    const five = await Promise.all(Array.from({ length: 5 }, () => tb.authenticate(req)))
    expect(five.every((d) => d.allowed)).toBe(true)
    await tb.close()
    await storage.close?.()
    await own.quit()
  })

  it('sends settles on their own when no admission comes, one call per account, and close() waits for them', async () => {
    const prefix = newPrefix('batch')
    const own = (await connectRedis())!
    const storage = redisStorage({ client: own, keyPrefix: prefix, settleBatchMs: 30 })
    const { counters } = storage
    const now = Date.now()
    const hold = (acct: string, id: string) =>
      ({
        type: 'hold',
        key: `{${acct}}:credit`,
        name: 'c',
        limit: 10,
        amount: 2,
        holdId: id,
        ttlMs: 60_000,
      }) as const
    for (const [acct, id] of [
      ['a', 'r1'],
      ['a', 'r2'],
      ['b', 'r1'],
    ] as const)
      expect((await counters.consume([hold(acct, id)], now)).allowed).toBe(true)
    const port = String((own as unknown as { stream: { localPort: number } }).stream.localPort)
    let settled = 0
    const commands = await monitored(async () => {
      const started = Date.now()
      const all = [
        counters.settle([{ type: 'release', key: '{a}:credit', holdId: 'r1', charge: 1 }], now),
        counters.settle([{ type: 'release', key: '{a}:credit', holdId: 'r2', charge: 1 }], now),
        // One call's ops on two accounts: resolved once both are applied.
        counters.settle(
          [
            { type: 'release', key: '{b}:credit', holdId: 'r1', charge: 2 },
            {
              type: 'add',
              check: {
                type: 'gcra',
                key: '{a}:rate',
                name: 'r',
                limit: 5,
                windowMs: 1000,
                cost: 1,
              },
            },
          ],
          now,
        ),
      ].map((p) => p.then(() => settled++))
      await Promise.resolve()
      expect(settled).toBe(0)
      await Promise.all(all)
      expect(Date.now() - started).toBeGreaterThanOrEqual(25)
    })
    const mine = commands.filter((c) => c.source.endsWith(`:${port}`))
    // One call with no checks for both accounts (one server: the batches of all accounts go
    // together): account a's three ops, account b's one.
    expect(mine.map((c) => [c.args[0], c.args[1], Number(c.args[2])])).toEqual([
      ['fcall', SETTLE_FUNCTION, 4],
    ])
    for (const tag of ['{a}', '{b}'])
      expect(holdState(await own.getBuffer(`${prefix}${tag}:credit`))).toEqual({
        used: 2,
        sum: 0,
        minExp: Infinity,
        maxExp: -Infinity,
        holds: [],
      })
    expect(await own.exists(`${prefix}{a}:rate`)).toBe(1)

    // A long batch is sent without waiting: 300 ops in calls of at most 256, all applied.
    const add = {
      type: 'add',
      check: {
        type: 'window',
        key: '{a}:day',
        name: 'd',
        limit: 1e6,
        windowMs: 0,
        bucketMs: 0,
        cost: 1,
      },
    } as const
    await counters.settle(Array(300).fill(add), now)
    // Packed: v, its expiry (none), then bucket 0 with 300.
    const day = (await own.getBuffer(`${prefix}{a}:day`))!
    expect([day.toString('latin1', 0, 1), day.length, day.readDoubleLE(1)]).toEqual([
      'v',
      25,
      Infinity,
    ])
    expect([day.readDoubleLE(9), day.readDoubleLE(17)]).toEqual([0, 300])

    // tb.close() waits for a settle still queued.
    const tb = createTollbooth({ secret: SECRET, storage, usage: { flushIntervalMs: 60_000 } })
    const { key } = await tb.keys.create({ accountId: 'acct_close', limits: { concurrency: 1 } })
    const d = await tb.authenticate({
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/',
    })
    expect(d.allowed).toBe(true)
    const lease = (await own.keys(`${prefix}{acct_close}:*`)).filter((k) => k.endsWith(':c'))
    expect(lease).toHaveLength(1)
    tb.settleLater(d, { status: 200 })
    expect(await own.exists(lease[0]!)).toBe(1)
    await tb.close()
    expect(await own.exists(lease[0]!)).toBe(0)
    await storage.close?.()
    await own.quit()
  })

  it('rejects fast instead of hanging when Redis is unreachable', async () => {
    const { Redis: RedisClient } = await import('ioredis')
    const dead = new RedisClient('redis://127.0.0.1:1', { ...FAIL_FAST, lazyConnect: true })
    dead.on('error', () => {})
    const storage = redisStorage({ client: dead, keyPrefix: newPrefix('dead') })
    const started = Date.now()
    await expect(
      storage.counters.consume(
        [{ type: 'gcra', key: '{a}:r', name: 'r', limit: 1, windowMs: 1000, cost: 1 }],
        started,
      ),
    ).rejects.toThrow()
    await expect(storage.keys.getByHash('0'.repeat(64))).rejects.toThrow()
    expect(Date.now() - started).toBeLessThan(1000)
    dead.disconnect()
  })

  it('throws a ConfigError naming a bad option', () => {
    const bad = [
      () => redisStorage({ client: {} as never }),
      () => redisStorage({ client: redis, keyPrefix: 'app:{x}:' }),
      () => redisStorage({ client: redis, idleSlackMs: -1 }),
      () => redisStorage({ client: redis, subscribeTimeoutMs: 1.5 }),
      () => redisStorage({ client: redis, settleBatchMs: -5 }),
    ]
    const messages = bad.map((f) => {
      try {
        f()
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError)
        expect(isTollboothError(err)).toBe(true)
        return (err as Error).message
      }
      throw new Error('no error thrown')
    })
    expect(messages[0]).toMatch(/client/)
    expect(messages[1]).toMatch(/keyPrefix/)
    expect(messages[2]).toMatch(/idleSlackMs/)
    expect(messages[3]).toMatch(/subscribeTimeoutMs/)
    expect(messages[4]).toMatch(/settleBatchMs/)
  })

  it('carries a change from one client to a storage on another', async () => {
    const prefix = newPrefix('feed')
    const other = (await connectRedis())!
    const a = redisStorage({ client: redis, keyPrefix: prefix })
    const b = redisStorage({ client: other, keyPrefix: prefix })
    const stranger = redisStorage({ client: other, keyPrefix: newPrefix('feed') })
    const seen: string[] = []
    const unseen: string[] = []
    await b.changes!.subscribe((h) => seen.push(h))
    await stranger.changes!.subscribe((h) => unseen.push(h))
    await a.changes!.publish('hash-1')
    const until = Date.now() + 2000
    while (!seen.includes('hash-1') && Date.now() < until)
      await new Promise((r) => setTimeout(r, 5))
    expect(seen).toEqual(['hash-1'])
    expect(unseen).toEqual([])
    await Promise.all([a.close?.(), b.close?.(), stranger.close?.()])
    await other.quit()
  })
})
