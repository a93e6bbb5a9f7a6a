/**
 * @module test/http/hono
 *
 * The behaviour suite on Hono, served by `@hono/node-server` on 127.0.0.1:0.
 */

import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Hono } from 'hono'
import { streamSSE as honoStreamSSE } from 'hono/streaming'
import { describe, expect, expectTypeOf, test } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { type Admission, ConfigError, createTollbooth } from '../../src/index.js'
import { serveHono } from '../support/servers.js'
import { describeBehaviour } from './behaviour.js'
import { eventually, gate, harness, SECRET } from './harness.js'
import { startHono } from './hono-server.js'
import { describeStreaming } from './streaming.js'

describeBehaviour('Hono', startHono)
describeStreaming('Hono', startHono)

describe('tollbooth/hono', () => {
  test('throws a ConfigError naming a bad option at construction', () => {
    const tb = createTollbooth({ secret: SECRET })
    expect(() => requireApiKey(tb, { trustProxy: -1 })).toThrow(ConfigError)
    expect(() => requireApiKey(tb, { trustProxy: -1 })).toThrow(/trustProxy/)
    // X-Real-IP holds one address: no hops to count past the proxy in front.
    const realIp = { hops: 2, header: 'x-real-ip' } as never
    expect(() => requireApiKey(tb, { trustProxy: realIp })).toThrow(/trustProxy/)
    expect(() => requireApiKey(tb, { trustProxy: { hops: 1, header: 'x-real-ip' } })).not.toThrow()
    expect(() => requireApiKey(tb, { cost: -5 })).toThrow(/cost/)
    expect(() => requireApiKey(tb, { kind: 'admin' as never })).toThrow(/kind/)
  })

  test('names the middleware requireApiKey', () => {
    const tb = createTollbooth({ secret: SECRET })
    expect(requireApiKey(tb).name).toBe('requireApiKey')
  })

  test("types c.get('apiKey') as the Admission", () => {
    const app = new Hono()
    app.get('/', (c) => {
      expectTypeOf(c.get('apiKey')).toEqualTypeOf<Admission>()
      return c.text('')
    })
  })

  test("with Hono's own streamSSE, an abort settles at the stream's cancel, with what was reported by then", async () => {
    // The documented limit: tollbooth cannot see the callback of Hono's own helpers once the
    // stream is cancelled (the streamSSE of tollbooth/hono waits for it, see the streaming suite).
    const windDown = gate()
    let stopped = false
    const h = await harness(
      async (tb) => {
        const app = new Hono()
        app.get('/v1/own', requireApiKey(tb, { cost: 100 }), (c) =>
          honoStreamSSE(c, async (s) => {
            c.get('apiKey').report({ cost: 1 })
            for (let i = 0; i < 20 && !s.aborted; i++) {
              await s.writeSSE({ data: String(i) })
              await s.sleep(10)
            }
            stopped = true
            await windDown.promise
            c.get('apiKey').report({ cost: 9 })
          }),
        )
        return serveHono(app)
      },
      [],
      { plans: { pro: { monthlyCredits: 1000 } }, defaultTier: 'pro' },
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      const ac = new AbortController()
      const res = await fetch(`${h.url}/v1/own`, {
        headers: { authorization: `Bearer ${key}` },
        signal: ac.signal,
      })
      await res.body!.getReader().read()
      ac.abort()
      await eventually(() => stopped && !!h.settled[0]?.event, 'the request to settle')
      expect(h.settled[0]!.event).toMatchObject({ status: 499, units: 1 })
      windDown.open()
      await new Promise((r) => setTimeout(r, 20))
      expect(h.settled).toHaveLength(1)
    } finally {
      await h.close()
    }
  })

  test('adds its headers to a proxied fetch() response, whose headers are immutable', async () => {
    const upstream = createServer((_req, res) => res.end('{"upstream":true}'))
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    const h = await harness(
      async (tb, routes) => {
        const app = new Hono()
        app.get('/v1/proxy', requireApiKey(tb), async (c) => {
          await routes[0]!.handle(c.get('apiKey'))
          return fetch(origin)
        })
        return serveHono(app)
      },
      [{ path: '/v1/proxy', handle: () => ({}) }],
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      const res = await h.fetch('/v1/proxy', { key })
      expect(res.status).toBe(200)
      expect(res.body).toEqual({ upstream: true })
      expect(res.headers.get('x-request-id')).toMatch(/^req_/)
      expect(h.settled.map((s) => s.status)).toEqual([200])
    } finally {
      await h.close()
      await new Promise((r) => upstream.close(r))
    }
  })

  // `new Response(stream)` with no init (an upstream's body passed on as it is):
  // @hono/node-server's own Response keeps no init then, and one built on it as the init of
  // another threw ("Cannot read properties of undefined (reading 'headers')"): the guard
  // turned every such response into a 500, and the stream was never read nor cancelled.
  test('passes on a streamed body given without an init (new Response(stream))', async () => {
    let cancelled = false
    const h = await harness(
      async (tb, routes) => {
        const app = new Hono()
        app.get('/v1/raw', requireApiKey(tb, { cost: 3 }), async (c) => {
          await routes[0]!.handle(c.get('apiKey'))
          let sent = 0
          const body = new ReadableStream<Uint8Array>({
            pull(controller) {
              if (sent === 3) controller.close()
              else controller.enqueue(new TextEncoder().encode(`data: ${sent++}\n\n`))
            },
            cancel() {
              cancelled = true
            },
          })
          return new Response(body)
        })
        return serveHono(app)
      },
      [{ path: '/v1/raw', handle: (k) => k.report({ cost: 2 }) }],
      { plans: { pro: { monthlyCredits: 100 } }, defaultTier: 'pro' },
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      const res = await h.fetch('/v1/raw', { key })
      expect(res.status).toBe(200)
      expect(res.text).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n')
      expect(res.headers.get('x-usage-current')).toBe('2')
      await eventually(() => !!h.settled[0]?.event, 'settle')
      expect(h.settled[0]!.event).toMatchObject({ status: 200, units: 2 })
      expect(cancelled).toBe(false)
    } finally {
      await h.close()
    }
  })
})
