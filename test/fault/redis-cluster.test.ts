/**
 * @module test/fault/redis-cluster
 *
 * The counters on a real Redis Cluster of three masters, started here (`redis-server
 * --cluster-enabled yes` on three free ports, joined by `redis-cli --cluster create`, killed by
 * pid, their folders removed), through an ioredis `Cluster`: the Functions library is loaded
 * on every master on first use, each call stays in its account's slot, counters spread over
 * the masters with the accounts, and 30 accounts' admissions and settles give the figures of
 * the memory store, figure for figure.
 */

import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { LIBRARY } from '../../adapters/redis/scripts.js'
import { type Check, type CounterStore, memoryStorage } from '../../src/internal.js'
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
