/**
 * @module test/http/websocket
 *
 * WebSocket routes behind the guard, over real WebSocket clients (`ws`) against real servers
 * on ephemeral ports, the same behaviour on Hono (`@hono/node-ws`), Fastify
 * (`@fastify/websocket`) and Express (`ws` on the server's `upgrade` event, through
 * `requireApiKeyOnUpgrade`), on the memory store and on Redis:
 *
 * - a refused upgrade (no key, a bad key, a rate limit, a quota, no credits, the concurrency
 *   limit) is answered its status and JSON error instead of a 101, the session never opens and
 *   nothing is charged;
 * - an admitted session settles once, with 101, when its socket closes (the client closing it,
 *   the server closing it, the TCP connection dropped), not at the 101: a key limited to 1 in
 *   flight is refused a second session while the first is open and admitted after it closed;
 * - units reported during the session and in its `close` handler are what is charged and
 *   recorded;
 * - a session longer than the holds' TTL keeps its slot (renewed);
 * - the 101 carries tollbooth's headers.
 */

import { Agent, createServer, request as httpRequest, type Server } from 'node:http'
import { type AddressInfo, type Socket, connect as tcpConnect } from 'node:net'
import fastifyWebsocket from '@fastify/websocket'
import { serve } from '@hono/node-server'
import { createNodeWebSocket } from '@hono/node-ws'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { afterEach, describe, expect, test } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import {
  sendUsageHeaders as expressUsageHeaders,
  requireApiKeyOnUpgrade,
} from '../../adapters/express/index.js'
import { requireApiKey as fastifyGuard, tollbooth } from '../../adapters/fastify/index.js'
import { requireApiKey as honoGuard, sendUsageHeaders } from '../../adapters/hono/index.js'
import {
  type Admission,
  createTollbooth,
  type RouteOptions,
  type Storage,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/internal.js'
import { fourStores } from '../support/stores.js'
import { eventually, heldStorage, recordSettles, type Settled, sleep } from './harness.js'

const SECRET = 'websocket-suite-secret-websocket-suite-secret'
const PLAN = { plans: { pro: { monthlyCredits: 100 } }, defaultTier: 'pro' }

/**
 * What every framework's session does: `charge:N` charges N now, `close-report:N` reports a
 * cost of N in its `close` handler, `close-await:N` reports N there after awaiting 200 ms (an
 * upstream's final figure) through `waitUntil`, `close-hang` gives `waitUntil` a promise that
 * never resolves, `bye` closes the session from the server; every other message is echoed once
 * handled.
 */
function session(ws: WebSocket, apiKey: Admission, opened: Admission[]): void {
  opened.push(apiKey)
  let atClose: number | undefined
  let awaited: number | undefined
  let hang = false
  ws.on('message', (data) => {
    const text = String(data)
    if (text.startsWith('charge:')) apiKey.charge(Number(text.slice(7)))
    else if (text.startsWith('close-report:')) atClose = Number(text.slice(13))
    else if (text.startsWith('close-await:')) awaited = Number(text.slice(12))
    else if (text === 'close-hang') hang = true
    else if (text === 'bye') {
      ws.close(1000, 'done')
      return
    }
    ws.send(text)
  })
  ws.on('close', () => {
    if (atClose !== undefined) apiKey.report({ cost: atClose })
    if (awaited !== undefined) {
      const cost = awaited
      apiKey.waitUntil(sleep(200).then(() => apiKey.report({ cost })))
    }
    if (hang) apiKey.waitUntil(new Promise(() => {}))
  })
}

interface Running {
  url: string
  close(): Promise<void>
}

type Start = (tb: Tollbooth, options: RouteOptions, opened: Admission[]) => Promise<Running>

const listening = (server: Server) =>
  `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/realtime`

const closing = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

const frameworks: Record<string, Start> = {
  async hono(tb, options, opened) {
    const app = new Hono()
    const { injectWebSocket, upgradeWebSocket, wss } = createNodeWebSocket({ app })
    sendUsageHeaders(wss)
    app.get(
      '/v1/realtime',
      honoGuard(tb, options),
      upgradeWebSocket((c) => {
        const apiKey = c.get('apiKey')
        return { onOpen: (_e, ws) => session(ws.raw as WebSocket, apiKey, opened) }
      }),
    )
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
        resolve(s as Server),
      ) as Server
    })
    injectWebSocket(server)
    return {
      url: listening(server),
      close: async () => {
        for (const ws of wss.clients) ws.terminate()
        await closing(server)
      },
    }
  },
  async fastify(tb, options, opened) {
    const app = Fastify()
    await app.register(fastifyWebsocket)
    await app.register(tollbooth, { tb })
    app.get('/v1/realtime', { websocket: true, preHandler: fastifyGuard(tb, options) }, (ws, r) =>
      session(ws, r.apiKey, opened),
    )
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { url: listening(app.server), close: () => app.close() }
  },
  async express(tb, options, opened) {
    const app = express()
    const server = createServer(app)
    const wss = new WebSocketServer({ noServer: true })
    expressUsageHeaders(wss)
    const guard = requireApiKeyOnUpgrade(tb, options)
    server.on('upgrade', async (req, socket, head) => {
      const apiKey = await guard(req, socket)
      if (apiKey === null) return
      wss.handleUpgrade(req, socket, head, (ws) => session(ws, apiKey, opened))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return {
      url: listening(server),
      close: async () => {
        for (const ws of wss.clients) ws.terminate()
        await closing(server)
      },
    }
  },
}

type Opened = { ws: WebSocket; status: 101; headers: Record<string, unknown> }
type Refused = { status: number; headers: Record<string, unknown>; body: unknown }

/** Opens a session, or resolves to the refusal the server answered instead of the 101. */
function connect(url: string, key?: string): Promise<Opened | Refused> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, key ? { headers: { authorization: `Bearer ${key}` } } : {})
    let headers: Record<string, unknown> = {}
    ws.once('upgrade', (res) => {
      headers = res.headers
    })
    ws.once('open', () => resolve({ ws, status: 101, headers }))
    ws.once('unexpected-response', (_req, res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
      })
      res.on('end', () => {
        let body: unknown = text
        try {
          body = JSON.parse(text)
        } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body })
      })
    })
    ws.once('error', reject)
  })
}

async function opened(url: string, key: string): Promise<WebSocket> {
  const r = await connect(url, key)
  expect(r.status, JSON.stringify((r as Refused).body)).toBe(101)
  return (r as Opened).ws
}

const closed = (ws: WebSocket) =>
  new Promise<void>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve()
    else ws.once('close', () => resolve())
  })

/** Sends a message and waits for its echo, so that what came before it was handled. */
function roundTrip(ws: WebSocket, text: string): Promise<void> {
  return new Promise((resolve) => {
    ws.once('message', () => resolve())
    ws.send(text)
  })
}

/** An upgrade request written on a plain TCP connection, once connected and sent. */
function rawUpgrade(url: string, key: string): Promise<Socket> {
  const { hostname, port, pathname } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(Number(port), hostname, () => {
      socket.write(
        `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
          'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
          `Sec-WebSocket-Version: 13\r\nAuthorization: Bearer ${key}\r\n\r\n`,
        () => resolve(socket),
      )
    })
    socket.on('error', reject)
  })
}

/** Writes a request head (its `GET` line and `Host` added) and resolves to all it got back. */
function exchange(url: string, headers: string): Promise<string> {
  const { hostname, port, pathname } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(Number(port), hostname, () =>
      socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n${headers}\r\n`),
    )
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      text += chunk
    })
    socket.on('close', () => resolve(text))
    socket.on('error', reject)
  })
}

interface Setup {
  tb: Tollbooth
  url: string
  opened: Admission[]
  settled: Settled[]
}

let running: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of running.reverse()) await stop()
  running = []
})

const stores = await fourStores('websocket')

async function setupOn(
  start: Start,
  options: RouteOptions = { cost: 10 },
  tbOptions: Partial<TollboothOptions> = {},
  store: () => Promise<Storage> = stores.memory!,
): Promise<Setup> {
  const storage = await store()
  const tb = createTollbooth({ secret: SECRET, storage, ...PLAN, ...tbOptions })
  const settled = recordSettles(tb)
  const opened: Admission[] = []
  const server = await start(tb, options, opened)
  running.push(async () => {
    await server.close()
    await tb.close()
  })
  return { tb, url: server.url, opened, settled }
}

test('requireApiKeyOnUpgrade and sendUsageHeaders refuse what they cannot use, naming it', () => {
  expect(() => requireApiKeyOnUpgrade({} as Tollbooth)).toThrow(
    'requireApiKeyOnUpgrade: tb must be a tollbooth instance from createTollbooth(), got an object',
  )
  const tb = createTollbooth({ secret: SECRET })
  expect(() => requireApiKeyOnUpgrade(tb, { cost: -1 })).toThrow(/cost/)
  expect(() => sendUsageHeaders(undefined as never)).toThrow(
    'sendUsageHeaders: wss must be a ws WebSocketServer, got undefined',
  )
  void tb.close()
})

test('Fastify: the plugin registered before @fastify/websocket puts the headers on the 101 too', async () => {
  const tb = createTollbooth({ secret: SECRET, ...PLAN })
  const settled = recordSettles(tb)
  const app = Fastify()
  await app.register(tollbooth, { tb })
  await app.register(fastifyWebsocket)
  app.get('/v1/realtime', { websocket: true, config: { tollbooth: { cost: 10 } } }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  running.push(async () => {
    await app.close()
    await tb.close()
  })
  const { key } = await tb.keys.create({ accountId: 'acct_1' })
  const r = await connect(listening(app.server), key)
  expect(r.status).toBe(101)
  expect(r.headers['x-usage-current']).toBe('10')
  ;(r as Opened).ws.close()
  await eventually(() => settled.length === 1, 'the session settled')
  expect(settled[0]).toMatchObject({ status: 101 })
})

const used = async (tb: Tollbooth) => (await tb.accounts.get('acct_1')).credits.used

test('Hono on @hono/node-ws: an upgrade to another protocol (h2c) on a plain route settles at its answer, its slot freed', async () => {
  const tb = createTollbooth({ secret: SECRET, ...PLAN })
  const settled = recordSettles(tb)
  const app = new Hono()
  const { injectWebSocket } = createNodeWebSocket({ app })
  app.get('/v1/models', honoGuard(tb, { cost: 10 }), (c) => c.json({ data: [] }))
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
      resolve(s as Server),
    ) as Server
  })
  injectWebSocket(server)
  running.push(async () => {
    await closing(server)
    await tb.close()
  })
  const one = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
  const { port } = server.address() as AddressInfo
  // What `curl --http2 http://…` sends: Node emits it as an upgrade, @hono/node-ws runs the app.
  const answer = await exchange(
    `http://127.0.0.1:${port}/v1/models`,
    'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
      `HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nAuthorization: Bearer ${one.key}\r\n`,
  )
  expect(answer).toMatch(/^HTTP\/1\.1 200 /)
  await eventually(() => settled.length === 1, 'the request settled')
  expect(settled[0]).toMatchObject({ status: 200 })
  const res = await fetch(`http://127.0.0.1:${port}/v1/models`, {
    headers: { authorization: `Bearer ${one.key}` },
  })
  expect(res.status).toBe(200)
})

test('Fastify: a plain request naming `Upgrade: websocket` on a hijacked route settles at its response, not as a session', async () => {
  const tb = createTollbooth({ secret: SECRET, ...PLAN })
  const settled = recordSettles(tb)
  const app = Fastify()
  await app.register(fastifyWebsocket)
  await app.register(tollbooth, { tb })
  app.get('/v1/stream', { preHandler: fastifyGuard(tb, { cost: 10 }) }, (_request, reply) => {
    reply.hijack()
    reply.raw.writeHead(500, { 'content-type': 'text/plain' })
    reply.raw.end('failed')
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const agent = new Agent({ keepAlive: true })
  running.push(async () => {
    agent.destroy()
    await app.close()
    await tb.close()
  })
  const { key } = await tb.keys.create({ accountId: 'acct_1' })
  // Not an upgrade (no `Connection: upgrade`): Node hands it to Fastify as any request.
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      {
        agent,
        host: '127.0.0.1',
        port: (app.server.address() as AddressInfo).port,
        path: '/v1/stream',
        headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('error', reject)
    req.end()
  })
  expect(status).toBe(500)
  // The connection stays open (keep-alive): the request settles at its response's end.
  await eventually(() => settled.length === 1, 'the request settled')
  expect(settled[0]).toMatchObject({ status: 500 })
  expect(await used(tb)).toBe(0)
})

test("Express: an upgrade whose decision throws (the route's cost function) is answered 500 JSON on its socket, reported, and the handler resolves null", async () => {
  const errors: unknown[] = []
  const tb = createTollbooth({ secret: SECRET, ...PLAN, onError: (err) => errors.push(err) })
  const settled = recordSettles(tb)
  const server = createServer()
  const guard = requireApiKeyOnUpgrade(tb, {
    cost: () => {
      throw new Error('price list unavailable')
    },
  })
  const answers: Array<Admission | null> = []
  // The README's handler: an async listener, whose rejection nothing would catch.
  server.on('upgrade', async (req, socket) => {
    answers.push(await guard(req, socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  running.push(async () => {
    await closing(server)
    await tb.close()
  })
  const { key } = await tb.keys.create({ accountId: 'acct_1' })
  const answer = await exchange(
    listening(server),
    'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      `Sec-WebSocket-Version: 13\r\nAuthorization: Bearer ${key}\r\n`,
  )
  expect(answer).toMatch(/^HTTP\/1\.1 500 /)
  expect(answer).toContain('Connection: close')
  expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({
    error: 'Internal server error',
    code: 'internal_error',
  })
  expect(answers).toEqual([null])
  expect(errors).toEqual([new Error('price list unavailable')])
  expect(settled).toEqual([])
  expect(await used(tb)).toBe(0)
})

/** A session that counts the messages it handled and reports 5 in its `close` handler. */
function deflated(ws: WebSocket, apiKey: Admission, received: { count: number }): void {
  ws.on('message', () => received.count++)
  ws.on('close', () => apiKey.report({ cost: 5 }))
}

const withDeflate: Record<
  'express' | 'fastify',
  (tb: Tollbooth, received: { count: number }) => Promise<string>
> = {
  async express(tb, received) {
    const server = createServer()
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: true,
      maxPayload: 1 << 26,
    })
    const guard = requireApiKeyOnUpgrade(tb, { cost: 10 })
    server.on('upgrade', async (req, socket, head) => {
      const apiKey = await guard(req, socket)
      if (apiKey === null) return
      wss.handleUpgrade(req, socket, head, (ws) => deflated(ws, apiKey, received))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    running.push(async () => {
      for (const ws of wss.clients) ws.terminate()
      await closing(server)
    })
    return listening(server)
  },
  async fastify(tb, received) {
    const app = Fastify()
    await app.register(fastifyWebsocket, {
      options: { perMessageDeflate: true, maxPayload: 1 << 26 },
    })
    await app.register(tollbooth, { tb })
    app.get(
      '/v1/realtime',
      { websocket: true, preHandler: fastifyGuard(tb, { cost: 10 }) },
      (ws, r) => deflated(ws, r.apiKey, received),
    )
    await app.listen({ port: 0, host: '127.0.0.1' })
    running.push(() => app.close())
    return listening(app.server)
  },
}

for (const [name, start] of Object.entries(withDeflate))
  test(`${name}: a session closed while \`ws\` still inflates what it received (permessage-deflate) settles after its close handler, charged what that reported`, async () => {
    const tb = createTollbooth({ secret: SECRET, ...PLAN })
    running.push(() => tb.close())
    const settled = recordSettles(tb)
    const received = { count: 0 }
    const url = await start(tb, received)
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${key}` },
      perMessageDeflate: true,
    })
    await new Promise((resolve) => ws.once('open', resolve))
    // Compressed frames the server inflates off the main thread, the connection dropped as soon
    // as they are sent: the socket closes while they are being inflated.
    const large = 'a'.repeat(20_000_000)
    for (let i = 0; i < 3; i++) ws.send(large)
    await eventually(() => ws.bufferedAmount === 0, 'the frames sent')
    ws.terminate()
    await eventually(() => settled.length === 1, 'the session settled')
    expect(settled[0]).toMatchObject({ status: 101 })
    expect(await used(tb)).toBe(5)
    expect(received.count).toBe(3)
  })

for (const [storeName, store] of [
  ['memory', stores.memory],
  ['Redis', stores.Redis],
] as const)
  for (const [name, start] of Object.entries(frameworks))
    describe.skipIf(store === null)(
      `WebSocket sessions behind the guard on ${name}, ${storeName}`,
      () => {
        const setup: typeof setupOn = (start, options, tbOptions, s = store!) =>
          setupOn(start, options, tbOptions, s)
        test('a refused upgrade is answered its status and JSON error, and charges nothing', async () => {
          const s = await setup(start)
          const missing = await connect(s.url)
          expect(missing).toMatchObject({ status: 401, body: { code: 'missing_api_key' } })
          expect(missing.headers['www-authenticate']).toMatch(/^Bearer/)
          const bad = await connect(s.url, `sk_live_${'a'.repeat(33)}`)
          expect(bad).toMatchObject({ status: 401, body: { code: 'invalid_api_key' } })

          const rated = await s.tb.keys.create({
            accountId: 'acct_1',
            limits: { rateLimits: [{ limit: 1, windowMs: 60_000 }] },
          })
          ;(await opened(s.url, rated.key)).close()
          const limited = await connect(s.url, rated.key)
          expect(limited).toMatchObject({ status: 429, body: { code: 'rate_limited' } })
          expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)

          const quota = await s.tb.keys.create({
            accountId: 'acct_1',
            limits: { quotas: { total: 1 } },
          })
          ;(await opened(s.url, quota.key)).close()
          expect(await connect(s.url, quota.key)).toMatchObject({ status: 429 })

          const dear = await setup(start, { cost: 1000 })
          const broke = await dear.tb.keys.create({ accountId: 'acct_2' })
          expect(await connect(dear.url, broke.key)).toMatchObject({
            status: 402,
            body: { code: 'insufficient_credits' },
          })
          await eventually(() => s.settled.length === 2, 'the two admitted sessions settled')
          // Only the two sessions admitted ran, and were charged; no refusal was.
          expect(s.opened).toHaveLength(2)
          expect(dear.opened).toHaveLength(0)
          expect(dear.settled).toHaveLength(0)
          expect(await used(s.tb)).toBe(20)
        })

        test('a session settles once, with 101, when the client closes it; its slot is held until then', async () => {
          const s = await setup(start)
          const one = await s.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
          const ws = await opened(s.url, one.key)
          await roundTrip(ws, 'hello')
          await sleep(50)
          expect(s.settled, 'not settled at the 101').toHaveLength(0)
          const second = await connect(s.url, one.key)
          expect(second).toMatchObject({ status: 429, body: { code: 'concurrency_limited' } })
          ws.close()
          await closed(ws)
          await eventually(() => s.settled.length === 1, 'the session settled')
          expect(s.settled[0]).toMatchObject({ status: 101 })
          const again = await opened(s.url, one.key)
          again.terminate()
          await eventually(() => s.settled.length === 2, 'the second session settled')
          await sleep(30)
          expect(s.settled).toHaveLength(2)
          expect(await used(s.tb)).toBe(20)
        })

        test('a session closed by the server or dropped settles once, and frees its slot', async () => {
          const s = await setup(start)
          const one = await s.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
          const ws = await opened(s.url, one.key)
          ws.send('bye')
          await closed(ws)
          await eventually(() => s.settled.length === 1, 'the session the server closed settled')
          // The TCP connection dropped, no close frame.
          const dropped = await opened(s.url, one.key)
          await roundTrip(dropped, 'hello')
          expect(await connect(s.url, one.key)).toMatchObject({ status: 429 })
          ;(dropped as unknown as { _socket: { destroy(): void } })._socket.destroy()
          await eventually(() => s.settled.length === 2, 'the dropped session settled')
          const third = await opened(s.url, one.key)
          third.close()
          await eventually(() => s.settled.length === 3, 'the third session settled')
          expect(s.settled.map((e) => e.status)).toEqual([101, 101, 101])
        })

        // Its connection closed (a FIN), or reset while no one on the server listens for the
        // upgrade socket's errors (an uncaught ECONNRESET would end the process).
        for (const how of ['closes', 'resets'] as const)
          test(`a client that ${how} its connection while its upgrade is decided is settled 499, not charged, its slot freed`, async () => {
            const store = heldStorage()
            const s = await setup(start, { cost: 10 }, { storage: store.storage })
            const one = await s.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
            const admit = store.hold()
            const socket = await rawUpgrade(s.url, one.key)
            await eventually(() => store.asked === 1, 'the admission to reach the store')
            if (how === 'closes') socket.destroy()
            else socket.resetAndDestroy()
            // The server sees the connection go before the store answers.
            await sleep(50)
            admit()
            await eventually(() => s.settled.length === 1, 'the admission settled')
            expect(s.settled[0]).toMatchObject({ status: 499 })
            expect(s.opened).toHaveLength(0)
            expect(await used(s.tb)).toBe(0)
            const next = await opened(s.url, one.key)
            next.close()
            await eventually(() => s.settled.length === 2, 'the next session settled')
            expect(s.settled[1]).toMatchObject({ status: 101 })
          })

        test('a handshake `ws` refuses after the guard admitted it is settled with its 400, and charges nothing', async () => {
          const s = await setup(start)
          const { key } = await s.tb.keys.create({ accountId: 'acct_1' })
          // No Sec-WebSocket-Key: `ws` answers 400 instead of the 101.
          const answer = await exchange(
            s.url,
            `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${key}\r\n`,
          )
          expect(answer).toMatch(/^HTTP\/1\.1 400 /)
          await eventually(() => s.settled.length === 1, 'the upgrade settled')
          expect(s.settled[0]).toMatchObject({ status: 400 })
          expect(s.opened).toHaveLength(0)
          await s.tb.flush()
          expect(await used(s.tb)).toBe(0)
        })

        test('units reported during the session and at its close are what is charged and recorded', async () => {
          const s = await setup(start)
          const { key } = await s.tb.keys.create({ accountId: 'acct_1' })
          const during = await opened(s.url, key)
          during.send('charge:3')
          await roundTrip(during, 'charge:4')
          during.close()
          await eventually(() => s.settled[0]?.event != null, 'the first session recorded')
          expect(s.settled[0]!.event).toMatchObject({ units: 7, status: 101 })
          const atClose = await opened(s.url, key)
          await roundTrip(atClose, 'close-report:6')
          atClose.close()
          await eventually(() => s.settled[1]?.event != null, 'the second session recorded')
          expect(s.settled[1]!.event).toMatchObject({ units: 6, status: 101 })
          // Nothing reported: the route's cost.
          const none = await opened(s.url, key)
          none.close()
          await eventually(() => s.settled[2]?.event != null, 'the third session recorded')
          expect(s.settled[2]!.event).toMatchObject({ units: 10 })
          expect(await used(s.tb)).toBe(7 + 6 + 10)
        })

        test('a session still open at tb.close({ waitMs }) is settled 499 with what it was charged, nothing held', async () => {
          const s = await setup(start)
          const { key, record } = await s.tb.keys.create({
            accountId: 'acct_1',
            limits: { concurrency: 1 },
          })
          const ws = await opened(s.url, key)
          await roundTrip(ws, 'charge:4')
          await s.tb.close({ waitMs: 50 })
          // Before: close() returned at once, no event (the session settled after it, when a
          // process would have exited), 10 credits and the slot held.
          const events = (await s.tb.storage.usage.logs(record.id, { limit: 10 })).data
          expect(events.map((e) => `${e.status} ${e.units}`)).toEqual(['499 4'])
          expect(await used(s.tb)).toBe(4)
          const slot = `{acct_1}:k:${record.id}:c`
          expect(await s.tb.storage.counters.held(slot, Date.now())).toBe(0)
          ws.close()
        })

        test('a close handler reporting after an await (waitUntil) is charged what it reports, its slot held until then', async () => {
          const s = await setup(start)
          const one = await s.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
          const ws = await opened(s.url, one.key)
          await roundTrip(ws, 'close-await:7')
          ws.close()
          await closed(ws)
          const closedAt = Date.now()
          await sleep(100)
          expect(s.settled, 'not settled while the close handler awaits').toHaveLength(0)
          expect(await connect(s.url, one.key)).toMatchObject({ status: 429 })
          await eventually(() => s.settled[0]?.event != null, 'the session recorded')
          expect(Date.now() - closedAt).toBeGreaterThanOrEqual(190)
          expect(s.settled).toHaveLength(1)
          expect(s.settled[0]!.event).toMatchObject({ units: 7, status: 101 })
          expect(await used(s.tb)).toBe(7)
          const next = await opened(s.url, one.key)
          next.close()
          await eventually(() => s.settled.length === 2, 'the next session settled')
        })

        test('a waitUntil promise that never ends settles at abortSettleMs with what was reported', async () => {
          const s = await setup(start, { cost: 10, abortSettleMs: 400 })
          const one = await s.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
          const ws = await opened(s.url, one.key)
          ws.send('charge:3')
          await roundTrip(ws, 'close-hang')
          ws.close()
          await closed(ws)
          const closedAt = Date.now()
          await sleep(250)
          expect(s.settled, 'still waiting at 250 ms').toHaveLength(0)
          expect(await connect(s.url, one.key)).toMatchObject({ status: 429 })
          await eventually(() => s.settled[0]?.event != null, 'the session recorded')
          expect(Date.now() - closedAt).toBeGreaterThanOrEqual(390)
          expect(s.settled).toHaveLength(1)
          expect(s.settled[0]!.event).toMatchObject({ units: 3, status: 101 })
          expect(await used(s.tb)).toBe(3)
        })

        test('a session longer than the holds’ TTL keeps its slot', async () => {
          const s = await setup(start, { cost: 10 }, { leaseTtlMs: 300, reservationTtlMs: 300 })
          const one = await s.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
          const ws = await opened(s.url, one.key)
          const began = Date.now()
          for (const at of [200, 450, 700, 950]) {
            await sleep(began + at - Date.now())
            expect(await connect(s.url, one.key), `at ${at} ms`).toMatchObject({ status: 429 })
          }
          ws.close()
          await eventually(() => s.settled.length === 1, 'the session settled')
          const after = await opened(s.url, one.key)
          after.close()
          await eventually(() => s.settled.length === 2, 'the next session settled')
        })

        test('the 101 carries the request id and the usage figures', async () => {
          const s = await setup(start)
          const { key } = await s.tb.keys.create({ accountId: 'acct_1' })
          const r = await connect(s.url, key)
          expect(r.status).toBe(101)
          expect(r.headers['x-request-id']).toEqual(expect.any(String))
          expect(r.headers['x-usage-current']).toBe('10')
          expect(r.headers['x-usage-limit']).toBe('100')
          ;(r as Opened).ws.close()
          await eventually(() => s.settled.length === 1, 'the session settled')
        })
      },
    )
