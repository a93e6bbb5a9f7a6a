/**
 * @module test/fault/redis-cluster
 *
 * The counters on a real Redis Cluster of three masters, started here (`redis-server
 * --cluster-enabled yes` on three free ports, joined by `redis-cli --cluster create`, killed by
 * pid, their folders removed), through an ioredis `Cluster`: the Functions library is loaded
 * on every master on first use, each call stays in its account's slot, counters spread over
 * the masters with the accounts, and 30 accounts' admissions and settles give the figures of
 * the memory store, figure for figure. Usage too spreads with its accounts: 300 keys' events
 * over 30 accounts sit on every master, and summaries, logs and prune through the `Cluster`
 * give what the memory store gives. So do key records: 300 keys of 30 accounts sit on every
 * master (records under buckets of their hash, the id index under buckets of the id, each
 * account's list under its usage tag), the key store answers through the `Cluster` as the memory
 * store does, and `upgradeKeyRecords` moves keys of the one-tag `{keys}` layout off their master.
 * Top-ups under idempotency keys of 30 accounts on every master: credited once each, and a key
 * reused on another account answered from its binding (no call spans two slots).
 */

import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStorage, upgradeKeyRecords, upgradeUsageTotals } from '../../adapters/redis/index.js'
import { LIBRARY } from '../../adapters/redis/scripts.js'
import { makeEvent, makeKey } from '../../adapters/testing/fixtures.js'
import {
  type Check,
  type CounterStore,
  type KeyRecord,
  type KeyStore,
  memoryStorage,
  type UsageEvent,
  type UsageStore,
} from '../../src/internal.js'
import { blankAccount } from '../../src/metering/accounts.js'
import { type RedisServer, startRedisServer } from './redis-server.js'

const run = promisify(execFile)
const dir = mkdtempSync(join(tmpdir(), 'tb-cluster-'))
const servers: RedisServer[] = []
let cluster: Cluster | null = null

async function startCluster(): Promise<Cluster | null> {
  try {
    for (let i = 0; i < 3; i++)
      servers.push(
        await startRedisServer([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${i}.conf`),
          '--dir',
          dir,
        ]),
      )
    await run('redis-cli', [
      '--cluster',
      'create',
      ...servers.map((s) => `127.0.0.1:${s.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ])
  } catch (err) {
    if (process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1') throw err
    return null
  }
  // Every node agrees the cluster is up before a client is made.
  for (const s of servers) {
    const node = new Redis(s.port, '127.0.0.1')
    for (let i = 0; !(await node.cluster('INFO')).includes('cluster_state:ok'); i++) {
      if (i > 200) throw new Error(`node ${s.port} never saw the cluster up`)
      await new Promise((r) => setTimeout(r, 50))
    }
    node.disconnect()
  }
  const c = new Cluster(
    servers.map((s) => ({ host: '127.0.0.1', port: s.port })),
    { redisOptions: { maxRetriesPerRequest: 1 } },
  )
  c.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    c.once('ready', () => resolve())
    c.once('error', reject)
  })
  return c
}

beforeAll(async () => {
  cluster = await startCluster()
}, 60_000)

afterAll(async () => {
  cluster?.disconnect()
  for (const s of servers) await s.kill()
  rmSync(dir, { recursive: true, force: true })
})

const checks = (acct: string, i: number): Check[] => [
  { type: 'gcra', key: `{${acct}}:rate`, name: 'r', limit: 5, windowMs: 60_000, cost: 1 },
  {
    type: 'window',
    key: `{${acct}}:day`,
    name: 'd',
    limit: 8,
    windowMs: 86_400_000,
    bucketMs: 3_600_000,
    cost: 1,
  },
  {
    type: 'hold',
    key: `{${acct}}:credit`,
    name: 'c',
    limit: 20,
    amount: 3,
    holdId: `r${i}`,
    ttlMs: 60_000,
  },
]

/**
 * Eight rounds over 30 accounts: each account admitted (with its record), then the previous
 * round's hold released with a charge; the answers and the credit totals at the end.
 */
async function rounds(counters: CounterStore, now: number) {
  const answers: unknown[] = []
  for (let i = 0; i < 8; i++) {
    const t = now + i * 1000
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, a) =>
        counters.consume(checks(`acct_${a}`, i), t, { key: `{acct_${a}}:a:r${i}`, ttlMs: 60_000 }),
      ),
    )
    answers.push(results)
    await Promise.all(
      Array.from({ length: 30 }, (_, a) =>
        counters.settle(
          [{ type: 'release', key: `{acct_${a}}:credit`, holdId: `r${i}`, charge: 1 + (a % 3) }],
          t + 500,
        ),
      ),
    )
  }
  const held = await Promise.all(
    Array.from({ length: 30 }, (_, a) => counters.held(`{acct_${a}}:credit`, now + 9000)),
  )
  return { answers, held }
}

describe('redis counters on a 3-master Redis Cluster', () => {
  it('loads the library on every master and counts exactly, spread over the masters', async () => {
    if (!cluster) return
    const c = cluster
    const { counters } = redisStorage({ client: c, keyPrefix: 'cl:' })
    const now = Date.now()
    const got = await rounds(counters, now)
    expect(got).toEqual(await rounds(memoryStorage().counters, now))
    // Some admissions refused (the day quota of 8 and the credit of 20), some charged.
    expect(JSON.stringify(got.answers)).toContain('"allowed":false')

    const name = /^#!lua name=(\S+)/.exec(LIBRARY)![1]!
    const masters = c.nodes('master')
    expect(masters).toHaveLength(3)
    const perMaster: number[] = []
    for (const m of masters) {
      expect(JSON.stringify(await m.call('FUNCTION', 'LIST'))).toContain(name)
      perMaster.push((await m.keys('cl:*')).length)
    }
    // The counters of 30 accounts (3 each, plus the admissions' records) sit on every master.
    expect(perMaster.every((n) => n > 0)).toBe(true)
    expect(perMaster.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(90)
  })
})

/** 300 keys over 30 accounts, four events each over two days (some refused, some categorized). */
function usageEvents(t0: number): UsageEvent[] {
  const out: UsageEvent[] = []
  for (let k = 0; k < 300; k++)
    for (let i = 0; i < 4; i++)
      out.push(
        makeEvent({
          id: `ev_${k}_${i}`,
          requestId: `ev_${k}_${i}`,
          accountId: `acct_${k % 30}`,
          keyId: `key_${k}`,
          time: t0 + k * 571_000 + i * 7_777_000,
          units: ((k + i) % 5) / 2,
          category: i % 2 ? 'tts' : null,
          keyCategory: k % 3 ? null : 'production',
          code: (k + i) % 7 === 0 ? 'quota_exceeded' : null,
        }),
      )
  return out
}

/** What a usage store says of every account and key, then after a prune. */
async function usageFigures(usage: UsageStore, t0: number) {
  const events = usageEvents(t0)
  // As the out-box sends them: batches mixing accounts, one sent twice.
  for (let i = 0; i < events.length; i += 250) await usage.record(events.slice(i, i + 250))
  await usage.record(events.slice(0, 250))
  const day = 86_400_000
  const summaries = await Promise.all(
    Array.from({ length: 30 }, (_, a) =>
      Promise.all([
        usage.summarize(`acct_${a}`, t0, t0 + 3 * day),
        usage.summarize(`acct_${a}`, t0 + 3_600_000 + 1234, t0 + day + 999),
      ]),
    ),
  )
  const logs = await Promise.all(
    Array.from({ length: 300 }, async (_, k) => {
      const first = await usage.logs(`key_${k}`, { limit: 3 })
      const rest = first.nextCursor
        ? await usage.logs(`key_${k}`, { limit: 3, cursor: first.nextCursor })
        : null
      return [first.data.map((e) => e.id), rest?.data.map((e) => e.id)]
    }),
  )
  const pruned = await usage.prune(t0 + day)
  const after = await Promise.all(
    Array.from({ length: 30 }, (_, a) => usage.summarize(`acct_${a}`, t0, t0 + 3 * day)),
  )
  return { summaries, logs, pruned, after }
}

describe('redis usage on a 3-master Redis Cluster', () => {
  it('spreads usage over every master, with summaries, logs and prune exact', async () => {
    if (!cluster) return
    const c = cluster
    const { usage } = redisStorage({ client: c, keyPrefix: 'us:' })
    const t0 = Date.UTC(2026, 5, 1, 9, 30)
    const got = await usageFigures(usage, t0)
    expect(got).toEqual(await usageFigures(memoryStorage().usage, t0))
    expect(got.pruned).toBeGreaterThan(0)
    expect(got.logs[0]![0]).toHaveLength(3)

    const perMaster: number[] = []
    const indexOn: number[] = []
    for (const m of c.nodes('master')) {
      perMaster.push((await m.keys('us:{u:*')).length)
      indexOn.push((await m.keys('us:{usage}*')).length)
    }
    console.log(`usage keys per master: ${perMaster.join(' / ')}`)
    // Every master holds some accounts' usage; only the two index keys sit under {usage}.
    expect(perMaster.every((n) => n > 0)).toBe(true)
    expect(Math.max(...perMaster)).toBeLessThan(perMaster.reduce((a, b) => a + b, 0) * 0.6)
    expect(indexOn.reduce((a, b) => a + b, 0)).toBe(2)
  })

  it('moves usage of the one-tag layout to every master', async () => {
    if (!cluster) return
    const c = cluster
    const t0 = Date.UTC(2026, 5, 1, 9, 30)
    // As versions before December 2026 stored them: all under {usage}, totals included.
    const events = usageEvents(t0).slice(0, 600)
    for (const e of events) {
      await c.hset('up:{usage}:ev', e.id, JSON.stringify(e))
      await c.zadd('up:{usage}:all', e.time, e.id)
      await c.zadd(`up:{usage}:acct:${e.accountId}`, e.time, e.id)
      await c.zadd(`up:{usage}:key:${e.keyId}`, e.time, e.id)
      if (e.code !== null) continue
      const cat = `${e.category ?? 'uncategorized'}${e.keyCategory ? `\u0000${e.keyCategory}` : ''}`
      for (const b of [
        `h:${e.time - (e.time % 3_600_000)}`,
        `d:${e.time - (e.time % 86_400_000)}`,
      ]) {
        await c.hincrby(`up:{usage}:agg:${e.accountId}:${b}`, `r:${cat}`, 1)
        await c.hincrbyfloat(`up:{usage}:agg:${e.accountId}:${b}`, `u:${cat}`, e.units)
      }
    }
    expect(await upgradeUsageTotals({ client: c, keyPrefix: 'up:' })).toBe(600)
    const { usage } = redisStorage({ client: c, keyPrefix: 'up:' })
    const memory = memoryStorage().usage
    await memory.record(events)
    for (let a = 0; a < 30; a++)
      expect(await usage.summarize(`acct_${a}`, t0, t0 + 3 * 86_400_000)).toEqual(
        await memory.summarize(`acct_${a}`, t0, t0 + 3 * 86_400_000),
      )
    expect(await usage.logs('key_7', { limit: 10 })).toEqual(
      await memory.logs('key_7', { limit: 10 }),
    )
    const left: string[] = []
    const spread: number[] = []
    for (const m of c.nodes('master')) {
      left.push(...(await m.keys('up:{usage}*')))
      spread.push((await m.keys('up:{u:*')).length)
    }
    expect(left.sort()).toEqual(['up:{usage}:accts', 'up:{usage}:keys'])
    expect(spread.every((n) => n > 0)).toBe(true)
  })
})

/** 300 keys over 30 accounts (some with a lastUsedAt, some revoked, some management keys). */
function clusterKeys(): KeyRecord[] {
  return Array.from({ length: 300 }, (_, k) =>
    makeKey({
      accountId: `acct_${k % 30}`,
      kind: k % 4 ? 'consumption' : 'management',
      lastUsedAt: k % 3 ? 1_767_225_600_000 + k : null,
      revokedAt: k % 11 ? null : 1_767_225_700_000,
    }),
  )
}

/** What a key store answers for `keys` after inserts, updates, a rotation, deletes and touches. */
async function keyFigures(store: KeyStore, keys: KeyRecord[], inserted: boolean) {
  if (!inserted) for (const k of keys) await store.insert(k)
  const byHash = await Promise.all(keys.map((k) => store.getByHash(k.hash)))
  const byId = await Promise.all(keys.map((k) => store.get(k.id)))
  const updated = await Promise.all(
    keys.slice(0, 30).map((k, i) => store.update(k.id, { name: `Renamed ${i}` })),
  )
  const next = { ...keys[5]!, id: 'key_zz_rotated', hash: 'f'.repeat(64), name: 'Rotated' }
  const rotated = await store.rotate(keys[5]!.id, { revokedAt: 1_767_226_000_000 }, next)
  const deleted = await Promise.all(keys.slice(30, 40).map((k) => store.delete(k.id)))
  await store.touch(
    keys.slice(40, 80).map((k, i) => ({ id: k.id, lastUsedAt: 1_767_300_000_000 + i })),
  )
  const lists = await Promise.all(
    Array.from({ length: 30 }, async (_, a) => {
      const pages: string[][] = []
      let cursor: string | null = null
      do {
        const page = await store.list(`acct_${a}`, {
          limit: 3,
          cursor,
          includeRevoked: a % 2 === 0,
        })
        pages.push(page.data.map((k) => `${k.id} ${k.name} ${k.lastUsedAt}`))
        cursor = page.nextCursor
      } while (cursor)
      const management = await store.list(`acct_${a}`, { limit: 100, kind: 'management' })
      return [pages, management.data.map((k) => k.id)]
    }),
  )
  return { byHash, byId, updated, rotated, deleted, lists, after: await store.get(keys[45]!.id) }
}

describe('redis keys on a 3-master Redis Cluster', () => {
  it('spreads 300 keys of 30 accounts over every master, answering as the memory store', async () => {
    if (!cluster) return
    const c = cluster
    const { keys: store } = redisStorage({ client: c, keyPrefix: 'ks:' })
    const keys = clusterKeys()
    const got = await keyFigures(store, keys, false)
    expect(got).toEqual(await keyFigures(memoryStorage().keys, keys, false))
    expect(got.byHash.every((k) => k !== null)).toBe(true)

    const records: number[] = []
    const all: number[] = []
    for (const m of c.nodes('master')) {
      records.push((await m.keys('ks:{kh:*')).length)
      all.push((await m.keys('ks:*')).length)
      expect(await m.keys('ks:{keys}*')).toEqual([])
    }
    console.log(
      `key records per master: ${records.join(' / ')}; key store keys: ${all.join(' / ')}`,
    )
    // 300 keys, 10 deleted, 1 rotated in: every master holds a share.
    expect(records.reduce((a, b) => a + b, 0)).toBe(291)
    expect(records.every((n) => n > 0)).toBe(true)
    expect(Math.max(...records)).toBeLessThan(291 * 0.6)
    expect(all.every((n) => n > 0)).toBe(true)
  })

  it('moves keys of the one-tag {keys} layout off their master', async () => {
    if (!cluster) return
    const c = cluster
    const keys = clusterKeys()
    // As versions before December 2026 stored them: all under {keys}.
    for (const k of keys) {
      const { lastUsedAt, ...rest } = k
      await c.hset('ku:{keys}:rec', k.id, JSON.stringify(rest))
      if (lastUsedAt !== null) await c.hset('ku:{keys}:used', k.id, String(lastUsedAt))
      await c.hset('ku:{keys}:hash', k.hash, k.id)
      await c.zadd(`ku:{keys}:acct:${k.accountId}`, 0, k.id)
    }
    const before: number[] = []
    for (const m of c.nodes('master')) before.push((await m.keys('ku:*')).length)
    // Found before the upgrade (and moved as read).
    const { keys: store } = redisStorage({ client: c, keyPrefix: 'ku:' })
    expect(await store.getByHash(keys[7]!.hash)).toEqual(keys[7])
    expect(await upgradeKeyRecords({ client: c, keyPrefix: 'ku:' })).toBe(299)
    const after: number[] = []
    for (const m of c.nodes('master')) {
      after.push((await m.keys('ku:{kh:*')).length)
      expect(await m.keys('ku:{keys}*')).toEqual([])
    }
    console.log(
      `old layout keys per master: ${before.join(' / ')}; records after: ${after.join(' / ')}`,
    )
    expect(before.filter((n) => n > 0)).toHaveLength(1)
    expect(after.every((n) => n > 0)).toBe(true)
    expect(after.reduce((a, b) => a + b, 0)).toBe(300)
    const got = await keyFigures(store, keys, true)
    expect(got).toEqual(await keyFigures(memoryStorage().keys, keys, false))
  })
})

describe('redis accounts on a 3-master Redis Cluster', () => {
  it("tops up 30 accounts under idempotency keys, each record in its account's slot", async () => {
    if (!cluster) return
    const { accounts } = redisStorage({ client: cluster, keyPrefix: 'ta:' })
    const ids = Array.from({ length: 30 }, (_, i) => `acct_${i}`)
    for (const id of ids) await accounts.ensure(blankAccount(id, 0))
    const t = (key: string) => ({ key, amount: 10, now: 1_000, expiresAt: 2_000 })
    // Each account's key three times at once, then one key on every account (a key is its
    // account's: each credited once), three times at once too.
    const first = await Promise.all(
      ids.flatMap((id) => [1, 2, 3].map(() => accounts.topUp(id, t(`pay-${id}`)))),
    )
    expect(first.filter((r) => r?.applied)).toHaveLength(30)
    const shared = await Promise.all(
      ids.flatMap((id) => [1, 2, 3].map(() => accounts.topUp(id, t('pay-shared')))),
    )
    expect(shared.filter((r) => r?.applied)).toHaveLength(30)
    for (const id of ids) expect((await accounts.get(id))?.balance).toBe(20)
    const perMaster: number[] = []
    for (const m of cluster.nodes('master')) perMaster.push((await m.keys('ta:account:*')).length)
    expect(perMaster.every((n) => n > 0)).toBe(true)
  })
})
