/**
 * @module test/multi-instance/redis
 *
 * Two API processes on one Redis, through real HTTP: a quota of 100 admits exactly 100 of 400
 * concurrent requests split across both, usage counts each once, and a key revoked through
 * one process is refused by that process at once and by the other as soon as the change
 * message reaches it (pub/sub: well within a second, where its cache would keep the key for
 * ten minutes), although both had it cached.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { expectQuotaAcrossTwo, work } from '../support/instances.js'
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

  it('admits exactly 100 of 400 concurrent requests on a total quota of 100', async () => {
    const responses = await expectQuotaAcrossTwo([a, b], tb, storage)
    // Each process answered its half (which one wins the race for the quota is timing).
    expect(responses.filter((r) => r.from === 'A')).toHaveLength(200)
  })

  it('refuses a key on B as soon as the change feed tells it A revoked it', async () => {
    const { key, record } = await tb.keys.create({ accountId: 'acct_revoke' })
    expect((await work(a.url, key)).status).toBe(200)
    expect((await work(b.url, key)).status).toBe(200)
    expect((await work(b.url, key)).status).toBe(200)
    const revoked = await fetch(`${a.url}/admin/revoke/${record.id}`, { method: 'POST' })
    expect(revoked.status).toBe(200)
    // The instance that revoked refuses at once.
    expect((await work(a.url, key)).status).toBe(401)
    // B hears of it by pub/sub: PUBLISH answers A once Redis has queued the message for B's
    // subscriber connection, and B's next HTTP request may be read before it (once in many
    // runs on a loaded 2-core machine). Its cache alone would serve the key for ten minutes.
    const started = Date.now()
    let next = await work(b.url, key)
    while (next.status === 200 && Date.now() - started < 2_000) {
      await new Promise((r) => setTimeout(r, 5))
      next = await work(b.url, key)
    }
    expect(next.status).toBe(401)
    expect(((await next.json()) as { error: string }).error).toBe('Invalid API Key')
  })
})
