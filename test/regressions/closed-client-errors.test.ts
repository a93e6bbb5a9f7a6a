/**
 * @module test/regressions/closed-client-errors
 *
 * What tollbooth says while its storage's client is closed under it (`redis.quit()`,
 * `pool.end()`, `db.close()` before `tb.close()`), in process, on Redis, PostgreSQL and
 * SQLite: `onError` hears it once, as a `StorageUnavailableError` naming the cause and saying
 * to close tollbooth first, however many flushes fail (before: each failure of each timer,
 * with the driver's words: `Connection is closed.`, a ConfigError, `The database connection is
 * not open`); the product's routes and the management API answer 503 `storage_unavailable`
 * (the management API answered 500); `tb.close()` rejects at once naming the event it could
 * not write; the Stripe meter's out-box reports the closed store once too. Closed in the right
 * order (`tb.close()`, then the client) and the instance called since: nothing waits, and the
 * one report says so (it said to call `tb.close()` first, which had been done).
 * `closed-client.test.ts` checks the same as processes (they end by themselves).
 */

import { mkdtempSync, rmSync } from 'node:fs'
import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, test } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { managementApi } from '../../adapters/management/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import {
  createMeterOutbox,
  createTollbooth,
  isTollboothError,
  type Storage,
} from '../../src/internal.js'
import { SECRET } from '../metering/helpers.js'
import { Database } from '../storage/sqlite-driver.js'
import { usageEvent } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, REDIS_URL, testPrefix } from '../support/redis.js'
import { closeServer } from '../support/servers.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A storage on a client of its own, and how to close that client the wrong way. */
interface Made {
  storage: Storage
  closeClient(): Promise<void>
  cause: RegExp
}

const cleanups: Array<() => Promise<void> | void> = []
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const redis = await connectRedis()
const dir = mkdtempSync(join(tmpdir(), 'tollbooth-closed-errors-'))
cleanups.push(() => rmSync(dir, { recursive: true, force: true }))

const stores: Record<string, (() => Promise<Made>) | null> = {
  redis: redis
    ? async () => {
        const prefix = testPrefix('closed')
        cleanups.push(() => deletePrefix(redis, prefix).then(() => undefined))
        const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
        return {
          storage: redisStorage({ client, keyPrefix: prefix }),
          closeClient: async () => {
            await client.quit()
          },
          cause: /tollbooth\/redis: options\.client was closed/,
        }
      }
    : null,
  postgres: skipPostgres
    ? null
    : async () => {
        const admin = newPool(1)
        const { schema, drop } = await freshSchema(admin)
        cleanups.push(async () => {
          await drop()
          await admin.end()
        })
        const pool = newPool(4)
        return {
          storage: postgresStorage({ pool, schema }),
          closeClient: () => pool.end(),
          cause: /tollbooth\/postgres: options\.pool was ended \(pool\.end\(\)\)/,
        }
      },
  sqlite: async () => {
    const db = new Database(join(dir, `${Math.random().toString(36).slice(2)}.db`))
    return {
      storage: sqliteStorage({ database: db }),
      closeClient: async () => {
        db.close()
      },
      cause: /tollbooth\/sqlite: options\.database was closed \(db\.close\(\)\)/,
    }
  },
}
if (redis) cleanups.push(() => redis.disconnect())

/** `tb.close()` on a client closed under it: rejects within a second, with what it says. */
async function closesAtOnce(tb: { close(): Promise<void> }): Promise<Error> {
  const began = Date.now()
  const closed = await tb.close().then(
    () => null,
    (err: Error) => err,
  )
  expect(Date.now() - began).toBeLessThan(1000)
  expect(closed?.name).toBe('StorageUnavailableError')
  return closed!
}

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`the ${name} client closed before tb.close()`, () => {
    test('one report, 503s on every route, and tb.close() rejects at once naming the event', async () => {
      const made = await make!()
      const errors: unknown[] = []
      const tb = createTollbooth({
        secret: SECRET,
        storage: made.storage,
        usage: { flushIntervalMs: 500 },
        onError: (err) => errors.push(err),
      })
      const app = new Hono()
      app.route('/v1', managementApi(tb))
      app.post('/v1/synthesize', requireApiKey(tb, { cost: 0 }), (c) => c.json({ ok: true }))
      const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as HttpServer
      await new Promise<void>((r) => server.once('listening', () => r()))
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
      try {
        const mk = (await tb.keys.create({ accountId: 'acct_1', kind: 'management' })).key
        const used = (await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 5 } })).key
        const fresh = (await tb.keys.create({ accountId: 'acct_1' })).key
        const call = (path: string, key: string, body: unknown = {}) =>
          fetch(`${url}${path}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
          })
        expect((await call('/keys', mk, { name: 'before' })).status).toBe(201)
        expect((await call('/synthesize', used)).status).toBe(200)
        expect(errors).toEqual([])

        // Its usage event still queued (the next flush is up to 500 ms away).
        await made.closeClient()
        // The product's route and the management API: 503, not 500.
        const product = await call('/synthesize', fresh)
        expect(product.status).toBe(503)
        expect(await product.json()).toMatchObject({ code: 'storage_unavailable' })
        const management = await call('/keys', mk, { name: 'after' })
        expect(management.status).toBe(503)
        expect(await management.json()).toEqual({
          error: 'Storage unavailable',
          code: 'storage_unavailable',
        })
        // Flushes fail, by the timer (every 500 ms) and by hand: said once.
        for (let i = 0; i < 3; i++) await expect(tb.flush()).rejects.toThrow()
        await sleep(1200)
        expect(errors, errors.map(String).join('\n')).toHaveLength(1)
        const told = errors[0] as Error
        expect(isTollboothError(told) && told.code).toBe('storage_unavailable')
        expect(told.message).toMatch(made.cause)
        expect(told.message).toMatch(/call `await tb\.close\(\)` first, then close/)

        // The Stripe meter's out-box on the same store, whose every flush fails: told already.
        const meterErrors: unknown[] = []
        const meter = createMeterOutbox(
          tb,
          {
            send: async () => 'delivered',
            retryable: () => true,
          },
          { retryMs: 10, maxRetryMs: 10 },
          (err) => meterErrors.push(err),
        )
        const now = Date.now()
        meter.enqueue([
          usageEvent(0, {
            id: 'evt_closed',
            requestId: 'req_closed',
            keyId: 'key_x',
            time: now,
            units: 5,
            overage: 5,
          }),
        ])
        for (let i = 0; i < 3; i++) await meter.flush()
        await sleep(100)
        expect((await meter.close()).retrying).toBe(1)
        expect(meterErrors, meterErrors.map(String).join('\n')).toEqual([])

        const closed = await closesAtOnce(tb)
        expect(closed.message).toMatch(/^close\(\): 1 usage event\(s\) not written/)
        expect(closed.message).toMatch(made.cause)
        expect(errors).toHaveLength(1)
      } finally {
        await closeServer(server)
      }
    })

    test('tb.close() with a request in flight rejects at once too: no wait for a request whose settle cannot reach the store', async () => {
      const made = await make!()
      const tb = createTollbooth({ secret: SECRET, storage: made.storage, onError: () => {} })
      let release = () => {}
      const handled = new Promise<void>((r) => (release = r))
      const app = new Hono()
      app.post('/v1/long', requireApiKey(tb, { cost: 0 }), async (c) => {
        await handled
        return c.json({ ok: true })
      })
      const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as HttpServer
      await new Promise<void>((r) => server.once('listening', () => r()))
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
      try {
        const { key } = await tb.keys.create({ accountId: 'acct_1' })
        const inFlight = fetch(`${url}/long`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}` },
        }).catch(() => null)
        await sleep(200)
        await made.closeClient()
        // Before: it waited for the request (its default 10 s), as if the store could take
        // its settle.
        await closesAtOnce(tb)
        release()
        await inFlight
      } finally {
        release()
        await closeServer(server)
      }
    })

    test('closed after tb.close(), the instance called since: no wait, and a report that does not say to close tollbooth first', async () => {
      const made = await make!()
      const errors: unknown[] = []
      const tb = createTollbooth({
        secret: SECRET,
        storage: made.storage,
        onError: (err) => errors.push(err),
      })
      const { key } = await tb.keys.create({ accountId: 'acct_1' })
      const request = {
        headers: { authorization: `Bearer ${key}` },
        ip: '127.0.0.1',
        method: 'GET',
        path: '/v1/x',
      }
      const route = tb.route({ cost: 0 })
      const first = await tb.authenticate(request, route)
      expect(first.allowed).toBe(true)
      if (first.allowed) await tb.settle(first, { status: 200 })
      // The right order: tollbooth, then its client.
      await tb.close()
      await made.closeClient()
      const began = Date.now()
      expect(await tb.authenticate(request, route)).toMatchObject({
        allowed: false,
        status: 503,
        code: 'storage_unavailable',
      })
      await expect(tb.keys.create({ accountId: 'acct_2' })).rejects.toThrow()
      await expect(tb.accounts.get('acct_1')).rejects.toThrow()
      await tb.flush()
      await tb.close()
      expect(Date.now() - began).toBeLessThan(1000)
      expect(errors, errors.map(String).join('\n')).toHaveLength(1)
      const told = errors[0] as Error
      expect(isTollboothError(told) && told.code).toBe('storage_unavailable')
      expect(told.message).toMatch(made.cause)
      expect(told.message).toMatch(/after tb\.close\(\)/)
      expect(told.message).not.toMatch(/first/)
    })
  })
