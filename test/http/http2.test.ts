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
import { createTollbooth, memoryStorage, type Tollbooth } from '../../src/index.js'
import { gate, heldStorage } from './harness.js'

const SECRET = 'http2-suite-secret-0123456789abcdefghijkl'
const COST = 5

function newTollbooth(storage = memoryStorage()): Tollbooth {
  return createTollbooth({
    secret: SECRET,
    plans: { pro: { monthlyCredits: 1000 } },
    defaultTier: 'pro',
    failedAuth: false,
    storage,
  })
}

/** What `/slow` waits for before it answers (a gate a test opens). */
let slow = gate()
afterEach(() => slow.open())

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
    app.get('/slow', async () => {
      await slow.promise
      return { ok: true }
    })
    app.post('/echo', async (request) => ({ length: (request.body as string).length }))
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
    app.get('/slow', async (c) => {
      await slow.promise
      return c.json({ ok: true })
    })
    app.post('/echo', async (c) => c.json({ length: (await c.req.text()).length }))
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

/** A tollbooth on `storage`, a key of `concurrency` slots, the server and a session to it. */
async function serving(
  start: (tb: Tollbooth) => Promise<Server>,
  concurrency: number,
  storage = memoryStorage(),
) {
  const tb = newTollbooth(storage)
  open.push(() => tb.close())
  const { key, record } = await tb.keys.create({
    accountId: 'acct_h2',
    name: 'k',
    limits: { concurrency },
  })
  const server = await start(tb)
  open.push(() => server.close())
  /** The usage logged for the key, newest first: path, status, units. */
  const logged = async () => {
    await tb.flush()
    const logs = await tb.usage.logs(record.id, {})
    return logs.data.map((e) => [e.path, e.status, e.units])
  }
  /** The credits charged to the account so far. */
  const used = async () => {
    await tb.flush()
    return (await tb.usage.get('acct_h2')).credits.used
  }
  return { tb, key, port: server.port, session: connect(server.port), logged, used }
}

for (const [name, start] of Object.entries(servers))
  describe(`HTTP/2 on ${name}`, () => {
    it('a stream the client resets is settled 499 and refunded, its slot freed', async () => {
      const { key, session, logged, used } = await serving(start, 1)
      expect(await get(session, '/ok', key)).toEqual({ status: 200, body: '{"ok":true}' })
      expect(await readThenCancel(session, key)).toBe(200)
      // The slot is free again: a concurrency of 1 admits the next request.
      await vi.waitFor(async () =>
        expect(await logged()).toEqual([
          ['/stream', 499, 0],
          ['/ok', 200, COST],
        ]),
      )
      expect((await get(session, '/ok', key)).status).toBe(200)
      expect(await used()).toBe(2 * COST)
    })

    // A store that answers over the network takes a while to admit: a stream reset in that
    // time has closed before the adapter watches its response. Node's Http2ServerResponse has
    // no `closed` (an HTTP/1.1 ServerResponse has), so the adapter never learnt it: the request
    // was never settled, its slot and its hold kept until they expired.
    it('a stream reset while its admission is in flight is settled 499, its slot freed', async () => {
      const store = heldStorage()
      const { key, session, logged, used } = await serving(start, 1, store.storage)
      const admit = store.hold()
      const stream = session.request({ ':path': '/ok', authorization: `Bearer ${key}` })
      stream.on('error', () => {})
      await vi.waitFor(() => expect(store.asked).toBe(1))
      stream.close(http2.constants.NGHTTP2_CANCEL)
      // The server sees the reset before the store answers.
      await new Promise((r) => setTimeout(r, 50))
      admit()
      await vi.waitFor(async () => expect(await logged()).toEqual([['/ok', 499, 0]]))
      expect((await get(session, '/ok', key)).status).toBe(200)
      expect(await used()).toBe(COST)
    })

    // Node's compatibility API ends the request body of a stream the client resets (its
    // `end` comes, then `aborted`): the handler gets the upload cut short as if whole and answers
    // into the closed stream, which reads as written in full (`writableEnded`, `finish`). Only
    // the stream's `rstCode` tells: before, such a POST was settled 200 and billed.
    it('a POST whose upload the client resets mid-way is settled 499, not billed', async () => {
      const { key, session, logged, used } = await serving(start, 1)
      const stream = session.request(
        {
          ':method': 'POST',
          ':path': '/echo',
          'content-type': 'text/plain',
          authorization: `Bearer ${key}`,
        },
        { endStream: false },
      )
      stream.on('error', () => {})
      stream.write('x'.repeat(1000))
      await new Promise((r) => setTimeout(r, 50))
      stream.close(http2.constants.NGHTTP2_CANCEL)
      await vi.waitFor(async () => expect(await logged()).toEqual([['/echo', 499, 0]]))
      expect((await get(session, '/ok', key)).status).toBe(200)
      expect(await used()).toBe(COST)
    })

    // A connection gone (its socket destroyed, or the client's GOAWAY) with streams in flight
    // closes every one of them: each is a client gone, settled 499 and refunded, its slot freed.
    it.each([
      ['its socket destroyed', (s: http2.ClientHttp2Session) => s.destroy()],
      [
        'a GOAWAY',
        (s: http2.ClientHttp2Session) => s.destroy(undefined, http2.constants.NGHTTP2_CANCEL),
      ],
    ])(
      'a session closed (%s) with 3 streams in flight settles each 499 once, slots freed',
      async (_, end) => {
        const { key, port, session, logged, used } = await serving(start, 3)
        slow = gate()
        const streams = [1, 2, 3].map(() => {
          const s = session.request({ ':path': '/slow', authorization: `Bearer ${key}` })
          s.on('error', () => {})
          return s
        })
        // All three admitted: a fourth is refused for concurrency.
        const other = connect(port)
        await vi.waitFor(async () => expect((await get(other, '/ok', key)).status).toBe(429))
        end(session)
        expect(streams.length).toBe(3)
        // The handlers still run: nothing settles, the slots stay taken, until they end.
        await new Promise((r) => setTimeout(r, 50))
        expect((await get(other, '/ok', key)).status).toBe(429)
        slow.open()
        await vi.waitFor(async () =>
          expect((await logged()).filter(([path]) => path === '/slow')).toEqual([
            ['/slow', 499, 0],
            ['/slow', 499, 0],
            ['/slow', 499, 0],
          ]),
        )
        // Three slots free: three more streams at once are all admitted.
        const again = await Promise.all([1, 2, 3].map(() => get(other, '/ok', key)))
        expect(again.map((r) => r.status)).toEqual([200, 200, 200])
        expect((await logged()).filter(([, status]) => status === 200)).toHaveLength(3)
        expect(await used()).toBe(3 * COST)
      },
    )
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
