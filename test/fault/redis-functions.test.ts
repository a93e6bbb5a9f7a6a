/**
 * @module test/fault/redis-functions
 *
 * How the counters reach their Lua: as a Redis Functions library (FCALL), loaded on first use
 * and again when the server lost it (a restart, a failover, `FUNCTION FLUSH`), and as a script
 * (EVALSHA) on a server without Functions (Redis 6, simulated by renaming FCALL and FUNCTION
 * away). Each runs on its own redis-server started here and killed by pid; the figures are the
 * same either way.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { LIBRARY } from '../../adapters/redis/scripts.js'
import { type Check, type CounterStore, memoryStorage } from '../../src/internal.js'
import { privateServer } from '../support/fault.js'
import { FAIL_FAST } from '../support/redis.js'
import { type RedisServer, startRedisServer } from './redis-server.js'

const servers: RedisServer[] = []
const clients: Redis[] = []
async function start(extra: string[] = []) {
  const server = await privateServer(() => startRedisServer(extra))
  if (!server) return null
  servers.push(server)
  const client = new Redis(server.port, '127.0.0.1', { ...FAIL_FAST, lazyConnect: true })
  client.on('error', () => {})
  await client.connect()
  clients.push(client)
  return { server, client }
}

afterAll(async () => {
  for (const c of clients) c.disconnect()
  for (const s of servers) await s.kill()
})

/** Calls of a command so far, from INFO commandstats. */
async function calls(client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats')
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)
  return m ? Number(m[1]) : 0
}

const rate: Check = {
  type: 'gcra',
  key: '{a}:rate',
  name: 'r',
  limit: 3,
  windowMs: 60_000,
  cost: 1,
}
const credit = (id: string): Check => ({
  type: 'hold',
  key: '{a}:credit',
  name: 'c',
  limit: 10,
  amount: 4,
  holdId: id,
  ttlMs: 60_000,
})

/** Four admissions (the rate limit refuses the fourth), then a settle: the same on any path. */
async function sequence(counters: CounterStore, now: number) {
  const out: boolean[] = []
  for (let i = 0; i < 4; i++) {
    const r = await counters.consume([rate, credit(`r${i}`)], now + i, {
      key: `{a}:a:r${i}`,
      ttlMs: 60_000,
    })
    out.push(r.allowed)
  }
  await counters.settle([{ type: 'release', key: '{a}:credit', holdId: 'r0', charge: 1 }], now + 5)
  return { out, held: await counters.held('{a}:credit', now + 6) }
}

describe('redis counters: Functions, and scripts where there are none', () => {
  it('loads the library on first use and again after the server lost it', async () => {
    const s = await start()
    if (!s) return
    const { counters } = redisStorage({ client: s.client, settleBatchMs: 0 })
    const now = Date.now()
    // The credit refuses the third and fourth holds (3 × 4 > 10): as the memory store says.
    const expected = await sequence(memoryStorage().counters, now)
    expect(expected).toEqual({ out: [true, true, false, false], held: 5 })
    expect(await sequence(counters, now)).toEqual(expected)
    const libs = (await s.client.call('FUNCTION', 'LIST')) as unknown[][]
    expect(JSON.stringify(libs)).toContain(/^#!lua name=(\S+)/.exec(LIBRARY)![1]!)
    expect(await calls(s.client, 'fcall')).toBeGreaterThanOrEqual(5)
    expect(await calls(s.client, 'evalsha')).toBe(0)

    await s.client.call('FUNCTION', 'FLUSH')
    const r = await counters.consume([credit('late')], now + 10)
    expect(r.allowed).toBe(true)
    expect(r.results[0]!.used).toBe(9)
    expect(JSON.stringify(await s.client.call('FUNCTION', 'LIST'))).toContain('tollbooth_')
    expect(await calls(s.client, 'evalsha')).toBe(0)
  })

  it('runs the same code by EVALSHA on a server without Functions', async () => {
    const s = await start(['--rename-command', 'FCALL', '', '--rename-command', 'FUNCTION', ''])
    if (!s) return
    const { counters } = redisStorage({ client: s.client, settleBatchMs: 0 })
    const now = Date.now()
    expect(await sequence(counters, now)).toEqual(await sequence(memoryStorage().counters, now))
    // The first goes as EVAL (ioredis loads the script on NOSCRIPT), then EVALSHA.
    expect(await calls(s.client, 'evalsha')).toBeGreaterThanOrEqual(4)
  })

  it('sends the settles of several accounts apart where the server refuses a call across slots', async () => {
    // A one-node cluster reached by a plain client, as through a proxy: CROSSSLOT for a call
    // whose keys are in several slots.
    const dir = mkdtempSync(join(tmpdir(), 'tb-crossslot-'))
    try {
      const s = await start([
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
      ])
      if (!s) return
      await s.client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
      for (let i = 0; (await s.client.cluster('INFO')).includes('cluster_state:fail'); i++) {
        if (i > 100) throw new Error('the one-node cluster never came up')
        await new Promise((r) => setTimeout(r, 50))
      }
      const { counters } = redisStorage({ client: s.client, settleBatchMs: 20 })
      const now = Date.now()
      const hold = (acct: string): Check => ({ ...credit('r'), key: `{${acct}}:credit` })
      for (const acct of ['a', 'b', 'c'])
        expect((await counters.consume([hold(acct)], now)).allowed).toBe(true)
      // Queued together, sent together, refused, sent apart: each applied once.
      await Promise.all(
        ['a', 'b', 'c'].map((acct) =>
          counters.settle(
            [{ type: 'release', key: `{${acct}}:credit`, holdId: 'r', charge: 3 }],
            now,
          ),
        ),
      )
      for (const acct of ['a', 'b', 'c'])
        expect(await counters.held(`{${acct}}:credit`, now)).toBe(3)
      expect(await s.client.info('errorstats')).toContain('errorstat_CROSSSLOT:count=1')
      // From then on each account's settles go on their own: no refusal in between.
      const failedBefore = await s.client.info('errorstats')
      await Promise.all(
        ['a', 'b'].map((acct) =>
          counters.settle(
            [{ type: 'release', key: `{${acct}}:credit`, holdId: 'x', charge: 1 }],
            now,
          ),
        ),
      )
      expect(await s.client.info('errorstats')).toBe(failedBefore)
      expect(await counters.held('{a}:credit', now)).toBe(4)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
