/**
 * @module test/http/fastify
 *
 * The behaviour suite on Fastify 5, twice: routes guarded by the plugin through
 * `config.tollbooth`, and routes with `requireApiKey` as their preHandler. Then what is
 * Fastify's own: `global`, `config.tollbooth: false`, HEAD routes, and option errors.
 */

import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import Fastify, {
  type FastifyContextConfig,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify'
import { describe, expect, expectTypeOf, test } from 'vitest'
import { requireApiKey, tollbooth } from '../../adapters/fastify/index.js'
import {
  type Admission,
  ConfigError,
  createTollbooth,
  memoryStorage,
  type RouteOptions,
  type Tollbooth,
} from '../../src/index.js'
import { serveFastify } from '../support/servers.js'
import { expectBrokenOff, expectSettled, oneSlotKey, PRO } from '../support/settled-response.js'
import { describeBehaviour, type StartServer, type TestRoute } from './behaviour.js'
import { eventually, gate, harness, SECRET, sleep, slowKeys } from './harness.js'
import { describeStreaming } from './streaming.js'

/** Serves `app` on 127.0.0.1:0; closing drops connections a client abandoned mid-stream. */
const listen = (app: FastifyInstance) => serveFastify(app)

/**
 * A Fastify app with the plugin registered, the routes `route` adds, and `GET /v1/ok`
 * (guarded, cost 1), served by `listen`.
 */
function guardedFastify(
  route: (app: FastifyInstance, tb: Tollbooth, routes: TestRoute[]) => void,
  options: FastifyServerOptions = {},
): StartServer {
  return async (tb, routes) => {
    const app = Fastify(options)
    await app.register(tollbooth, { tb })
    route(app, tb, routes)
    app.get('/v1/ok', { preHandler: requireApiKey(tb) }, async () => ({}))
    return listen(app)
  }
}

/**
 * `GET /v1/broken` (guarded at cost 5) on {@link guardedFastify}: runs its route, then
 * `breakOff` answers in a way that breaks the response off after its head.
 */
const brokenFastify = (breakOff: (reply: FastifyReply) => unknown) =>
  guardedFastify((app, tb, routes) => {
    app.get(
      '/v1/broken',
      { preHandler: requireApiKey(tb, { cost: 5 }) },
      async (request, reply) => {
        await routes[0]!.handle(request.apiKey)
        return breakOff(reply)
      },
    )
  })

/**
 * Writes server-sent events on `raw` every 10 ms until the client goes away; then runs the
 * route's `handle` with how far it got, and only after it ends `raw`.
 */
function abortableEvents(raw: ServerResponse, route: TestRoute, apiKey: Admission): void {
  raw.writeHead(200, { 'content-type': 'text/event-stream' })
  let sent = 0
  const timer = setInterval(() => raw.write(`data: ${sent++}\n\n`), 10)
  raw.on('close', () => {
    clearInterval(timer)
    void Promise.resolve(route.handle(apiKey, { sent, aborted: true })).then(() => raw.end())
  })
}

import { startWithConfig, startWithPreHandler } from './fastify-server.js'

describeBehaviour('Fastify (plugin, config.tollbooth)', startWithConfig)
describeBehaviour('Fastify (requireApiKey preHandler)', startWithPreHandler)
describeStreaming('Fastify (plugin, config.tollbooth)', startWithConfig)
describeStreaming('Fastify (requireApiKey preHandler)', startWithPreHandler)

describe('tollbooth/fastify', () => {
  test('types request.apiKey, fastify.tollbooth and config.tollbooth', () => {
    expectTypeOf<FastifyRequest['apiKey']>().toEqualTypeOf<Admission>()
    expectTypeOf<FastifyInstance['tollbooth']>().toEqualTypeOf<Tollbooth>()
    expectTypeOf<FastifyContextConfig['tollbooth']>().toEqualTypeOf<
      RouteOptions | false | undefined
    >()
  })

  test('fastify.requireApiKey() guards a route with the plugin options as defaults', async () => {
    const h = await harness(
      async (tb, routes) => {
        const app = Fastify()
        await app.register(tollbooth, { tb, category: 'tts', scopes: ['tts'] })
        app.get('/v1/a', { preHandler: app.requireApiKey({ category: 'stt' }) }, async (request) =>
          routes[0]!.handle(request.apiKey),
        )
        return listen(app)
      },
      [{ path: '/v1/a', handle: () => ({}) }],
    )
    try {
      const plain = (await h.tb.keys.create({ accountId: 'acct_1' })).key
      const scoped = (await h.tb.keys.create({ accountId: 'acct_1', scopes: ['tts'] })).key
      expect((await h.fetch('/v1/a', { key: plain })).status).toBe(403)
      expect((await h.fetch('/v1/a', { key: scoped })).status).toBe(200)
      expect(h.handled).toHaveLength(1)
      await eventually(() => h.settled.filter((s) => s.event).length === 1, 'settle')
      expect(h.settled.map((s) => s.event?.category)).toEqual(['stt'])
    } finally {
      await h.close()
    }
  })

  test('global guards every route but those with config.tollbooth false', async () => {
    const h = await harness(
      async (tb, routes) => {
        const app = Fastify()
        await app.register(tollbooth, { tb, global: true, category: 'tts' })
        app.get('/v1/a', async (request) => routes[0]!.handle(request.apiKey))
        app.get('/health', { config: { tollbooth: false } }, async () => ({ up: true }))
        return listen(app)
      },
      [{ path: '/v1/a', handle: (k) => ({ id: k.key.id }) }],
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      expect((await h.fetch('/v1/a')).status).toBe(401)
      expect(h.handled).toHaveLength(0)
      expect((await h.fetch('/health')).body).toEqual({ up: true })
      const res = await h.fetch('/v1/a', { key })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-request-id')).toMatch(/^req_/)
      const head = await h.fetch('/v1/a', { key, method: 'HEAD' })
      expect(head.status).toBe(200)
      expect((await h.fetch('/v1/a', { method: 'HEAD' })).status).toBe(401)
      await eventually(() => h.settled.filter((s) => s.event).length === 2, 'settle')
      expect(h.settled.map((s) => s.event?.category)).toEqual(['tts', 'tts'])
    } finally {
      await h.close()
    }
  })

  test('a returned web ReadableStream: an abort settles once its cancel has finished', async () => {
    const windDown = gate()
    let cancelled = false
    const h = await harness(
      async (tb, routes) => {
        const app = Fastify()
        await app.register(tollbooth, { tb })
        app.get('/v1/web', { config: { tollbooth: { cost: 100 } } }, async (request, reply) => {
          const apiKey = request.apiKey
          let sent = 0
          const body = new ReadableStream<Uint8Array>({
            async pull(controller) {
              if (sent > 0) await sleep(10)
              controller.enqueue(new TextEncoder().encode(`data: ${sent++}\n\n`))
            },
            async cancel() {
              cancelled = true
              await windDown.promise
              await routes[0]!.handle(apiKey)
            },
          })
          return reply.type('text/event-stream').send(body)
        })
        app.get('/v1/ok', { config: { tollbooth: {} } }, async (request) =>
          routes[1]!.handle(request.apiKey),
        )
        return listen(app)
      },
      [
        { path: '/v1/web', handle: (k) => k.report({ cost: 7 }) },
        { path: '/v1/ok', handle: () => ({}) },
      ],
      { plans: { pro: { monthlyCredits: 1000 } }, defaultTier: 'pro' },
    )
    try {
      const key = await oneSlotKey(h)
      const auth = { authorization: `Bearer ${key}` }
      const ac = new AbortController()
      const res = await fetch(`${h.url}/v1/web`, { headers: auth, signal: ac.signal })
      const reader = res.body!.getReader()
      await reader.read()
      ac.abort()
      await eventually(() => cancelled, 'the body to be cancelled')
      expect((await h.fetch('/v1/ok', { key })).status).toBe(429)
      expect(h.settled).toHaveLength(0)
      windDown.open()
      await eventually(() => !!h.settled[0]?.event, 'the aborted request to settle')
      expect(h.settled[0]!.event).toMatchObject({ path: '/v1/web', status: 499, units: 7 })
      expect((await h.fetch('/v1/ok', { key })).status).toBe(200)
      await eventually(() => h.settled.length === 2, 'settle')
      expect(h.settled.filter((s) => s.event?.path === '/v1/web')).toHaveLength(1)
    } finally {
      await h.close()
    }
  })

  test('throws a ConfigError naming a bad option at registration and route registration', async () => {
    const tb = createTollbooth({ secret: SECRET })
    expect(() => requireApiKey(tb, { trustProxy: 0 })).toThrow(ConfigError)
    const bad = Fastify()
    await expect(bad.register(tollbooth, { tb, cost: -1 })).rejects.toThrow(/cost/)
    const noTb = Fastify()
    await expect(noTb.register(tollbooth, {} as never)).rejects.toThrow(/options\.tb/)
    const badRoute = Fastify()
    await badRoute.register(tollbooth, { tb })
    expect(() =>
      badRoute.get('/x', { config: { tollbooth: { scopes: 'a' as never } } }, async () => ({})),
    ).toThrow(/scopes/)
    await Promise.all([bad.close(), noTb.close(), badRoute.close()])
  })

  test('fails at ready() naming the plugin when requireApiKey is used without it', async () => {
    const tb = createTollbooth({ secret: SECRET })
    const message = /tollbooth plugin is not registered.*await app\.register\(tollbooth, \{ tb \}\)/
    // No plugin at all, the guard alone or in a list.
    const none = Fastify()
    none.get('/x', { preHandler: requireApiKey(tb) }, async () => ({}))
    none.get('/y', { preHandler: [async () => {}, requireApiKey(tb)] }, async () => ({}))
    await expect(none.ready()).rejects.toThrow(message)
    await expect(none.ready()).rejects.toBeInstanceOf(ConfigError)
    // The plugin registered after the route: the route was declared unguarded.
    const late = Fastify()
    late.get('/x', { preHandler: requireApiKey(tb) }, async () => ({}))
    late.register(tollbooth, { tb })
    await expect(late.ready()).rejects.toThrow(message)
    // Registered first, the same route boots and guards.
    const good = Fastify()
    await good.register(tollbooth, { tb })
    good.get('/x', { preHandler: requireApiKey(tb) }, async () => ({}))
    await good.ready()
    expect((await good.inject({ url: '/x' })).json()).toEqual({
      error: 'Missing API Key',
      code: 'missing_api_key',
    })
    await Promise.all([none.close().catch(() => {}), late.close().catch(() => {}), good.close()])
  })
})

describe('tollbooth/fastify: a response this server broke off', () => {
  // A handler that throws after writing to `reply.raw` (the head is sent: Fastify cannot answer
  // the error, and ends the connection) settles as a failed response (500, not billed), as on
  // Express and Hono, not as a client gone away (499, billing what the handler reported).
  test('settles a handler that throws after reply.raw.write at once (500, not billed)', async () => {
    await expectBrokenOff(
      brokenFastify(async (reply) => {
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
        reply.raw.write('data: 0\n\n')
        await new Promise((r) => setImmediate(r))
        throw new Error('failed half-way')
      }),
      { bodyFails: false },
    )
  })
})

describe('tollbooth/fastify: a returned stream that fails half-way', () => {
  // Fastify destroys the response when the stream it sends fails after the head: a failed
  // response (500, not billed), as a web ReadableStream's failure, and as a `pipeline` whose
  // upstream fails on Express. A Node Readable's failure was taken for a client gone away
  // (499, what the handler reported billed).
  test.each([
    ['a Node Readable', 'node'],
    ['a web ReadableStream', 'web'],
  ] as const)('settles %s that fails half-way at once (500, not billed)', async (_, kind) => {
    await expectBrokenOff(
      brokenFastify((reply) => {
        reply.type('text/event-stream')
        if (kind === 'node') {
          const upstream = new Readable({ read() {} })
          upstream.push('data: 0\n\n')
          setTimeout(() => upstream.destroy(new Error('upstream failed')), 20)
          return reply.send(upstream)
        }
        let pulls = 0
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (pulls++ === 0) c.enqueue(new TextEncoder().encode('data: 0\n\n'))
            else {
              await sleep(20)
              c.error(new Error('upstream failed'))
            }
          },
        })
        return reply.send(body)
      }),
      { bodyFails: false },
    )
  })
})

describe('tollbooth/fastify: reply.hijack()', () => {
  // A handler that takes the response over (`reply.hijack()`, then `reply.raw`) gets no onSend:
  // its head went out without X-Request-Id and the usage headers, and a client that left was
  // never seen to be done with (its handler's end was never told), so the request held its
  // credits and its concurrency slot until `abortSettleMs` (5 minutes by default).
  test('a hijacked reply: the usage headers in its head; an abort settles when the handler ends reply.raw', async () => {
    const h = await harness(
      guardedFastify((app, tb, routes) => {
        const guard = requireApiKey(tb, { cost: 5, abortSettleMs: 60_000 })
        app.get('/v1/raw', { preHandler: guard }, async (request, reply) => {
          reply.hijack()
          await routes[0]!.handle(request.apiKey)
          reply.raw.writeHead(200, { 'content-type': 'text/plain' })
          reply.raw.end('raw')
        })
        app.get('/v1/events', { preHandler: guard }, async (request, reply) => {
          reply.hijack()
          abortableEvents(reply.raw, routes[1]!, request.apiKey)
        })
      }),
      [
        { path: '/v1/raw', handle: (k) => k.report({ cost: 2 }) },
        { path: '/v1/events', handle: (k) => k.report({ cost: 1 }) },
      ],
      PRO,
    )
    try {
      const key = await oneSlotKey(h)
      const headers = { authorization: `Bearer ${key}` }
      const res = await fetch(`${h.url}/v1/raw`, { headers })
      expect(await res.text()).toBe('raw')
      expect(res.headers.get('x-request-id')).toMatch(/^req_/)
      // After the 2 credits the handler reported.
      expect(res.headers.get('x-usage-current')).toBe('2')
      expect(res.headers.get('x-usage-remaining')).toBe('98')
      await eventually(() => h.settled.length === 1, 'the hijacked response to settle')

      const ac = new AbortController()
      const stream = await fetch(`${h.url}/v1/events`, { headers, signal: ac.signal })
      expect(stream.headers.get('x-request-id')).toMatch(/^req_/)
      const reader = stream.body!.getReader()
      await reader.read()
      ac.abort()
      await expectSettled(h, key, {
        index: 1,
        what: 'the aborted hijacked response to settle',
        event: { status: 499, units: 1 },
        used: 3,
      })
    } finally {
      await h.close()
    }
  })

  // The same stream written on reply.raw without reply.hijack() (the handler never sends):
  // no onSend either, so a client that left was settled only at `abortSettleMs`.
  test('reply.raw written without hijack: an abort settles when the handler ends reply.raw', async () => {
    const h = await harness(
      guardedFastify((app, tb, routes) => {
        const guard = requireApiKey(tb, { cost: 5, abortSettleMs: 60_000 })
        app.get('/v1/events', { preHandler: guard }, (request, reply) => {
          abortableEvents(reply.raw, routes[0]!, request.apiKey)
        })
      }),
      [{ path: '/v1/events', handle: (k) => k.report({ cost: 1 }) }],
      PRO,
    )
    try {
      const key = await oneSlotKey(h)
      const ac = new AbortController()
      const stream = await fetch(`${h.url}/v1/events`, {
        headers: { authorization: `Bearer ${key}` },
        signal: ac.signal,
      })
      await stream.body!.getReader().read()
      ac.abort()
      await expectSettled(h, key, {
        what: 'the aborted response to settle',
        event: { status: 499, units: 1 },
        used: 1,
      })
    } finally {
      await h.close()
    }
  })
})

describe('tollbooth/fastify: fastify.inject()', () => {
  // light-my-request's response emits `close` before its stand-in socket has taken the bytes,
  // so `writableFinished` is false there: every injected request settled as a client gone
  // away (499 aborted, the route's cost refunded), the way Fastify's own docs test an app.
  test('settles an injected request with its status and charges it', async () => {
    const tb = createTollbooth({
      secret: SECRET,
      plans: { pro: { monthlyCredits: 100 } },
      defaultTier: 'pro',
    })
    const statuses: number[] = []
    const settle = tb.settleLater
    tb.settleLater = (decision, outcome) => {
      statuses.push(outcome.status)
      settle.call(tb, decision, outcome)
    }
    const app = Fastify()
    await app.register(tollbooth, { tb })
    app.get('/v1/ok', { preHandler: requireApiKey(tb, { cost: 3 }) }, async () => ({ ok: true }))
    try {
      const { key } = await tb.keys.create({ accountId: 'acct_1' })
      const res = await app.inject({ url: '/v1/ok', headers: { authorization: `Bearer ${key}` } })
      expect(res.statusCode).toBe(200)
      expect(res.headers['x-usage-current']).toBe('3')
      await eventually(() => statuses.length === 1, 'the injected request to settle')
      expect(statuses).toEqual([200])
      await tb.flush()
      expect((await tb.accounts.get('acct_1')).credits.used).toBe(3)
    } finally {
      await app.close()
      await tb.close()
    }
  })
})

describe('tollbooth/fastify: a reply sent in front while the admission was in flight', () => {
  // A hook in front may answer while the store's round trip is in flight (a request timeout's
  // 503 sent from a timer an onRequest hook set, as connect-timeout does on Express, where
  // this threw ERR_HTTP_HEADERS_SENT unhandled). On Fastify the admission is settled once, with
  // the status that went out (not billed), its hold and slot given back, nothing thrown or
  // unhandled. A denial was sent on the sent reply: Fastify logged FST_ERR_REP_ALREADY_SENT
  // at warn, blaming the route, and `reply.code()` set the response's statusCode to 403.
  /** What the hook in front does 5 ms in: the two ways a Fastify app answers. */
  const answers: Record<string, (reply: FastifyReply) => void> = {
    'reply.send()': (reply) => void reply.code(503).send({ error: 'timed out' }),
    'reply.hijack() and reply.raw': (reply) => {
      reply.hijack()
      reply.raw.writeHead(503, { 'content-type': 'application/json' })
      reply.raw.end(JSON.stringify({ error: 'timed out' }))
    },
  }
  test.each(
    Object.keys(answers).flatMap((how) => [
      ['admitted', how, [] as string[]] as const,
      ['denied', how, ['admin']] as const,
    ]),
  )(
    '%s, %s: no rejection, the front answer stands, settled with its status',
    async (_, how, scopes) => {
      const rejections: unknown[] = []
      const onRejection = (err: unknown) => rejections.push(err)
      process.on('unhandledRejection', onRejection)
      let ran = 0
      // What Fastify logs at warn and above (a reply sent twice, an error).
      const logged: Array<{ msg?: string; err?: { code?: string } }> = []
      const stream = { write: (line: string) => logged.push(JSON.parse(line)) }
      let raw: ServerResponse | undefined
      const h = await harness(
        guardedFastify(
          (app, tb) => {
            app.addHook('onRequest', (request, reply, done) => {
              if (request.url !== '/v1/slow') return done()
              raw = reply.raw
              setTimeout(() => {
                if (!reply.sent) answers[how]!(reply)
              }, 5)
              done()
            })
            app.get(
              '/v1/slow',
              { preHandler: requireApiKey(tb, { cost: 5, scopes: [...scopes] }) },
              async () => {
                ran++
                return { ok: true }
              },
            )
          },
          { logger: { level: 'warn', stream } },
        ),
        [],
        { storage: slowKeys(memoryStorage()), ...PRO },
      )
      try {
        const key = await oneSlotKey(h)
        const res = await h.fetch('/v1/slow', { key })
        expect(res.status).toBe(503)
        expect(res.body).toEqual({ error: 'timed out' })
        if (scopes.length === 0) {
          await expectSettled(h, key, {
            what: 'the admission to settle',
            event: { status: 503, units: 0 },
            used: 0,
          })
        } else expect((await h.fetch('/v1/ok', { key })).status).toBe(200)
        // Fastify runs no handler for a reply already sent.
        expect(ran).toBe(0)
        await sleep(50)
        expect(rejections).toEqual([])
        expect(h.settled.map((s) => s.status)).toEqual(scopes.length === 0 ? [503, 200] : [200])
        // A denial adds nothing to the answer sent: no status of its own on the response (what
        // a logger reads at its end), no second send (Fastify warns "Reply was already sent,
        // did you forget to return reply", blaming the route).
        expect(logged.map((l) => l.err?.code ?? l.msg)).toEqual([])
        expect(raw!.statusCode).toBe(503)
      } finally {
        process.off('unhandledRejection', onRejection)
        await h.close()
      }
    },
  )
})
