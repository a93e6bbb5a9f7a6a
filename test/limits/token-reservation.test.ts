/**
 * @module test/limits/token-reservation
 *
 * Issue 20 item 11: a token-rate limit checked only for room let 1,000 concurrent requests
 * of 100 tokens through a 1,000 tpm limit (485-575 served). With the route option `tokens`,
 * each admission reserves its estimate, so at most `limit / estimate` run at once, and settle
 * trues the count up to what the handler reports. Checked on the memory store, on Redis
 * (real concurrency against a shared server) and over HTTP with Hono.
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { afterAll, describe, expect, it } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { type Admission, createTollbooth, memoryStorage, type Storage } from '../../src/index.js'
import { readHeader } from '../../src/request.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { MINUTE, req, SECRET, setup, T0 } from './setup.js'

const TPM = { rateLimits: [{ limit: 1000, windowMs: MINUTE, unit: 'tokens' as const }] }

describe('token limits reserve the route estimate', () => {
  it('admits at most 10 of 1,000 concurrent requests of 100 tokens on 1,000 tpm', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_t', limits: TPM })
    const route = tb.route({ tokens: 100 })
    const ds = await Promise.all(
      Array.from({ length: 1000 }, () => tb.authenticate(req(key), route)),
    )
    const ok = ds.filter((d) => d.allowed) as Admission[]
    expect(ok).toHaveLength(10)
    for (const d of ds.filter((x) => !x.allowed))
      expect(d).toMatchObject({ status: 429, code: 'rate_limited' })
    // Each used 40 of its 100: 600 come back, room for 6 more.
    for (const d of ok) await tb.settle(d, { status: 200, tokens: 40 })
    const more = await Promise.all(
      Array.from({ length: 50 }, () => tb.authenticate(req(key), route)),
    )
    expect(more.filter((d) => d.allowed)).toHaveLength(6)
  })

  it('counts a report above the estimate in full, and keeps the estimate when none is reported', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_t', limits: TPM })
    const route = tb.route({ tokens: (r) => Number(readHeader(r.headers, 'x-max-tokens') ?? 100) })
    const big = await tb.authenticate(
      { ...req(key), headers: { ...req(key).headers, 'x-max-tokens': '300' } },
      route,
    )
    expect(big.allowed).toBe(true)
    await tb.settle(big, { status: 200, tokens: 700 })
    const quiet = await tb.authenticate(req(key), route)
    await tb.settle(quiet, { status: 200 })
    // 700 + 100 = 800 counted: two more of 100, not three.
    const ds = await Promise.all(Array.from({ length: 5 }, () => tb.authenticate(req(key), route)))
    expect(ds.filter((d) => d.allowed)).toHaveLength(2)
    expect(clock.now()).toBe(T0)
    // A bad estimate names the route option and holds nothing.
    const bad = tb.route({ tokens: () => -1 })
    await expect(tb.authenticate(req(key), bad)).rejects.toThrow(
      /tb\.route: options\.tokens\(request\) must return/,
    )
    expect(() => tb.route({ tokens: -5 })).toThrow(/tb\.route: options\.tokens/)
  })
})

const redis = await connectRedis()

describe.skipIf(!redis)('token limits on Redis', () => {
  const prefix = testPrefix('tokens')
  afterAll(async () => {
    await deletePrefix(redis!, prefix)
    redis!.disconnect()
  })

  it('admits at most 10 of 1,000 concurrent requests of 100 tokens on 1,000 tpm', async () => {
    const storage: Storage = {
      ...memoryStorage(),
      counters: redisStorage({ client: redis!, keyPrefix: prefix }).counters,
    }
    const tb = createTollbooth({ secret: SECRET, storage, failedAuth: false })
    const { key } = await tb.keys.create({ accountId: 'acct_r', limits: TPM })
    const route = tb.route({ tokens: 100 })
    const ds = await Promise.all(
      Array.from({ length: 1000 }, () => tb.authenticate(req(key), route)),
    )
    const ok = ds.filter((d) => d.allowed)
    // The bucket drains 1,000 tokens a minute: a run of a second may free one more.
    expect(ok.length).toBeGreaterThanOrEqual(10)
    expect(ok.length).toBeLessThanOrEqual(11)
    expect(ds.every((d) => d.allowed || d.status === 429 || d.status === 503)).toBe(true)
    await tb.close()
  })
})

describe('token limits over HTTP (Hono)', () => {
  it('serves at most 10 of 1,000 concurrent requests of 100 estimated tokens on 1,000 tpm', async () => {
    const tb = createTollbooth({ secret: SECRET, failedAuth: false })
    const { key } = await tb.keys.create({ accountId: 'acct_h', limits: TPM })
    const app = new Hono()
    app.post(
      '/v1/chat',
      requireApiKey(tb, {
        tokens: (r) => Number(readHeader(r.headers, 'x-max-tokens') ?? 0),
      }),
      async (c) => {
        // The handler takes a while, as an upstream model would: all 1,000 are in flight.
        await new Promise((r) => setTimeout(r, 50))
        c.get('apiKey').report({ tokens: 100 })
        return c.json({ ok: true })
      },
    )
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s))
    })
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat`
    try {
      const statuses = await Promise.all(
        Array.from({ length: 1000 }, () =>
          fetch(url, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'x-max-tokens': '100' },
          }).then(async (r) => {
            await r.arrayBuffer()
            return r.status
          }),
        ),
      )
      const served = statuses.filter((s) => s === 200).length
      expect(served).toBeGreaterThanOrEqual(10)
      expect(served).toBeLessThanOrEqual(11)
      expect(statuses.filter((s) => s === 429)).toHaveLength(1000 - served)
    } finally {
      await tb.close()
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
      })
    }
  }, 60_000)
})
