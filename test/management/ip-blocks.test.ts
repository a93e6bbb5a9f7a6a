/**
 * @module test/management/ip-blocks
 *
 * `/ip-blocks` of the management API over HTTP, on each store (memory, Redis, PostgreSQL):
 * a client blocked by the failed-auth guard shows in the list and by address, only an
 * operator's management key (scope `ip-blocks`) sees or lifts it, and once lifted the client
 * is served again. The app trusts one proxy, so the blocked client is the `X-Forwarded-For`
 * address and the operator, calling from the same socket, is not blocked with it.
 */

import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { managementApi } from '../../adapters/management/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, manualClock, memoryStorage, type Storage } from '../../src/internal.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { closeServer } from '../support/servers.js'
import { call, PREFIXES, SECRET, T0 } from './servers.js'

const redis = await connectRedis()
const pool = skipPostgres ? null : newPool(5)
afterAll(async () => {
  redis?.disconnect()
  await pool?.end()
})

type Made = { storage: Storage; cleanup: () => Promise<void> }
const STORES: Array<[string, (() => Promise<Made>) | null]> = [
  ['memory', async () => ({ storage: memoryStorage(), cleanup: async () => {} })],
  [
    'redis',
    redis &&
      (async () => {
        const prefix = testPrefix('ipblocks')
        const storage = redisStorage({ client: redis, keyPrefix: prefix })
        return {
          storage,
          cleanup: async () => {
            await storage.close?.()
            await deletePrefix(redis, prefix)
          },
        }
      }),
  ],
  [
    'postgres',
    pool &&
      (async () => {
        const { schema, drop } = await freshSchema(pool)
        const storage = postgresStorage({ pool, schema })
        return {
          storage,
          cleanup: async () => {
            await storage.close()
            await drop()
          },
        }
      }),
  ],
]

describe.each(STORES)('/ip-blocks on %s', (_name, make) => {
  let made: Made
  let server: HttpServer
  let url: string
  let ops: string
  let customer: string
  let key: string
  const clock = manualClock(T0)

  beforeEach(async () => {
    made = await make!()
    const tb = createTollbooth({
      secret: SECRET,
      prefixes: PREFIXES,
      clock,
      storage: made.storage,
      failedAuth: { limit: 3, windowMs: 60_000, blockMs: 600_000 },
    })
    const app = new Hono()
    app.route('/v1', managementApi(tb, { trustProxy: 1 }))
    app.get('/v1/ok', requireApiKey(tb, { trustProxy: 1 }), (c) => c.json({ ok: true }))
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as HttpServer
    await new Promise<void>((r) => server.once('listening', () => r()))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const mk = (accountId: string, scopes: string[]) =>
      tb.keys.create({ accountId, kind: 'management', scopes }).then((r) => r.key)
    ops = await mk('acct_ops', ['ip-blocks'])
    customer = await mk('acct_a', [])
    key = (await tb.keys.create({ accountId: 'acct_a' })).key
  })
  afterEach(async () => {
    await closeServer(server)
    await made.cleanup()
  })

  const from = (ip: string) => ({ 'x-forwarded-for': ip })
  const api = (method: string, path: string, token: string) =>
    call(url, method, `/v1${path}`, { token })

  it.skipIf(!make)(
    'shows a blocked client, lifts it for operators only, and serves it again',
    async () => {
      const bad = `${PREFIXES.consumption}${'x'.repeat(40)}`
      const statuses: number[] = []
      for (let i = 0; i < 3; i++)
        statuses.push(
          (await call(url, 'GET', '/v1/ok', { token: bad, headers: from('203.0.113.7') })).status,
        )
      expect(statuses).toEqual([401, 401, 403])
      const refused = await call(url, 'GET', '/v1/ok', { token: key, headers: from('203.0.113.7') })
      expect(refused.status).toBe(403)
      expect(refused.headers.get('retry-after')).toBe('600')

      const until = new Date(T0 + 600_000).toISOString()
      expect((await api('GET', '/ip-blocks', ops)).body).toEqual({
        data: [{ ip: '203.0.113.7', until }],
        nextCursor: null,
      })
      expect((await api('GET', '/ip-blocks/203.0.113.7', ops)).body).toEqual({
        ip: '203.0.113.7',
        blocked: true,
        until,
      })
      expect((await api('GET', '/ip-blocks/203.0.113.8', ops)).body).toEqual({
        ip: '203.0.113.8',
        blocked: false,
        until: null,
      })

      // Not for a customer's management key, a consumption key, or junk addresses.
      for (const [method, path] of [
        ['GET', '/ip-blocks'],
        ['GET', '/ip-blocks/203.0.113.7'],
        ['DELETE', '/ip-blocks/203.0.113.7'],
      ] as const) {
        const r = await api(method, path, customer)
        expect(r.status).toBe(403)
        expect(r.body).toMatchObject({ code: 'forbidden' })
        expect((await api(method, path, key)).status).toBe(403)
      }
      expect((await api('GET', '/ip-blocks/2001:DB8::1', ops)).body).toMatchObject({
        ip: '2001:db8::1',
      })
      for (const notAnIp of ['not-an-ip', 'cafe', '1.2.3', '999.1.1.1']) {
        const junk = await api('GET', `/ip-blocks/${notAnIp}`, ops)
        expect(junk.status, notAnIp).toBe(400)
        expect(junk.body).toMatchObject({ code: 'invalid_request' })
      }
      expect((await api('GET', '/ip-blocks?limit=0', ops)).status).toBe(400)
      expect((await api('GET', '/ip-blocks/203.0.113.7', ops)).body).toMatchObject({
        blocked: true,
      })

      const lifted = await api('DELETE', '/ip-blocks/203.0.113.7', ops)
      expect(lifted.status).toBe(204)
      expect((await api('DELETE', '/ip-blocks/203.0.113.7', ops)).status).toBe(404)
      expect((await api('GET', '/ip-blocks', ops)).body).toEqual({ data: [], nextCursor: null })
      const served = await call(url, 'GET', '/v1/ok', { token: key, headers: from('203.0.113.7') })
      expect(served.status).toBe(200)
    },
  )
})
