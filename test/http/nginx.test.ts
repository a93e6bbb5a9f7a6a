/**
 * @module test/http/nginx
 *
 * Tollbooth behind a real nginx (`test/support/nginx.ts`), as nearly every deployment runs it,
 * on Hono, Express and Fastify (the behaviour suite's app builders): a client leaving a stream
 * with nginx's response buffering on (its default) and off, a client leaving with
 * `proxy_ignore_client_abort` on and off (on: nginx keeps the upstream request until a write to
 * the client fails, so an answer not yet begun is billed in full), nginx giving up on a slow upstream
 * (`proxy_read_timeout`), kept-alive upstream connections, and whose address the failed-auth
 * guard blocks with nginx's usual forwarding headers.
 */

import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { type Server as HttpServer, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAdaptorServer } from '@hono/node-server'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { afterEach, describe, expect, test } from 'vitest'
import { requireApiKey as requireExpress } from '../../adapters/express/index.js'
import { tollbooth } from '../../adapters/fastify/index.js'
import { requireApiKey as requireHono } from '../../adapters/hono/index.js'
import {
  type Admission,
  createTollbooth,
  type RouteOptions,
  type Tollbooth,
} from '../../src/index.js'
import { establishedTo, FORWARDED, NGINX, type Nginx, startNginx } from '../support/nginx.js'
import { closeServer } from '../support/servers.js'
import type { StartServer } from './behaviour.js'
import { startExpress } from './express-server.js'
import { startWithConfig } from './fastify-server.js'
import {
  eventually,
  gate,
  type Harness,
  harness,
  PREFIXES,
  SECRET,
  type StreamProgress,
  sleep,
  type TestRoute,
} from './harness.js'
import { startHono } from './hono-server.js'

const PLAN = { plans: { pro: { monthlyCredits: 1000 } }, defaultTier: 'pro' }
const ok = (): TestRoute => ({ path: '/v1/ok', handle: () => ({}) })

/** One GET through nginx from the local address `from` (127.0.0.x): status, headers, body. */
function get(
  url: string,
  o: { key?: string; from?: string; headers?: Record<string, string>; agent?: false },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      localAddress: o.from ?? '127.0.0.1',
      headers: { ...o.headers, ...(o.key ? { authorization: `Bearer ${o.key}` } : {}) },
      agent: false,
    })
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * A GET with `key` whose client closes its connection after `ms`, whatever came by then
 * (behind a buffering nginx, a stream's head may come only with its end); resolves then.
 */
function leaveAfter(url: string, key: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const req = request(url, { headers: { authorization: `Bearer ${key}` }, agent: false })
    req.on('response', (res) => res.resume())
    req.on('error', () => {})
    req.end()
    setTimeout(() => {
      req.destroy()
      resolve()
    }, ms)
  })
}

/** `GET /v1/slow` at cost 100: reports 7 credits, then answers once `slow` opens. */
const slowRoute = (slow: { promise: Promise<void> }): TestRoute => ({
  path: '/v1/slow',
  options: { cost: 100 },
  async handle(k: Admission) {
    k.report({ cost: 7 })
    await slow.promise
    return {}
  },
})

/**
 * `GET /v1/stream` at cost 100: 40 events 10 ms apart, one credit reported an event sent;
 * `stopped` is told how far it got.
 */
const streamRoute = (stopped: (progress: StreamProgress) => void): TestRoute => ({
  path: '/v1/stream',
  options: { cost: 100 },
  stream: { count: 40, intervalMs: 10 },
  handle(k: Admission, progress?: StreamProgress) {
    stopped(progress!)
    k.report({ cost: progress!.sent })
  },
})

/** A handler's work: reports `cost` credits, answers `{}`. */
const reported = (k: Admission, cost: number) => {
  k.report({ cost })
  return {}
}

const bogus = (i: number) => `${PREFIXES.consumption}${String(i).padStart(40, 'x')}`

// Express alone in the Express 4 run (vitest.express4.config.ts).
const FRAMEWORKS: [string, StartServer][] = (
  [
    ['Hono', startHono],
    ['Express', startExpress],
    ['Fastify', startWithConfig],
  ] as [string, StartServer][]
).filter(([name]) => !process.env['TOLLBOOTH_EXPRESS_MAJOR'] || name === 'Express')

// Without nginx the suite is skipped, unless services are required (CI installs it).
const skip = !existsSync(NGINX) && process.env['TOLLBOOTH_REQUIRE_SERVICES'] !== '1'

describe.skipIf(skip).each(FRAMEWORKS)('requireApiKey on %s behind nginx', (_, startServer) => {
  let h: Harness | undefined
  let nginx: Nginx | undefined
  afterEach(async () => {
    await nginx?.stop()
    nginx = undefined
    await h?.close()
    h = undefined
  })
  const behind = async (
    routes: TestRoute[],
    location: string[] = [],
    options = {},
    keepalive = false,
  ) => {
    h = await harness(startServer, routes, { ...PLAN, ...options })
    nginx = await startNginx(h.url, { location: [...FORWARDED, ...location], keepalive })
    return h
  }

  // nginx closes its connection to the upstream when the client leaves, buffering or not: the
  // handler sees an abort and the request settles 499 with what it reported, its slot free.
  test.each([
    ['proxy_buffering on (the default)', []],
    ['proxy_buffering off', ['proxy_buffering off;']],
  ])(
    'a client leaving mid-stream with %s: settled once, 499, its report charged, its slot free',
    async (_, location) => {
      let stopped: StreamProgress | undefined
      const h = await behind(
        [
          ok(),
          streamRoute((p) => {
            stopped = p
          }),
        ],
        location,
      )
      const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      await leaveAfter(`${nginx!.url}/v1/stream`, key, 100)
      const t0 = Date.now()
      await eventually(() => !!h.settled[0]?.event, 'the stream to settle')
      console.log(
        Date.now() - t0,
        h.settled[0]!.event!.status,
        stopped,
        nginx!.accessLog(),
        nginx!
          .errorLog()
          .split('\n')
          .filter((l) => !l.includes('[notice]'))
          .join('\n'),
      )
      expect(stopped?.aborted).toBe(true)
      expect(h.settled[0]!.event).toMatchObject({ status: 499, units: stopped!.sent })
      expect(stopped!.sent).toBeLessThan(40)
      expect((await get(`${nginx!.url}/v1/ok`, { key })).status).toBe(200)
      await eventually(() => !!h.settled[1]?.event, 'the next request to settle')
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(stopped!.sent)
    },
  )

  // `proxy_ignore_client_abort on`: nginx keeps its upstream request when the client leaves,
  // until it next writes to that client. An answer that comes whole when the handler ends is
  // then read to its end: tollbooth sees no abort and bills it in full (200, its cost), where
  // by default nginx closes the upstream connection at once (499, refunded: nothing reported).
  test.each([
    ['off (the default)', [], { status: 499, used: 0 }],
    ['on', ['proxy_ignore_client_abort on;'], { status: 200, used: 5 }],
  ])(
    'proxy_ignore_client_abort %s: a client leaving a slow answer before it comes',
    async (_, location, expected) => {
      const slow = gate()
      let finished = false
      const h = await behind(
        [
          {
            path: '/v1/work',
            options: { cost: 5 },
            async handle() {
              await slow.promise
              finished = true
              return {}
            },
          },
        ],
        location,
      )
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      await leaveAfter(`${nginx!.url}/v1/work`, key, 100)
      await sleep(100)
      slow.open()
      await eventually(() => !!h.settled[0]?.event, 'the request to settle')
      expect(finished).toBe(true)
      expect(h.settled[0]!.event).toMatchObject({ path: '/v1/work', status: expected.status })
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(expected.used)
    },
  )

  // It holds the upstream only until a write to the departed client fails: a stream nginx
  // passes on as it comes (buffering off) is cut two events or so after the client left,
  // as without the directive (499, what it sent charged).
  test('proxy_ignore_client_abort on, proxy_buffering off: a client leaving mid-stream still cuts it, settled 499', async () => {
    let stopped: StreamProgress | undefined
    const h = await behind(
      [
        streamRoute((p) => {
          stopped = p
        }),
      ],
      ['proxy_ignore_client_abort on;', 'proxy_buffering off;'],
    )
    const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
    await leaveAfter(`${nginx!.url}/v1/stream`, key, 100)
    await eventually(() => !!h.settled[0]?.event, 'the stream to settle')
    expect(stopped?.aborted).toBe(true)
    expect(stopped!.sent).toBeLessThan(40)
    expect(h.settled[0]!.event).toMatchObject({ status: 499, units: stopped!.sent })
    expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(stopped!.sent)
  })

  // nginx answers 504 itself and closes its upstream connection: the handler's work is what it
  // reported, settled 499 when it ends, its slot taken until then.
  test('proxy_read_timeout shorter than the handler: the client gets 504, settled 499 with the report when the handler ends', async () => {
    const slow = gate()
    const h = await behind([ok(), slowRoute(slow)], ['proxy_read_timeout 200ms;'])
    const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
    expect((await get(`${nginx!.url}/v1/slow`, { key })).status).toBe(504)
    // The handler still runs: its slot is still taken.
    expect((await get(`${nginx!.url}/v1/ok`, { key })).status).toBe(429)
    slow.open()
    await eventually(() => !!h.settled[0]?.event, 'the slow request to settle')
    expect(h.settled[0]!.event).toMatchObject({ path: '/v1/slow', status: 499, units: 7 })
    expect((await get(`${nginx!.url}/v1/ok`, { key })).status).toBe(200)
    await eventually(() => !!h.settled[1]?.event, 'the next request to settle')
    expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(7)
  })

  /** nginx's `$request_id` as the request's Idempotency-Key, unless its client sent one. */
  const IDEMPOTENCY_MAP =
    'map $http_idempotency_key $tb_idempotency_key { "" $request_id; default $http_idempotency_key; }'
  const REAL_IP = 'proxy_set_header X-Real-IP $remote_addr;'
  const BLOCKING = { failedAuth: { limit: 3, windowMs: 60_000, blockMs: 600_000 } }

  // nginx appends the client's address to whatever X-Forwarded-For it sent: with trustProxy: 1
  // the guard blocks that address, whatever the client writes.
  test('trustProxy: 1 behind $proxy_add_x_forwarded_for blocks the real client, which no X-Forwarded-For of its own escapes or shifts onto another', async () => {
    const h = await behind([{ ...ok(), options: { trustProxy: 1 } }], [], BLOCKING)
    const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) {
      const res = await get(`${nginx!.url}/v1/ok`, {
        key: bogus(i),
        from: '127.0.0.2',
        // Each a different spoofed client, one of them the victim's address.
        headers: { 'x-forwarded-for': i % 2 ? '127.0.0.3' : `198.51.100.${i}` },
      })
      statuses.push(res.status)
    }
    expect(statuses).toEqual([401, 401, 403, 403, 403])
    const spoof = { 'x-forwarded-for': '127.0.0.3' }
    expect(
      (await get(`${nginx!.url}/v1/ok`, { key, from: '127.0.0.2', headers: spoof })).status,
    ).toBe(403)
    expect((await get(`${nginx!.url}/v1/ok`, { key, from: '127.0.0.3' })).status).toBe(200)
    await eventually(() => !!h.settled[0]?.event, 'the victim to settle')
    expect(h.settled.map((s) => s.event!.ip)).toEqual(['127.0.0.3'])
    expect((await h.tb.ipBlocks.list()).data.map((b) => b.ip)).toEqual(['127.0.0.2'])
  })

  // The other common snippet: `proxy_set_header X-Real-IP $remote_addr;` and no
  // X-Forwarded-For, so a client's own X-Forwarded-For passes through untouched. Without
  // trustProxy every client is nginx's address: one client's bad keys, sent with no
  // forwarding header of its own, blocked every client at `limit` (the guard looked for
  // X-Forwarded-For and Forwarded only to apply proxiedLimit).
  test('X-Real-IP only, trustProxy off: one client sending bad keys does not block another', async () => {
    h = await harness(startServer, [ok()], { ...PLAN, ...BLOCKING })
    nginx = await startNginx(h.url, { location: [REAL_IP] })
    const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
    const statuses: number[] = []
    for (let i = 0; i < 5; i++)
      statuses.push((await get(`${nginx.url}/v1/ok`, { key: bogus(i), from: '127.0.0.2' })).status)
    // Before: 403 ip_blocked, as were the bad client's third to fifth.
    expect((await get(`${nginx.url}/v1/ok`, { key, from: '127.0.0.3' })).status).toBe(200)
    expect(statuses).toEqual([401, 401, 401, 401, 401])
  })

  // With `{ hops: 1, header: 'x-real-ip' }` the guard reads the address nginx wrote (its
  // `proxy_set_header` replaces any X-Real-IP the client sent): trustProxy: 1 there would read
  // the client's own X-Forwarded-For.
  test("X-Real-IP only, trustProxy { hops: 1, header: 'x-real-ip' }: blocks the real client, whatever it writes", async () => {
    const trustProxy = { hops: 1, header: 'x-real-ip' } as const
    h = await harness(startServer, [{ ...ok(), options: { trustProxy } }], { ...PLAN, ...BLOCKING })
    nginx = await startNginx(h.url, { location: [REAL_IP] })
    const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      const spoof = {
        'x-real-ip': i % 2 ? '127.0.0.3' : `198.51.100.${i}`,
        'x-forwarded-for': '127.0.0.3',
      }
      statuses.push(
        (await get(`${nginx.url}/v1/ok`, { key: bogus(i), from: '127.0.0.2', headers: spoof }))
          .status,
      )
    }
    expect(statuses).toEqual([401, 401, 403, 403])
    expect((await get(`${nginx.url}/v1/ok`, { key, from: '127.0.0.3' })).status).toBe(200)
    await eventually(() => !!h!.settled[0]?.event, 'the victim to settle')
    expect(h.settled.map((s) => s.event!.ip)).toEqual(['127.0.0.3'])
    expect((await h.tb.ipBlocks.list()).data.map((b) => b.ip)).toEqual(['127.0.0.2'])
  })

  // Upstream keepalive: one upstream connection carries requests of many clients in turn. Each
  // is its own: its client's address, its own settle; a client leaving one closes that
  // connection only (nginx cannot reuse it mid-response), the next requests are whole.
  test('kept-alive upstream connections: each request settled once as its own, an abort on one is 499', async () => {
    let stopped: StreamProgress | undefined
    const h = await behind(
      [
        { ...ok(), options: { trustProxy: 1, cost: 2 } },
        {
          path: '/v1/stream',
          options: { cost: 100, trustProxy: 1 },
          stream: { count: 40, intervalMs: 10 },
          handle(k: Admission, progress?: StreamProgress) {
            stopped = progress
            k.report({ cost: progress!.sent })
          },
        },
      ],
      ['proxy_buffering off;'],
      BLOCKING,
      true,
    )
    const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) {
      // In turn: the bad client, then the good one, on the same upstream connection.
      statuses.push((await get(`${nginx!.url}/v1/ok`, { key: bogus(i), from: '127.0.0.2' })).status)
      statuses.push((await get(`${nginx!.url}/v1/ok`, { key, from: '127.0.0.3' })).status)
    }
    expect(statuses).toEqual([401, 200, 401, 200, 403, 200, 403, 200, 403, 200, 403, 200])
    // 12 requests, one after another, over one or two connections nginx keeps open.
    const upstreamPort = Number(new URL(h.url).port)
    expect(establishedTo(upstreamPort)).toBeGreaterThan(0)
    expect(establishedTo(upstreamPort)).toBeLessThan(3)
    await leaveAfter(`${nginx!.url}/v1/stream`, key, 100)
    await eventually(() => !!h.settled[6]?.event, 'the stream to settle')
    expect(stopped).toMatchObject({ aborted: true })
    expect(h.settled[6]!.event).toMatchObject({
      path: '/v1/stream',
      status: 499,
      units: stopped!.sent,
    })
    for (let i = 0; i < 3; i++)
      expect((await get(`${nginx!.url}/v1/ok`, { key, from: '127.0.0.3' })).status).toBe(200)
    await eventually(() => h.settled.filter((s) => s.event).length === 10, 'all to settle')
    expect(h.settled.map((s) => s.status)).toEqual([...Array(6).fill(200), 499, 200, 200, 200])
    expect(h.settled.map((s) => s.event!.ip)).toEqual([
      ...Array(6).fill('127.0.0.3'),
      '127.0.0.1',
      ...Array(3).fill('127.0.0.3'),
    ])
    expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(9 * 2 + stopped!.sent)
  })

  /**
   * `/v1/slow` (see {@link slowRoute}) on two "instances" (the server twice in an upstream
   * block, never marked down: nginx's max_fails=1 would answer 502 next) with a 200 ms
   * proxy_read_timeout, on a plan of `credits`; `idempotent` maps $request_id to Idempotency-Key.
   */
  const behindTwo = async (
    slow: { promise: Promise<void> },
    credits: number,
    idempotent: boolean,
  ) => {
    h = await harness(startServer, [ok(), slowRoute(slow)], {
      plans: { pro: { monthlyCredits: credits } },
      defaultTier: 'pro',
    })
    const host = new URL(h.url).host
    nginx = await startNginx(h.url, {
      http: [
        `upstream two { server ${host} max_fails=0; server ${host} max_fails=0; }`,
        ...(idempotent ? [IDEMPOTENCY_MAP] : []),
      ],
      location: [
        ...FORWARDED,
        'proxy_read_timeout 200ms;',
        ...(idempotent ? ['proxy_set_header Idempotency-Key $tb_idempotency_key;'] : []),
      ],
      pass: 'http://two',
    })
    return { h, nginx }
  }

  // Two instances in an upstream block: nginx's default `proxy_next_upstream error timeout`
  // sends a GET that outlasts proxy_read_timeout again to the next instance, and each attempt
  // is admitted and billed what its handler reported (measured: 14 credits for one request
  // answered 504, 7 on each instance). Given the request's own Idempotency-Key (the client's,
  // else nginx's $request_id), tollbooth charges the attempts once.
  test.each([
    ['without an Idempotency-Key: each attempt billed', false, 14],
    ['with $request_id as Idempotency-Key: billed once', true, 7],
  ])(
    'a GET retried on the next instance after proxy_read_timeout, %s',
    async (_, idempotent, used) => {
      const slow = gate()
      // 200 credits: room for both attempts' estimates of 100, and after them for the charges
      // and one more estimate, never for a hold left behind as well.
      const { h, nginx } = await behindTwo(slow, 200, idempotent)
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      expect((await get(`${nginx.url}/v1/slow`, { key })).status).toBe(504)
      expect(h.handled).toHaveLength(2)
      slow.open()
      await eventually(() => h!.settled.length === 2, 'both attempts to settle')
      expect(h.settled.map((s) => s.status)).toEqual([499, 499])
      // The second attempt's usage, recorded or dropped as a repeat, once both settle calls ended.
      await eventually(
        () => h!.settled.filter((s) => s.event).length === (idempotent ? 1 : 2),
        'usage',
      )
      await sleep(50)
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(used)
      expect(h.settled.filter((s) => s.event).map((s) => s.event!.units)).toEqual(
        idempotent ? [7] : [7, 7],
      )
      // No hold left behind: another request, holding 100 credits, is let in and charged 7.
      expect((await get(`${nginx.url}/v1/slow`, { key })).status).toBe(200)
      await eventually(() => !!h!.settled[2]?.event, 'the next request to settle')
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(used + 7)
    },
  )

  // The retry meets the first attempt's hold: with credits for one estimate only, it is
  // refused, and nginx hands the client that 402 instead of its 504.
  test("a GET retried on the next instance with credits for one estimate: the client gets the retry's 402", async () => {
    const slow = gate()
    const { h, nginx } = await behindTwo(slow, 150, false)
    const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
    const res = await get(`${nginx.url}/v1/slow`, { key })
    expect([res.status, JSON.parse(res.body).code]).toEqual([402, 'insufficient_credits'])
    expect(h.handled).toHaveLength(1)
    slow.open()
    await eventually(() => !!h.settled[0]?.event, 'the first attempt to settle')
    expect(h.settled[0]!.event).toMatchObject({ status: 499, units: 7 })
    expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(7)
  })

  // What nginx sends on as it is, and what it answers itself: a HEAD billed as its GET, a body
  // read whole by nginx first, a client's `Connection: close`; a body over client_max_body_size
  // is nginx's 413, never admitted.
  test('HEAD, a buffered POST body, Connection: close, and client_max_body_size', async () => {
    const h = await behind(
      [
        { path: '/v1/report', options: { cost: 100 }, handle: (k) => reported(k, 3) },
        {
          method: 'POST',
          path: '/v1/post',
          options: { cost: 100 },
          handle: (k) => reported(k, 4),
        },
      ],
      ['client_max_body_size 64k;'],
    )
    const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
    const auth = { authorization: `Bearer ${key}` }
    const head = await fetch(`${nginx!.url}/v1/report`, { method: 'HEAD', headers: auth })
    expect([head.status, await head.text()]).toEqual([200, ''])
    await eventually(() => !!h.settled[0]?.event, 'the HEAD to settle')
    expect(h.settled[0]!.event).toMatchObject({ method: 'HEAD', status: 200, units: 3 })
    const post = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${nginx!.url}/v1/post`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', ...headers },
        body,
      })
    const big = JSON.stringify({ pad: 'x'.repeat(100_000) })
    expect((await post(big)).status).toBe(413)
    const small = JSON.stringify({ pad: 'x'.repeat(30_000) })
    const closed = await post(small, { connection: 'close' })
    expect(closed.status).toBe(200)
    await closed.text()
    await eventually(() => !!h.settled[1]?.event, 'the POST to settle')
    expect(h.settled[1]!.event).toMatchObject({ method: 'POST', status: 200, units: 4 })
    // The 413 never reached tollbooth: two admissions, 3 + 4 credits, the slot free.
    expect(h.handled).toHaveLength(2)
    expect(h.settled).toHaveLength(2)
    expect((await get(`${nginx!.url}/v1/report`, { key })).status).toBe(200)
    await eventually(() => !!h.settled[2]?.event, 'the GET to settle')
    expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(3 + 4 + 3)
  })
})

/** Serves `GET /v1/ok` guarded by each framework's requireApiKey, on a Unix socket at `path`. */
const ON_UNIX_SOCKET: [
  string,
  (tb: Tollbooth, path: string, o: RouteOptions) => Promise<() => Promise<void>>,
][] = [
  [
    'Hono',
    async (tb, path, o) => {
      const app = new Hono()
      app.onError((err, c) => (err instanceof HTTPException ? err.getResponse() : c.text('', 500)))
      app.get('/v1/ok', requireHono(tb, o), (c) => c.json({}))
      const server = createAdaptorServer({ fetch: app.fetch }) as HttpServer
      await new Promise<void>((r) => server.listen(path, r))
      return () => closeServer(server)
    },
  ],
  [
    'Express',
    async (tb, path, o) => {
      const app = express()
      app.get('/v1/ok', requireExpress(tb, o), (_req, res) => res.json({}))
      const server = app.listen(path)
      await new Promise<void>((r) => server.once('listening', r))
      return () => closeServer(server)
    },
  ],
  [
    'Fastify',
    async (tb, path, o) => {
      const app = Fastify()
      await app.register(tollbooth, { tb })
      app.get('/v1/ok', { config: { tollbooth: o } }, async () => ({}))
      await app.listen({ path })
      return () => app.close()
    },
  ],
]

// nginx in front over a Unix socket (`proxy_pass http://unix:…`): the socket has no address.
// The failed-auth guard counted nothing then: bad keys without end, never a 403.
describe.skipIf(skip).each(ON_UNIX_SOCKET)(
  'requireApiKey on %s behind nginx on a Unix socket',
  (_, serve) => {
    /** `tb` served on a Unix socket with route options `o`, nginx in front; runs `body`. */
    const behindUnix = async (
      o: RouteOptions,
      body: (url: string, tb: Tollbooth) => Promise<void>,
    ) => {
      const tb = createTollbooth({
        secret: SECRET,
        prefixes: PREFIXES,
        failedAuth: { limit: 3, windowMs: 60_000, blockMs: 600_000, proxiedLimit: 8 },
      })
      const dir = mkdtempSync(join(tmpdir(), 'tollbooth-unix-'))
      const path = join(dir, 'api.sock')
      const close = await serve(tb, path, o)
      const nginx = await startNginx(`http://unix:${path}`, { location: FORWARDED })
      try {
        await body(nginx.url, tb)
      } finally {
        await nginx.stop()
        await close()
        await tb.close()
        rmSync(dir, { recursive: true, force: true })
      }
    }

    test('trustProxy off: a flood of bad keys is stopped at proxiedLimit, as behind any proxy', () =>
      behindUnix({}, async (url, tb) => {
        const { key } = await tb.keys.create({ accountId: 'acct_1' })
        expect((await get(`${url}/v1/ok`, { key })).status).toBe(200)
        const statuses: number[] = []
        for (let i = 0; i < 10; i++)
          statuses.push((await get(`${url}/v1/ok`, { key: bogus(i) })).status)
        // Before: ten 401s, and as many more as anyone sent.
        expect(statuses).toEqual([...Array(7).fill(401), 403, 403, 403])
        // Counted as 0.0.0.0, the address no client has: listed, and lifted, as any block.
        expect((await tb.ipBlocks.list()).data.map((b) => b.ip)).toEqual(['0.0.0.0'])
        await tb.ipBlocks.lift('0.0.0.0')
        expect((await get(`${url}/v1/ok`, { key })).status).toBe(200)
      }))

    test('trustProxy: 1: the real client is blocked at limit, another is served', () =>
      behindUnix({ trustProxy: 1 }, async (url, tb) => {
        const { key } = await tb.keys.create({ accountId: 'acct_1' })
        const statuses: number[] = []
        for (let i = 0; i < 4; i++)
          statuses.push((await get(`${url}/v1/ok`, { key: bogus(i), from: '127.0.0.2' })).status)
        expect(statuses).toEqual([401, 401, 403, 403])
        expect((await get(`${url}/v1/ok`, { key, from: '127.0.0.3' })).status).toBe(200)
        expect((await tb.ipBlocks.list()).data.map((b) => b.ip)).toEqual(['127.0.0.2'])
      }))
  },
)
