/**
 * @module test/multi-instance/redis
 *
 * Two API processes on one Redis, through real HTTP: a quota of 100 admits exactly 100 of 400
 * concurrent requests split across both, usage counts each once, and a key revoked through
 * one process is refused by the other on its very next request (change feed), although
 * both had it cached.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { type Instance, startInstance } from './spawn.js'

const client = await connectRedis()
const SECRET = 'multi-instance-secret-multi-instance-42'

describe.skipIf(!client)('two instances on one Redis', () => {
  const redis = client!
  const prefix = testPrefix('multi')
  let a: Instance
  let b: Instance
  let storage: Storage
  let tb: Tollbooth

  beforeAll(async () => {
    const env = { TB_PREFIX: prefix, TB_SECRET: SECRET }
    ;[a, b] = await Promise.all([startInstance('A', env), startInstance('B', env)])
    storage = redisStorage({ client: redis, keyPrefix: prefix })
    tb = createTollbooth({ secret: SECRET, storage })
  }, 60_000)

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    await tb?.close()
    await storage?.close?.()
    await deletePrefix(redis, prefix)
    await redis.quit()
  })

  const get = (base: string, key: string) =>
    fetch(`${base}/v1/work`, { headers: { authorization: `Bearer ${key}` } })

  it('admits exactly 100 of 400 concurrent requests on a total quota of 100', async () => {
    const { key } = await tb.keys.create({
      accountId: 'acct_multi',
      limits: { quotas: { total: 100 } },
    })
    const responses = await Promise.all(
      Array.from({ length: 400 }, async (_, i) => {
        const inst = i % 2 === 0 ? a : b
        const res = await get(inst.url, key)
        const body = (await res.json()) as { instance?: string; code?: string }
        return { status: res.status, from: inst.name, body }
      }),
    )
    const ok = responses.filter((r) => r.status === 200)
    expect(ok).toHaveLength(100)
    expect(responses.filter((r) => r.status === 429)).toHaveLength(300)
    expect(new Set(responses.filter((r) => r.status === 429).map((r) => r.body.code))).toEqual(
      new Set(['quota_exceeded']),
    )
    // Each process answered its half (which one wins the race for the quota is timing).
    expect(responses.filter((r) => r.from === 'A')).toHaveLength(200)
    console.log(
      `admitted by A: ${ok.filter((r) => r.from === 'A').length}, by B: ${ok.filter((r) => r.from === 'B').length}`,
    )
    for (const r of ok) expect(r.body.instance).toBe(r.from)

    // Each admitted request is metered once, by whichever process served it.
    let requests = 0
    const until = Date.now() + 10_000
    while (requests < 100 && Date.now() < until) {
      requests = (await storage.usage.summarize('acct_multi', 0, Date.now() + 60_000)).requests
      if (requests < 100) await new Promise((r) => setTimeout(r, 50))
    }
    expect(requests).toBe(100)
  })

  it('refuses a key on B at its next request once A revoked it', async () => {
    const { key, record } = await tb.keys.create({ accountId: 'acct_revoke' })
    expect((await get(a.url, key)).status).toBe(200)
    expect((await get(b.url, key)).status).toBe(200)
    expect((await get(b.url, key)).status).toBe(200)
    const revoked = await fetch(`${a.url}/admin/revoke/${record.id}`, { method: 'POST' })
    expect(revoked.status).toBe(200)
    const next = await get(b.url, key)
    expect(next.status).toBe(401)
    expect(((await next.json()) as { error: string }).error).toBe('Invalid API Key')
    expect((await get(a.url, key)).status).toBe(401)
  })
})
