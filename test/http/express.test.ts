/**
 * @module test/http/express
 *
 * The behaviour suite on Express 5 (and on Express 4 under `vitest.express4.config.ts`), on
 * 127.0.0.1:0, plus what is Express's own: mounting under `app.use(path, …)` and on a Router
 * keeps the full path.
 */

import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { pipeline, Readable } from 'node:stream'
import express, { type Request } from 'express'
import { afterAll, beforeAll, describe, expect, expectTypeOf, test } from 'vitest'
import { requireApiKey } from '../../adapters/express/index.js'
import { type Admission, ConfigError, createTollbooth, memoryStorage } from '../../src/index.js'
import { listening, serveExpress } from '../support/servers.js'
import { expectBrokenOff, expectSettled, oneSlotKey, PRO } from '../support/settled-response.js'
import { describeBehaviour } from './behaviour.js'
import { asyncHandler, EXPRESS_MAJOR, planned, startExpress } from './express-server.js'
import { eventually, gate, harness, SECRET, sleep, slowKeys } from './harness.js'
import { describeStreaming } from './streaming.js'

describeBehaviour('Express', startExpress)
describeStreaming('Express', startExpress)

describe('tollbooth/express', () => {
  // Fails if the alias stops applying, so the Express 4 run cannot silently test Express 5.
  test('runs on the Express major asked for', () => {
    expect(String(EXPRESS_MAJOR)).toBe(process.env['TOLLBOOTH_EXPRESS_MAJOR'] ?? '5')
  })

  test('throws a ConfigError naming a bad option at construction', () => {
    const tb = createTollbooth({ secret: SECRET })
    expect(() => requireApiKey(tb, { trustProxy: 'yes' as never })).toThrow(ConfigError)
    expect(() => requireApiKey(tb, { trustProxy: 'yes' as never })).toThrow(/trustProxy/)
    expect(() => requireApiKey(tb, { quotaStatus: 500 as never })).toThrow(/quotaStatus/)
  })

  test('names the middleware requireApiKey', () => {
    expect(requireApiKey(createTollbooth({ secret: SECRET })).name).toBe('requireApiKey')
  })

  test('types req.apiKey as the Admission', () => {
    expectTypeOf<Request['apiKey']>().toEqualTypeOf<Admission>()
  })

  test('keeps the full path when mounted with app.use and on a Router', async () => {
    const h = await harness(
      async (tb, routes) => {
        const app = express()
        const router = express.Router()
        router.use(requireApiKey(tb, { category: 'tts' }))
        router.get('/speak', async (req, res) => {
          res.json(await routes[0]!.handle(req.apiKey))
        })
        app.use('/v1', router)
        return serveExpress(app)
      },
      [{ path: '/v1/speak', handle: (k) => ({ id: k.key.id }) }],
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      const res = await h.fetch('/v1/speak?voice=a', { key })
      expect(res.status).toBe(200)
      const denied = await h.fetch('/v1/speak')
      expect(denied.status).toBe(401)
      expect(h.handled).toHaveLength(1)
      await eventually(() => h.settled.length === 1 && !!h.settled[0]!.event, 'settle')
      expect(h.settled[0]!.event).toMatchObject({
        path: '/v1/speak',
        method: 'GET',
        category: 'tts',
      })
    } finally {
      await h.close()
    }
  })
})

describe('tollbooth/express: what a guarded request and response carry', () => {
  // Express sets the prototype of every request and response; V8 then makes a property added
  // to one afterwards cost microseconds (bench/NOTES.md, session 23), so the adapter adds none.
  test('adds no property to the request or the response; req.apiKey and the usage headers as before', async () => {
    const own: boolean[] = []
    const s = await planned((tb) => {
      const app = express()
      app.get('/v1/tts', requireApiKey(tb, { cost: 10 }), (req, res) => {
        own.push(Object.hasOwn(req, 'apiKey'), Object.hasOwn(res, 'writeHead'))
        req.apiKey.charge(5)
        res.json({ account: req.apiKey.accountId })
      })
      app.get('/open', (req, res) => {
        res.json({ guarded: req.apiKey !== undefined })
      })
      return app
    })
    try {
      const res = await s.fetch('/v1/tts')
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ account: 'acct_1' })
      expect(res.headers.get('x-usage-current')).toBe('5')
      expect(res.headers.get('x-usage-remaining')).toBe('95')
      expect(own).toEqual([false, false])
      // A route it does not guard: no admission, no usage headers.
      const open = await s.fetch('/open')
      expect(await open.json()).toEqual({ guarded: false })
      expect(open.headers.get('x-usage-current')).toBeNull()
    } finally {
      await s.close()
    }
  })

  test('keeps req.apiKey and writes the usage headers after a mounted app hands the request back', async () => {
    const s = await planned((tb) => {
      const sub = express()
      sub.use(requireApiKey(tb, { cost: 5 }))
      sub.get('/tts', (req, _res, next) => {
        req.apiKey.charge(2)
        next()
      })
      const app = express()
      app.use('/v1', sub)
      // Express gives the request and the response the parent's prototypes back here.
      app.use((req, res) => {
        res.json({ account: req.apiKey?.accountId ?? null })
      })
      return app
    })
    try {
      const res = await s.fetch('/v1/tts')
      expect(await res.json()).toEqual({ account: 'acct_1' })
      expect(res.headers.get('x-usage-current')).toBe('2')
    } finally {
      await s.close()
    }
  })

  test('writes the usage headers through a writeHead an app or a middleware puts in front', async () => {
    const seen: string[] = []
    const s = await planned((tb) => {
      const app = express()
      // A middleware's hook on the response itself (as on-headers does), before the guard.
      app.use((_req, res, next) => {
        const prev = res.writeHead
        res.writeHead = function (this: typeof res, ...args: unknown[]) {
          seen.push('hook')
          return (prev as (...a: unknown[]) => typeof res).apply(this, args)
        } as typeof res.writeHead
        next()
      })
      app.get('/v1/a', requireApiKey(tb, { cost: 3 }), (_req, res) => {
        res.json({})
      })
      return app
    })
    // An app whose response prototype shadows writeHead with one that skips what is below it.
    const shadowing = await planned((tb) => {
      const app = express()
      app.response.writeHead = function (this: ServerResponse, ...args: unknown[]) {
        return (ServerResponse.prototype.writeHead as (...a: unknown[]) => ServerResponse).apply(
          this,
          args,
        )
      } as never
      app.get('/v1/a', requireApiKey(tb, { cost: 3 }), (req, res) => {
        res.json({ own: Object.hasOwn(res, 'writeHead'), account: req.apiKey.accountId })
      })
      return app
    })
    try {
      const res = await s.fetch('/v1/a')
      expect(res.headers.get('x-usage-current')).toBe('3')
      expect(seen).toEqual(['hook'])
      const r2 = await shadowing.fetch('/v1/a')
      expect(await r2.json()).toEqual({ own: true, account: 'acct_1' })
      expect(r2.headers.get('x-usage-current')).toBe('3')
    } finally {
      await s.close()
      await shadowing.close()
    }
  })
})

describe('tollbooth/express: a response this server broke off', () => {
  // A handler that throws after `res.write` (Express's final handler then destroys the socket:
  // the head was sent) or breaks its response off itself (`res.destroy()`, a `pipeline` whose
  // upstream failed) never calls `res.end()`. It was taken for a client gone away, waiting for
  // that `res.end()` until `abortSettleMs` (5 minutes by default), its credit hold and its
  // concurrency slot held all the while.
  test.each([
    ['throws after res.write', 'throw'],
    ['calls res.destroy() after res.write', 'destroy'],
    ['pipes an upstream that fails half-way', 'pipeline'],
  ] as const)(
    'settles a handler that %s at once (500, not billed), its slot free',
    async (_, how) => {
      await expectBrokenOff(
        async (tb, routes) => {
          const app = express()
          app.get(
            '/v1/broken',
            requireApiKey(tb, { cost: 5 }),
            asyncHandler(async (req, res) => {
              await routes[0]!.handle(req.apiKey)
              res.setHeader('content-type', 'text/event-stream')
              if (how === 'pipeline') {
                const upstream = new Readable({ read() {} })
                upstream.push('data: 0\n\n')
                pipeline(upstream, res, () => {})
                setImmediate(() => upstream.destroy(new Error('upstream failed')))
                return
              }
              res.write('data: 0\n\n')
              await new Promise((r) => setImmediate(r))
              if (how === 'destroy') res.destroy()
              else throw new Error('failed half-way')
            }),
          )
          app.get('/v1/ok', requireApiKey(tb), (_req, res) => {
            res.json({})
          })
          // Express logs an error it cannot answer: kept out of the test's output.
          app.set('env', 'test')
          return serveExpress(app)
        },
        { bodyFails: true },
      )
    },
  )
})

describe('tollbooth/express: a connection the server timed out', () => {
  // `server.setTimeout(ms)` (`server.timeout`) destroys an idle socket, and `requestTimeout`
  // one whose request is still incomplete (after a 408), while the handler may still be running.
  // Both were taken for a response the server broke off (500 at once, not billed): the
  // concurrency slot was free while the handler still ran, and what it reported afterwards was
  // lost. They settle as the client's departure does: once, when the handler has called
  // `res.end()`, with 499 and what it reported.
  test.each([
    ['server.setTimeout', 'idle'],
    ['requestTimeout', 'request'],
  ] as const)('%s: settles 499 when the handler ends, charged its report', async (_, how) => {
    const ending = gate()
    let ended = false
    const h = await harness(
      async (tb, routes) => {
        const app = express()
        app.post('/v1/slow', requireApiKey(tb, { cost: 5 }), async (req, res) => {
          await ending.promise
          await routes[0]!.handle(req.apiKey)
          res.json({})
          ended = true
        })
        app.get('/v1/ok', requireApiKey(tb), (_req, res) => {
          res.json({})
        })
        const server = createServer(
          how === 'request'
            ? { requestTimeout: 200, headersTimeout: 100, connectionsCheckingInterval: 20 }
            : {},
          app,
        )
        if (how === 'idle') server.setTimeout(150)
        return listening(server.listen(0, '127.0.0.1'))
      },
      [{ path: '/v1/slow', handle: (k) => k.report({ cost: 2 }) }],
      PRO,
    )
    try {
      const key = await oneSlotKey(h)
      const url = new URL(h.url)
      const socket = connect(Number(url.port), url.hostname)
      const closed = new Promise<string>((r) => {
        let got = ''
        socket.on('data', (b) => (got += b))
        socket.on('close', () => r(got))
        socket.on('error', () => {})
      })
      // The head and part of a 10-byte body: the request stays incomplete.
      socket.write(
        `POST /v1/slow HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${key}\r\n` +
          'content-type: text/plain\r\ncontent-length: 10\r\n\r\nab',
      )
      const answer = await closed
      if (how === 'request') expect(answer).toMatch(/^HTTP\/1.1 408/)
      else expect(answer).toBe('')
      // The server closed the connection; the handler still runs and holds its slot.
      await sleep(50)
      expect(h.settled).toHaveLength(0)
      expect((await h.fetch('/v1/ok', { key })).status).toBe(429)
      ending.open()
      await eventually(() => ended, 'the handler to end')
      await eventually(() => !!h.settled[0]?.event, 'the timed-out request to settle')
      expect(h.settled[0]!.event).toMatchObject({ path: '/v1/slow', status: 499, units: 2 })
      expect((await h.fetch('/v1/ok', { key })).status).toBe(200)
      await eventually(() => h.settled.length === 2, 'the next request to settle')
      expect(h.settled.filter((s) => s.event?.path === '/v1/slow')).toHaveLength(1)
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(2)
    } finally {
      await h.close()
    }
  })
})

describe('tollbooth/express: a stream piped into the response, its client gone', () => {
  // `res.sendFile`, `src.pipe(res)` and `pipeline(src, res)` hand the response to a stream, whose
  // end is what calls `res.end()`. A client that left mid-body stops that stream, so no
  // `res.end()` came: the request waited for `abortSettleMs` (5 minutes by default), its credit
  // hold and its concurrency slot held all the while.
  let file = ''
  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'tollbooth-express-'))
    file = join(dir, 'big.bin')
    writeFileSync(file, Buffer.alloc(16 * 1024 * 1024, 97))
  })
  afterAll(() => rmSync(dirname(file), { recursive: true, force: true }))

  test.each([
    ['res.sendFile', 'sendFile', 0],
    ['src.pipe(res)', 'pipe', 0],
    ['pipeline(generator, res), its report in finally', 'pipeline', 2],
  ] as const)(
    'settles %s once the stream has stopped (499, its report charged), its slot free',
    async (_, how, units) => {
      const h = await harness(
        async (tb, routes) => {
          const app = express()
          const guard = requireApiKey(tb, { cost: 5, abortSettleMs: 60_000 })
          app.get('/v1/file', guard, (req, res) => {
            void routes[0]!.handle(req.apiKey)
            if (how === 'sendFile') res.sendFile(file)
            else if (how === 'pipe') createReadStream(file).pipe(res)
            else {
              const apiKey = req.apiKey
              async function* events() {
                try {
                  for (let i = 0; ; i++) {
                    yield `data: ${'x'.repeat(64 * 1024)}\n\n`
                    if (i % 16 === 0) await sleep(1)
                  }
                } finally {
                  apiKey.report({ cost: 2 })
                }
              }
              pipeline(Readable.from(events()), res, () => {})
            }
          })
          app.get('/v1/ok', requireApiKey(tb), (_req, res) => {
            res.json({})
          })
          return serveExpress(app)
        },
        [{ path: '/v1/file', handle: () => undefined }],
        PRO,
      )
      try {
        const key = await oneSlotKey(h)
        const ac = new AbortController()
        const res = await fetch(`${h.url}/v1/file`, {
          headers: { authorization: `Bearer ${key}` },
          signal: ac.signal,
        })
        expect(res.status).toBe(200)
        await res.body!.getReader().read()
        ac.abort()
        await expectSettled(h, key, {
          what: 'the aborted response to settle',
          event: { status: 499, units },
          used: units,
        })
      } finally {
        await h.close()
      }
    },
  )
})

describe('tollbooth/express: a response answered in front while the admission was in flight', () => {
  // A middleware in front may answer while the store's round trip is in flight (a request
  // timeout such as `connect-timeout`'s 503). The guard then wrote its headers, or its denial,
  // on a response already sent: `setHeader` threw ERR_HTTP_HEADERS_SENT inside the admission's
  // promise, a rejection nothing handled (Node's default ends the process), and an admitted
  // request was never settled (its hold and its concurrency slot kept). On Express 4 and 5.
  test.each([
    ['admitted', [] as string[]],
    ['denied', ['admin']],
  ])('%s: no rejection, the front answer stands, settled with its status', async (_, scopes) => {
    const rejections: unknown[] = []
    const onRejection = (err: unknown) => rejections.push(err)
    process.on('unhandledRejection', onRejection)
    let ran = 0
    const h = await harness(
      async (tb) => {
        const app = express()
        app.use((_req, res, next) => {
          setTimeout(() => {
            if (!res.headersSent) res.status(503).json({ error: 'timed out' })
          }, 5)
          next()
        })
        app.get('/v1/slow', requireApiKey(tb, { scopes }), (_req, res) => {
          ran++
          // As an app behind a timeout does (`if (req.timedout) return`).
          if (!res.headersSent) res.json({ ok: true })
        })
        return serveExpress(app)
      },
      [],
      { storage: slowKeys(memoryStorage()), ...PRO },
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      const res = await h.fetch('/v1/slow', { key })
      expect(res.status).toBe(503)
      expect(res.body).toEqual({ error: 'timed out' })
      if (scopes.length === 0) {
        await eventually(() => h.settled.length === 1, 'the admission to settle')
        expect(h.settled[0]!.status).toBe(503)
        expect(ran).toBe(1)
      } else {
        expect(ran).toBe(0)
      }
      await sleep(50)
      expect(rejections).toEqual([])
      expect(h.settled).toHaveLength(scopes.length === 0 ? 1 : 0)
    } finally {
      process.off('unhandledRejection', onRejection)
      await h.close()
    }
  })
})
