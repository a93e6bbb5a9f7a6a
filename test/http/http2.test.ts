/**
 * @module test/http/http2
 *
 * HTTP/2 on Node (Fastify's `http2: true`, Hono on `@hono/node-server` with
 * `http2.createServer`), over real h2c connections: a stream the client resets (RST_STREAM
 * CANCEL, what a cancelled `fetch` or a closed browser tab sends) is a client gone, settled 499
 * and refunded as over HTTP/1.1, its concurrency slot freed; a stream written in full is
 * settled with its status. Node's compatibility API emits `finish` for a reset stream too, with
 * `writableFinished` true: before, every cancelled stream was settled 200 `completed` and billed
 * the route's cost. A `mountFetch` handler's request signal aborts on a reset as well.
 */

import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { serve } from '@hono/node-server'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { tollbooth } from '../../adapters/fastify/index.js'
import { mountFetch } from '../../adapters/fastify/mount.js'
import { requireApiKey } from '../../adapters/hono/index.js'
import { createTollbooth, type Tollbooth } from '../../src/index.js'

const SECRET = 'http2-suite-secret-0123456789abcdefghijkl'
const COST = 5

function newTollbooth(): Tollbooth {
  return createTollbooth({
    secret: SECRET,
    plans: { pro: { monthlyCredits: 1000 } },
    defaultTier: 'pro',
    failedAuth: false,
  })
}

/** An endless event stream, one event every 10 ms until its reader goes. */
function events(): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setInterval> | undefined
  let n = 0
  return new ReadableStream({
    start(ctl) {
      timer = setInterval(() => ctl.enqueue(new TextEncoder().encode(`data: ${n++}\n\n`)), 10)
    },
    cancel() {
      clearInterval(timer)
    },
  })
}

interface Server {
  port: number
  close(): Promise<void>
}

const servers: Record<string, (tb: Tollbooth) => Promise<Server>> = {
  async Fastify(tb) {
    const app = Fastify({ http2: true })
    await app.register(tollbooth, { tb, global: true, cost: COST })
    app.get('/ok', async () => ({ ok: true }))
    app.get('/stream', async (_request, reply) => {
      reply.header('content-type', 'text/event-stream')
      return reply.send(Readable.fromWeb(events() as never))
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    return {
      port: (app.server.address() as AddressInfo).port,
      close: () => app.close(),
    }
  },
  async 'Hono (Node)'(tb) {
    const app = new Hono()
    app.use('*', requireApiKey(tb, { cost: COST }))
    app.get('/ok', (c) => c.json({ ok: true }))
    app.get(
      '/stream',
      () => new Response(events(), { headers: { 'content-type': 'text/event-stream' } }),
    )
    const server = serve({
      fetch: app.fetch,
      port: 0,
      hostname: '127.0.0.1',
      createServer: http2.createServer,
    })
    await new Promise((resolve) => server.once('listening', resolve))
    return {
      port: (server.address() as AddressInfo).port,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    }
  },
}

const open: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close()
})

function connect(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  open.push(() => {
    session.close()
  })
  return session
}

/** A whole request on `session`: its status and body. */
function get(session: http2.ClientHttp2Session, path: string, key: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const stream = session.request({ ':path': path, authorization: `Bearer ${key}` })
    let status = 0
    let body = ''
    stream.on('response', (h) => {
      status = Number(h[':status'])
    })
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      body += chunk
    })
    stream.on('end', () => resolve({ status, body }))
    stream.on('error', reject)
  })
}

/** Opens the event stream, reads a few events, then resets it (a cancelled fetch). */
async function readThenCancel(session: http2.ClientHttp2Session, key: string): Promise<number> {
  const stream = session.request({ ':path': '/stream', authorization: `Bearer ${key}` })
  stream.on('error', () => {})
  let status = 0
  stream.on('response', (h) => {
    status = Number(h[':status'])
  })
  let events = 0
  await new Promise<void>((resolve) => {
    stream.on('data', () => {
      if (++events === 3) resolve()
    })
  })
  stream.close(http2.constants.NGHTTP2_CANCEL)
  return status
}

for (const [name, start] of Object.entries(servers))
  describe(`HTTP/2 on ${name}`, () => {
    it('a stream the client resets is settled 499 and refunded, its slot freed', async () => {
      const tb = newTollbooth()
      open.push(() => tb.close())
      const { key, record } = await tb.keys.create({
        accountId: 'acct_h2',
        name: 'k',
        limits: { concurrency: 1 },
      })
      const server = await start(tb)
      open.push(() => server.close())
      const session = connect(server.port)
      expect(await get(session, '/ok', key)).toEqual({ status: 200, body: '{"ok":true}' })
      expect(await readThenCancel(session, key)).toBe(200)
      // The slot is free again: a concurrency of 1 admits the next request.
      await vi.waitFor(async () => {
        await tb.flush()
        const logs = await tb.usage.logs(record.id, {})
        expect(logs.data.map((e) => [e.path, e.status, e.units])).toEqual([
          ['/stream', 499, 0],
          ['/ok', 200, COST],
        ])
      })
      expect((await get(session, '/ok', key)).status).toBe(200)
      await tb.flush()
      expect((await tb.usage.get('acct_h2')).credits.used).toBe(2 * COST)
    })
  })

describe('HTTP/2: a mountFetch handler (Fastify)', () => {
  it('gets the request without the pseudo-headers, its host from :authority (was 500)', async () => {
    const app = Fastify({ http2: true })
    await app.register(
      mountFetch(
        (request: Request) =>
          new Response(
            `${new URL(request.url).pathname} ${request.headers.get('host')} ${[...request.headers.keys()].some((k) => k.startsWith(':'))}`,
          ),
      ),
      { prefix: '/m' },
    )
    await app.listen({ port: 0, host: '127.0.0.1' })
    open.push(() => app.close())
    const port = (app.server.address() as AddressInfo).port
    const session = connect(port)
    expect(await get(session, '/m/x', 'unused')).toEqual({
      status: 200,
      body: `/x 127.0.0.1:${port} false`,
    })
  })

  it("sees its request's signal abort when the client resets the stream", async () => {
    let aborted: (() => void) | undefined
    const sawAbort = new Promise<void>((resolve) => {
      aborted = resolve
    })
    const app = Fastify({ http2: true })
    await app.register(
      mountFetch((request: Request) => {
        request.signal.addEventListener('abort', () => aborted?.())
        return new Response(events(), { headers: { 'content-type': 'text/event-stream' } })
      }),
      { prefix: '/m' },
    )
    await app.listen({ port: 0, host: '127.0.0.1' })
    open.push(() => app.close())
    const session = connect((app.server.address() as AddressInfo).port)
    const stream = session.request({ ':path': '/m/stream' })
    stream.on('error', () => {})
    await new Promise<void>((resolve) => stream.once('data', () => resolve()))
    stream.close(http2.constants.NGHTTP2_CANCEL)
    const outcome = await Promise.race([
      sawAbort.then(() => 'aborted'),
      new Promise((resolve) => setTimeout(() => resolve('not aborted after 2 s'), 2000)),
    ])
    expect(outcome).toBe('aborted')
  })
})
