/**
 * @module test/fault/usage-timeout
 *
 * A usage store that stops answering makes `GET /usage` and `GET /keys/:id/logs` answer 503
 * `storage_unavailable` within the storage timeout, never a 500 and never a hang (issue 20,
 * item 3). Keys and counters stay in memory, usage goes to a redis-server of the test's own,
 * frozen with SIGSTOP: once with a client that has a command timeout (its error used to reach
 * the client as a 500), once with one that waits forever (the request used to hang).
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { RedisOptions } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { managementApi } from '../../adapters/management/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, memoryStorage } from '../../src/index.js'
import { privateStores } from '../support/fault.js'

const TIMEOUT_MS = 300

const servers = privateStores()

describe('a frozen usage store', () => {
  const clientOptions: Array<[string, RedisOptions]> = [
    ['a client with a command timeout', { commandTimeout: 1000, maxRetriesPerRequest: 1 }],
    ['a client that waits forever', {}],
  ]

  it.for(clientOptions)('answers 503 storage_unavailable with %s', async ([, options], ctx) => {
    const redis = await servers.redis(ctx)
    const client = servers.client(redis, options)
    const tb = createTollbooth({
      secret: 'usage-timeout-secret-usage-timeout-secret',
      storage: { ...memoryStorage(), usage: redisStorage({ client, keyPrefix: 'ut:' }).usage },
      storageTimeoutMs: TIMEOUT_MS,
      failedAuth: false,
    })
    const mk = await tb.keys.create({ accountId: 'acct_1', kind: 'management' })
    const ck = await tb.keys.create({ accountId: 'acct_1' })
    const http = serve({ fetch: managementApi(tb).fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => http.once('listening', r))
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
    const get = async (path: string) => {
      const t = performance.now()
      const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${mk.key}` } })
      return { status: res.status, body: await res.json(), ms: performance.now() - t }
    }
    try {
      expect((await get('/usage')).status).toBe(200)
      redis.freeze(true)
      for (const path of ['/usage', `/keys/${ck.record.id}/logs`]) {
        const r = await get(path)
        expect(r.status, path).toBe(503)
        expect(r.body).toEqual({ error: expect.any(String), code: 'storage_unavailable' })
        expect(r.ms).toBeLessThan(TIMEOUT_MS + 700)
      }
      redis.freeze(false)
      await expect.poll(async () => (await get('/usage')).status, { timeout: 5000 }).toBe(200)
    } finally {
      redis.freeze(false)
      await new Promise((r) => http.close(r))
      await tb.close()
    }
  })
})
