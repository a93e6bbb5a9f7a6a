/**
 * The fetch bridges of tollbooth/express and tollbooth/fastify (`mountFetch`), over real
 * servers: paths relative to the mount point, bodies streamed in (also after express.json()),
 * responses streamed out with every header (several Set-Cookie), errors, client aborts, and
 * the socket address reaching the management API's failed-auth guard.
 */

import type { Server } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { serve } from '@hono/node-server'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import {
  mountFetch as expressMount,
  type FetchHandler,
  mountFetch,
} from '../../adapters/express/mount.js'
import { mountFetch as fastifyMount } from '../../adapters/fastify/mount.js'
import { managementApi } from '../../adapters/management/index.js'
import { closeServer } from '../support/servers.js'
import { call, FRAMEWORKS, makeTollbooth, type Served, serveManagement } from './servers.js'

/** Echoes what it was given: method, path, query, body size and text, one header. */
const echo: FetchHandler = async (req) => {
  const url = new URL(req.url)
  const body = req.method === 'GET' ? '' : await req.text()
  const headers = new Headers({ 'content-type': 'application/json' })
  headers.append('set-cookie', 'a=1; Path=/')
  headers.append('set-cookie', 'b=2; Path=/')
  headers.set('x-echo', 'yes')
  return new Response(
    JSON.stringify({
      method: req.method,
      path: url.pathname,
      search: url.search,
      size: body.length,
      body: body.slice(0, 100),
      contentType: req.headers.get('content-type'),
      custom: req.headers.get('x-custom'),
    }),
    { status: 200, headers },
  )
}

/** Sends GET /slow and GET /hang on one connection, then closes it once /hang has started. */
async function pipelinedThenGone(url: string, started: Promise<void>): Promise<void> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  socket.on('error', () => {})
  const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`
  socket.write(get('/slow') + get('/hang'))
  await started
  socket.destroy()
}

let closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers) await c()
  closers = []
})

async function expressServer(setup: (app: express.Express) => void): Promise<string> {
  const app = express()
  setup(app)
  const server = app.listen(0, '127.0.0.1')
  await new Promise<void>((r) => server.once('listening', () => r()))
  closers.push(() => closeServer(server))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function fastifyServer(setup: (app: FastifyInstance) => Promise<void>): Promise<string> {
  const app = Fastify()
  await setup(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

describe('express mountFetch', () => {
  it('hands over paths relative to a nested mount point, with query, headers and body', async () => {
    const url = await expressServer((app) => {
      const router = express.Router()
      router.use('/v2', expressMount(echo))
      app.use('/api', router)
    })
    const r = await call(url, 'POST', '/api/v2/things/7?x=1&y=2', {
      raw: 'hello',
      headers: { 'content-type': 'text/plain', 'x-custom': 'c' },
    })
    expect(r.body).toEqual({
      method: 'POST',
      path: '/things/7',
      search: '?x=1&y=2',
      size: 5,
      body: 'hello',
      contentType: 'text/plain',
      custom: 'c',
    })
    expect(r.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/'])
    expect(r.headers.get('x-echo')).toBe('yes')
    expect((await call(url, 'GET', '/api/v2')).body.path).toBe('/')
  })

  it('streams a large body in, and re-sends a body express.json() already parsed', async () => {
    const url = await expressServer((app) => {
      app.use('/raw', expressMount(echo))
      app.use('/parsed', express.json(), expressMount(echo))
    })
    const big = 'x'.repeat(2 * 1024 * 1024)
    expect((await call(url, 'PUT', '/raw/up', { raw: big })).body.size).toBe(big.length)
    const r = await call(url, 'POST', '/parsed/p', { json: { name: 'Production Key' } })
    expect(r.body).toMatchObject({
      body: '{"name":"Production Key"}',
      contentType: 'application/json',
    })
  })

  it('hands a billing webhook its raw bytes after express.json(), or says why it cannot', async () => {
    // Stripe signs the bytes it sends (pretty-printed JSON); express.json() in front parsed
    // them, and the bridge re-sent JSON.stringify of the result: every signature failed.
    const { tb } = makeTollbooth()
    const got: string[] = []
    const billing = {
      name: 'fake',
      async checkout() {
        return { url: 'https://c.example', sessionId: 'cs' }
      },
      async portal() {
        return { url: 'https://p.example' }
      },
      async webhook(input: { body: unknown }) {
        got.push(new TextDecoder().decode(input.body as Uint8Array))
        return { status: 200, body: { received: true }, applied: [] }
      },
    }
    const keep = (req: object, _res: unknown, buf: Buffer) => {
      ;(req as { rawBody?: Buffer }).rawBody = buf
    }
    const url = await expressServer((app) => {
      app.use(
        '/kept',
        express.json({ verify: keep }),
        mountFetch(managementApi(tb, { billing }).fetch),
      )
      app.use('/lost', express.json(), mountFetch(managementApi(tb, { billing }).fetch))
    })
    const event = '{\n  "id": "evt_1",\n  "object": "event"\n}'
    const headers = { 'content-type': 'application/json' }
    const kept = await call(url, 'POST', '/kept/billing/webhook', { raw: event, headers })
    expect([kept.status, got]).toEqual([200, [event]])
    const lost = await call(url, 'POST', '/lost/billing/webhook', { raw: event, headers })
    expect(lost.status).toBe(500)
    expect(lost.body).toMatchObject({ code: 'webhook_failed' })
    expect(lost.body.error).toMatch(/express\.json\(\)/)
    expect(got).toEqual([event])
  })

  it("answers the management API's JSON 400 for malformed JSON after express.json()", async () => {
    const { tb } = makeTollbooth()
    const url = await expressServer((app) => {
      app.use(express.json({ limit: '1kb' }))
      app.use('/api', mountFetch(managementApi(tb).fetch))
    })
    const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    const count = async () => (await tb.keys.list('acct_a')).data.length
    const before = await count()
    const bad = { raw: '{"name": "Production', headers: { 'content-type': 'application/json' } }
    const r = await call(url, 'POST', '/api/keys', { ...bad, token: mk })
    expect(r.status).toBe(400)
    expect(r.headers.get('content-type')).toMatch(/^application\/json/)
    expect(r.body).toMatchObject({
      code: 'invalid_request',
      issues: [{ path: '(body)', message: expect.stringMatching(/valid JSON/) }],
    })
    // The management API still authenticates first, and nothing was created.
    const anon = await call(url, 'POST', '/api/keys', bad)
    expect([anon.status, (anon.body as { code: string }).code]).toEqual([401, 'unauthorized'])
    expect(await count()).toBe(before)
    // Over the parser's limit: a JSON 413 in the same shape, not Express's HTML page.
    const big = await call(url, 'POST', '/api/keys', {
      json: { name: 'x'.repeat(2048) },
      token: mk,
    })
    expect(big.status).toBe(413)
    expect(big.body).toMatchObject({ code: 'invalid_request' })
    expect((big.body as { error: string }).error).toMatch(/^Invalid request body: /)
    // A valid body still goes through the parser and on to the management API.
    const ok = await call(url, 'POST', '/api/keys', { json: { name: 'Production' }, token: mk })
    expect(ok.status).toBe(201)
    expect(await count()).toBe(before + 1)
  })

  it('streams the response out and passes a thrown error to next()', async () => {
    const url = await expressServer((app) => {
      app.use(
        '/stream',
        expressMount(
          () =>
            new Response(
              new ReadableStream({
                start(c) {
                  for (let i = 0; i < 100; i++) c.enqueue(new TextEncoder().encode(`chunk ${i}\n`))
                  c.close()
                },
              }),
            ),
        ),
      )
      app.use(
        '/boom',
        expressMount(() => {
          throw new Error('boom')
        }),
      )
      app.use(
        (err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
          res.status(418).json({ caught: err.message })
        },
      )
    })
    const s = await call(url, 'GET', '/stream')
    expect(s.text.split('\n').filter(Boolean)).toHaveLength(100)
    const b = await call(url, 'GET', '/boom')
    expect([b.status, b.body]).toEqual([418, { caught: 'boom' }])
  })

  it('aborts the request signal when the client goes away', async () => {
    let aborted!: () => void
    const abortedP = new Promise<void>((r) => {
      aborted = r
    })
    const url = await expressServer((app) => {
      app.use(
        '/hang',
        expressMount((req) => {
          req.signal.addEventListener('abort', () => aborted())
          return new Response(new ReadableStream({ start: (c) => c.enqueue(new Uint8Array([1])) }))
        }),
      )
    })
    const ctl = new AbortController()
    const res = await fetch(`${url}/hang`, { signal: ctl.signal })
    expect(res.status).toBe(200)
    ctl.abort()
    await abortedP
  })

  // HTTP/1.1 pipelining: a response queued behind another gets no `close` of its own when the
  // client closes the connection first, so the signal never aborted.
  it('aborts the signal of a request pipelined behind a slow one when the client closes the connection', async () => {
    let aborted!: () => void
    const abortedP = new Promise<void>((r) => {
      aborted = r
    })
    let started!: () => void
    const startedP = new Promise<void>((r) => {
      started = r
    })
    const url = await expressServer((app) => {
      app.get('/slow', (_req, res) => {
        setTimeout(() => res.end('late'), 500)
      })
      app.use(
        '/hang',
        expressMount((req) => {
          req.signal.addEventListener('abort', () => aborted())
          started()
          return new Response('queued')
        }),
      )
    })
    await pipelinedThenGone(url, startedP)
    await abortedP
  })

  it('refuses a non-function handler at construction', () => {
    expect(() => expressMount('nope' as never)).toThrow(/handler must be a function/)
  })
})

describe('fastify mountFetch', () => {
  // A client gone before the handler started (here, while a hook in front awaited): the
  // response's `close` came before mountFetch listened for it. Before, the signal never
  // aborted and the handler ran to its end for nobody.
  it('hands the handler an aborted signal when the client left before it started', async () => {
    let seen!: (aborted: boolean) => void
    const seenP = new Promise<boolean>((r) => {
      seen = r
    })
    let closed!: () => void
    const closedP = new Promise<void>((r) => {
      closed = r
    })
    const url = await fastifyServer(async (app) => {
      app.addHook('onRequest', async (_request, reply) => {
        reply.raw.once('close', () => closed())
        await closedP
      })
      await app.register(
        fastifyMount(async (req) => {
          seen(req.signal.aborted)
          return new Response('late')
        }),
        { prefix: '/m' },
      )
    })
    const { hostname, port } = new URL(url)
    const socket = connect(Number(port), hostname)
    socket.on('error', () => {})
    socket.write(`GET /m/x HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`)
    await new Promise((r) => setTimeout(r, 50))
    socket.destroy()
    expect(await seenP).toBe(true)
  })

  it('serves under the prefix with the raw body of any content type, in its own context', async () => {
    const url = await fastifyServer(async (app) => {
      app.post('/other', async (request) => ({ parsed: request.body }))
      await app.register(fastifyMount(echo), { prefix: '/v1' })
    })
    const r = await call(url, 'POST', '/v1/keys/k1?limit=2', {
      raw: '{"not": json',
      headers: { 'content-type': 'application/json', 'x-custom': 'c' },
    })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({
      method: 'POST',
      path: '/keys/k1',
      search: '?limit=2',
      body: '{"not": json',
      custom: 'c',
    })
    expect(r.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/'])
    const bin = await call(url, 'PATCH', '/v1/x', {
      raw: 'abc',
      headers: { 'content-type': 'application/octet-stream' },
    })
    expect(bin.body).toMatchObject({ method: 'PATCH', size: 3 })
    expect((await call(url, 'DELETE', '/v1/keys/k1')).body.method).toBe('DELETE')
    expect((await call(url, 'GET', '/v1')).body.path).toBe('/')
    // Routes outside the plugin keep Fastify's own JSON parser.
    expect((await call(url, 'POST', '/other', { json: { a: 1 } })).body).toEqual({
      parsed: { a: 1 },
    })
  })

  it('aborts the signal of a request pipelined behind a slow one when the client closes the connection', async () => {
    let aborted!: () => void
    const abortedP = new Promise<void>((r) => {
      aborted = r
    })
    let started!: () => void
    const startedP = new Promise<void>((r) => {
      started = r
    })
    const url = await fastifyServer(async (app) => {
      app.get('/slow', async () => {
        await new Promise((r) => setTimeout(r, 500))
        return 'late'
      })
      await app.register(
        fastifyMount((req) => {
          req.signal.addEventListener('abort', () => aborted())
          started()
          return new Response('queued')
        }),
        { prefix: '/hang' },
      )
    })
    await pipelinedThenGone(url, startedP)
    await abortedP
  })

  it('streams a large body in and the response out', async () => {
    const url = await fastifyServer(async (app) => {
      await app.register(fastifyMount(echo), { prefix: '/v1' })
    })
    const big = 'y'.repeat(3 * 1024 * 1024)
    expect(
      (await call(url, 'PUT', '/v1/up', { raw: big, headers: { 'content-type': 'text/plain' } }))
        .body.size,
    ).toBe(big.length)
  })
})

describe('the management API served on its own', () => {
  it('answers its routes, and unknown paths with a JSON 404', async () => {
    const { tb } = makeTollbooth()
    const server = serve({
      fetch: managementApi(tb).fetch,
      port: 0,
      hostname: '127.0.0.1',
    }) as Server
    await new Promise<void>((r) => server.once('listening', () => r()))
    closers.push(() => closeServer(server))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    expect((await call(url, 'GET', '/keys', { token: mk })).status).toBe(200)
    const r = await call(url, 'GET', '/nope')
    expect([r.status, r.body]).toEqual([404, { error: 'Not found: GET /nope', code: 'not_found' }])
  })
})

describe.each(FRAMEWORKS)('the management API on %s sees the client address', (framework) => {
  let served: Served
  afterEach(() => served.close())

  it('blocks an address after repeated bad management keys (failed-auth guard)', async () => {
    const { tb } = makeTollbooth({ failedAuth: { limit: 3, windowMs: 60_000, blockMs: 60_000 } })
    served = await serveManagement(framework, tb)
    const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    const statuses: number[] = []
    for (let i = 0; i < 4; i++)
      statuses.push((await call(served.url, 'GET', '/v1/keys', { token: `mk_bad${i}` })).status)
    expect(statuses).toEqual([401, 401, 403, 403])
    const blocked = await call(served.url, 'GET', '/v1/keys', { token: mk })
    expect(blocked.body).toEqual({ error: 'IP temporarily blocked', code: 'ip_blocked' })
  })
})
