/**
 * The management API mounted after the product's `requireApiKey` on Hono: every request to a
 * management route would go through the consumption guard first, and each key kind be told to
 * use the other. tollbooth/hono detects it on the first such request and fails it with a
 * ConfigError that says how to order them; in the right order, both kinds work. Real HTTP
 * through @hono/node-server.
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { describe, expect, test } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { managementApi } from '../../adapters/management/index.js'
import { ConfigError, createTollbooth, type Tollbooth } from '../../src/index.js'

const SECRET = 'guard-order-secret-guard-order-secret'

async function listen(app: Hono): Promise<{ base: string; close(): Promise<void> }> {
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s))
  })
  const { port } = server.address() as AddressInfo
  return {
    base: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((done) => server.close(() => done())),
  }
}

async function keys(tb: Tollbooth) {
  const consumption = (await tb.keys.create({ accountId: 'acct_a' })).key
  const management = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
  return { consumption, management }
}

/** Answers thrown errors as JSON and keeps them, as an app's own onError would. */
function withErrors(app: Hono, errors: unknown[]): Hono {
  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse()
    errors.push(err)
    return c.json({ error: 'Internal Server Error' }, 500)
  })
  return app
}

describe('tollbooth/hono: the management API and requireApiKey', () => {
  test('mounted after the guard: a ConfigError that says how to order them, for both kinds', async () => {
    const tb = createTollbooth({ secret: SECRET })
    const errors: unknown[] = []
    const app = withErrors(new Hono(), errors)
    app.use('/v1/*', requireApiKey(tb))
    app.get('/v1/chat', (c) => c.json({ ok: true }))
    app.route('/v1', managementApi(tb))
    const { consumption, management } = await keys(tb)
    const server = await listen(app)
    try {
      for (const key of [management, consumption]) {
        const res = await fetch(`${server.base}/v1/keys`, {
          headers: { authorization: `Bearer ${key}` },
        })
        expect(res.status).toBe(500)
        await res.body?.cancel()
      }
      expect(errors).toHaveLength(2)
      for (const err of errors) {
        expect(err).toBeInstanceOf(ConfigError)
        expect((err as Error).message).toMatch(
          /runs before the management API route GET \/v1\/keys/,
        )
        expect((err as Error).message).toMatch(/Mount the management API first/)
      }
      // The product's own routes are not concerned.
      const chat = await fetch(`${server.base}/v1/chat`, {
        headers: { authorization: `Bearer ${consumption}` },
      })
      expect(chat.status).toBe(200)
      await chat.body?.cancel()
      expect(errors).toHaveLength(2)
    } finally {
      await server.close()
    }
  })

  test('mounted before the guard: management keys manage, consumption keys consume', async () => {
    const tb = createTollbooth({ secret: SECRET })
    const errors: unknown[] = []
    const app = withErrors(new Hono(), errors)
    app.route('/v1', managementApi(tb))
    app.use('/v1/*', requireApiKey(tb))
    app.get('/v1/chat', (c) => c.json({ ok: true }))
    const { consumption, management } = await keys(tb)
    const server = await listen(app)
    try {
      const list = await fetch(`${server.base}/v1/keys`, {
        headers: { authorization: `Bearer ${management}` },
      })
      expect(list.status).toBe(200)
      await list.body?.cancel()
      const chat = await fetch(`${server.base}/v1/chat`, {
        headers: { authorization: `Bearer ${consumption}` },
      })
      expect(chat.status).toBe(200)
      await chat.body?.cancel()
      expect(errors).toEqual([])
    } finally {
      await server.close()
    }
  })
})
