/**
 * @module test/http/behaviour
 *
 * One behaviour suite for every framework adapter: `describeBehaviour(name, startServer)` runs
 * each case against a real server of that framework on 127.0.0.1:0. Every denial asserts the
 * route handler never ran; after each case, every admission a handler saw has been settled by
 * the adapter exactly once.
 */

import { get } from 'node:http'
import { connect } from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import { createTollbooth, type TollboothOptions } from '../../src/index.js'
import {
  eventually,
  gate,
  type Harness,
  harness,
  heldStorage,
  PREFIXES,
  type Req,
  type Res,
  type StartServer,
  type TestRoute,
} from './harness.js'

export type { StartServer, TestRoute, TestServer } from './harness.js'

const ok = (): TestRoute => ({ path: '/v1/ok', handle: (k) => ({ account: k.accountId }) })
const PLAN = { plans: { pro: { monthlyCredits: 100 } }, defaultTier: 'pro' }

/** A GET's response head as sent: its header names in their case and values, in order. */
function rawHead(url: string, key: string): Promise<Array<[string, string]>> {
  return new Promise((resolve, reject) => {
    get(url, { headers: { authorization: `Bearer ${key}` } }, (res) => {
      const raw = res.rawHeaders
      const out: Array<[string, string]> = []
      for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!])
      res.resume()
      res.on('end', () => resolve(out))
    }).on('error', reject)
  })
}

/** Sends a request that must be denied from the prepared record, without running the handler. */
async function expectDenied(
  h: Harness,
  path: string,
  init: Req,
  status: number,
  error: string,
  code: string,
): Promise<Res> {
  const ran = h.handled.length
  const res = await h.fetch(path, init)
  expect(res.status).toBe(status)
  expect(res.body).toEqual({ error, code })
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  expect(res.headers.get('x-request-id')).toMatch(/^req_/)
  expect(h.handled).toHaveLength(ran)
  return res
}

export function describeBehaviour(name: string, startServer: StartServer): void {
  describe(`requireApiKey on ${name}`, () => {
    let h: Harness | undefined
    const start = async (routes: TestRoute[], options: Partial<TollboothOptions> = {}) => {
      h = await harness(startServer, routes, options)
      return h
    }
    const key = async (input: Record<string, unknown> = {}) =>
      (await h!.tb.keys.create({ accountId: 'acct_1', ...input })).key

    afterEach(async () => {
      if (!h) return
      const { handled, finished, settled } = h
      await eventually(() => finished.count === handled.length, 'handlers to return')
      await eventually(() => settled.length >= handled.length, 'every admission to settle')
      for (const d of handled) expect(settled.filter((s) => s.decision === d)).toHaveLength(1)
      expect(settled).toHaveLength(handled.length)
      await h.close()
      h = undefined
    })

    // Two guards on one request (a global one and the route's): each would count and charge
    // the request, and they share the response (on Hono and Express the second hid the first's
    // admission, which never settled, and the head was never written). The second answers a
    // configuration error instead, before counting anything; the first settles as a failed
    // handler (500, not billed), so nothing is left held.
    test('answers 500 when a second guard meets an admitted request, and settles the first', async () => {
      const h = await start([{ ...ok(), outer: { cost: 1 }, options: { cost: 5 } }])
      const k = await key()
      const res = await h.fetch('/v1/ok', { key: k })
      expect(res.status).toBe(500)
      expect(h.handled).toHaveLength(0)
      await eventually(() => h.settled.length === 1, 'the first admission to settle')
      const [first] = h.settled.splice(0)
      expect(first!.status).toBe(500)
      expect(first!.event?.units ?? 0, 'nothing billed').toBe(0)
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(500)
      await eventually(() => h.settled.length === 1, 'the second request to settle')
      h.settled.length = 0
    })

    test('refuses a request without a key (401, WWW-Authenticate: Bearer)', async () => {
      const h = await start([ok()])
      const res = await expectDenied(h, '/v1/ok', {}, 401, 'Missing API Key', 'missing_api_key')
      expect(res.headers.get('www-authenticate')).toBe('Bearer')
    })

    test('names a key sent in Authorization without "Bearer " (401 invalid_request)', async () => {
      const h = await start([ok()])
      const k = await key()
      for (const auth of [k, `Token ${k}`, 'Bearer', 'Bearer ']) {
        const res = await expectDenied(
          h,
          '/v1/ok',
          { headers: { authorization: auth } },
          401,
          'The Authorization header must be "Bearer <key>"',
          'invalid_request',
        )
        expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_request"')
      }
    })

    test('refuses a malformed and an unknown key with Invalid API Key', async () => {
      const h = await start([ok()])
      const other = createTollbooth({
        secret: 'another-secret-another-secret-another',
        prefixes: PREFIXES,
      })
      const unknown = (await other.keys.create({ accountId: 'acct_x' })).key
      for (const k of [`${PREFIXES.consumption}not-a-real-key`, unknown]) {
        const res = await expectDenied(
          h,
          '/v1/ok',
          { key: k },
          401,
          'Invalid API Key',
          'invalid_api_key',
        )
        expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"')
      }
      await other.close()
    })

    test('refuses inactive, expired and revoked keys with the seed strings', async () => {
      const h = await start([ok()])
      const inactive = await key({ active: false })
      const expiring = await key({ expiresAt: h.clock.now() + 60_000 })
      const revoked = await h.tb.keys.create({ accountId: 'acct_1' })
      expect((await h.fetch('/v1/ok', { key: expiring })).status).toBe(200)
      await h.tb.keys.revoke(revoked.record.id)
      h.clock.advance(60_000)
      const cases: Array<[string, string, string]> = [
        [inactive, 'Inactive API Key', 'inactive_api_key'],
        [expiring, 'Expired API Key', 'expired_api_key'],
        [revoked.key, 'Invalid API Key', 'invalid_api_key'],
      ]
      for (const [k, error, code] of cases) {
        const res = await expectDenied(h, '/v1/ok', { key: k }, 401, error, code)
        expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"')
      }
    })

    test('refuses the wrong key kind with 403, both ways', async () => {
      const h = await start([ok(), { ...ok(), path: '/admin', options: { kind: 'management' } }])
      const mk = await key({ kind: 'management' })
      const ck = await key()
      await expectDenied(
        h,
        '/v1/ok',
        { key: mk },
        403,
        'Management keys cannot be used on this route; use a consumption key',
        'wrong_key_kind',
      )
      await expectDenied(
        h,
        '/admin',
        { key: ck },
        403,
        'This route accepts management keys only; consumption keys are refused',
        'wrong_key_kind',
      )
      expect((await h.fetch('/admin', { key: mk })).status).toBe(200)
    })

    test('refuses a key without the route scope with 403', async () => {
      const h = await start([{ ...ok(), options: { scopes: ['tts:write'] } }])
      const reader = await key({ scopes: ['tts:read'] })
      await expectDenied(
        h,
        '/v1/ok',
        { key: reader },
        403,
        'Missing scope: tts:write',
        'insufficient_scope',
      )
      expect((await h.fetch('/v1/ok', { key: await key({ scopes: ['tts:write'] }) })).status).toBe(
        200,
      )
    })

    test('reads the key from the configured key sources only', async () => {
      const h = await start([{ ...ok(), options: { keySources: ['x-api-key'] } }])
      const k = await key()
      await expectDenied(h, '/v1/ok', { key: k }, 401, 'Missing API Key', 'missing_api_key')
      const res = await h.fetch('/v1/ok', { headers: { 'x-api-key': k } })
      expect(res.status).toBe(200)
      expect(res.body).toEqual({ account: 'acct_1' })
    })

    test('refuses past a rolling quota: 429 by default, quotaStatus 401 by option', async () => {
      const h = await start([ok(), { ...ok(), path: '/v2/ok', options: { quotaStatus: 401 } }])
      const a = await key({ limits: { quotas: { daily: 2 } } })
      const b = await key({ limits: { quotas: { daily: 2 } } })
      for (let i = 0; i < 2; i++) {
        expect((await h.fetch('/v1/ok', { key: a })).status).toBe(200)
        expect((await h.fetch('/v2/ok', { key: b })).status).toBe(200)
      }
      const ran = h.handled.length
      const r429 = await h.fetch('/v1/ok', { key: a })
      const r401 = await h.fetch('/v2/ok', { key: b })
      for (const [res, status] of [
        [r429, 429],
        [r401, 401],
      ] as const) {
        expect(res.status).toBe(status)
        expect(res.body).toEqual({
          error: 'Rate limit exceeded: quota daily',
          code: 'quota_exceeded',
        })
        expect(res.headers.get('content-type')).toMatch(/^application\/json/)
      }
      expect(h.handled).toHaveLength(ran)
    })

    test('refuses past a rate limit with 429, Retry-After and X-RateLimit-*', async () => {
      const h = await start([ok()])
      const k = await key({ limits: { rateLimits: [{ limit: 2, windowMs: 60_000 }] } })
      const first = await h.fetch('/v1/ok', { key: k })
      expect(first.headers.get('x-ratelimit-limit')).toBe('2')
      expect(first.headers.get('x-ratelimit-remaining')).toBe('1')
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
      const res = await h.fetch('/v1/ok', { key: k })
      expect(res.status).toBe(429)
      expect(res.body).toEqual({
        error: 'Rate limit exceeded: per-minute rate limit of this key',
        code: 'rate_limited',
      })
      const retryAfter = Number(res.headers.get('retry-after'))
      expect(retryAfter).toBeGreaterThanOrEqual(1)
      expect(retryAfter).toBeLessThanOrEqual(60)
      expect(res.headers.get('x-ratelimit-limit')).toBe('2')
      expect(res.headers.get('x-ratelimit-remaining')).toBe('0')
      expect(h.handled).toHaveLength(2)
      h.clock.advance(retryAfter * 1000)
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
    })

    test('releases the concurrency lease after a thrown handler', async () => {
      const throws: TestRoute = {
        path: '/v1/boom',
        handle: () => {
          throw new Error('handler failed')
        },
      }
      const h = await start([ok(), throws])
      const k = await key({ limits: { concurrency: 1 } })
      expect((await h.fetch('/v1/boom', { key: k })).status).toBe(500)
      await eventually(() => h.settled.length === 1, 'the thrown request to settle')
      expect(h.settled[0]!.status).toBe(500)
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
    })

    test.each([
      ['a GET', 'GET', undefined],
      ['a POST whose body was read', 'POST', { text: 'hello' }],
    ] as const)(
      'holds the concurrency lease of a request whose client aborted %s until its handler ends',
      async (_, method, json) => {
        const hold = gate()
        const slow: TestRoute = {
          method,
          path: '/v1/slow',
          handle: (k) =>
            hold.promise.then(() => {
              k.report({ cost: 3 })
              return {}
            }),
        }
        const h = await start([ok(), { ...slow, options: { cost: 5 } }], PLAN)
        const k = await key({ limits: { concurrency: 1 } })
        const ac = new AbortController()
        const pending = h
          .fetch('/v1/slow', { key: k, json, signal: ac.signal })
          .catch((e: Error) => e)
        await eventually(() => h.handled.length === 1, 'the slow handler to start')
        ac.abort()
        expect(await pending).toBeInstanceOf(Error)
        // The handler still runs: its slot stays taken and nothing is settled.
        await new Promise((r) => setTimeout(r, 50))
        const busy = await h.fetch('/v1/ok', { key: k })
        expect(busy.status).toBe(429)
        expect((busy.body as { code: string }).code).toBe('concurrency_limited')
        expect(h.settled).toHaveLength(0)
        hold.open()
        await eventually(() => !!h.settled[0]?.event, 'the aborted request to settle')
        expect(h.settled.map((s) => s.status)).toEqual([499])
        // What the handler reported on its way out is charged (the default policy).
        expect(h.settled[0]!.event).toMatchObject({ status: 499, units: 3 })
        expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
        expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(3)
      },
    )

    // A store that answers over the network (Redis, PostgreSQL) takes a while to admit: a client
    // that leaves in that time is gone before the adapter watches its response.
    test('settles a request whose client aborted while its admission was in flight, and frees its slot', async () => {
      const store = heldStorage()
      const h = await start([{ ...ok(), options: { cost: 5 } }], {
        ...PLAN,
        storage: store.storage,
      })
      const k = await key({ limits: { concurrency: 1 } })
      const admit = store.hold()
      const ac = new AbortController()
      const pending = h.fetch('/v1/ok', { key: k, signal: ac.signal }).catch((e: Error) => e)
      await eventually(() => store.asked === 1, 'the admission to reach the store')
      ac.abort()
      expect(await pending).toBeInstanceOf(Error)
      // The server sees the client go before the store answers.
      await new Promise((r) => setTimeout(r, 50))
      admit()
      await eventually(() => h.settled.length === 1, 'the aborted request to settle')
      expect(h.settled.map((s) => s.status)).toEqual([499])
      await eventually(() => !!h.settled[0]!.event, 'its usage event')
      expect(h.settled[0]!.event).toMatchObject({ status: 499, units: 0 })
      // Its slot and its hold are given back: the next request is admitted, nothing charged.
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
      await eventually(() => h.settled.length === 2, 'the next request to settle')
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(5)
    })

    // HTTP/1.1 pipelining: Node answers a connection's requests in order, a response getting
    // the socket once the one before it has finished. When the client closes the connection
    // first, the queued response is dropped without a `close` of its own: it was never settled,
    // its credits held and its concurrency slot taken until they expired (5 minutes).
    test('settles a request pipelined behind a slow one when the client closes the connection', async () => {
      const hold = gate()
      const slow: TestRoute = { path: '/v1/slow', handle: () => hold.promise.then(() => ({})) }
      const h = await start([{ ...ok(), options: { cost: 5 } }, slow], PLAN)
      const first = await key()
      const k = await key({ limits: { concurrency: 1 } })
      const url = new URL(h.url)
      const socket = connect(Number(url.port), url.hostname)
      socket.on('error', () => {})
      const get = (path: string, key: string) =>
        `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${key}\r\n\r\n`
      socket.write(get('/v1/slow', first) + get('/v1/ok', k))
      // Both admitted; the second one's handler has answered, its response queued.
      await eventually(() => h.finished.count === 1 && h.handled.length === 2, 'both handlers')
      socket.destroy()
      await eventually(() => h.settled.length === 1, 'the queued request to settle')
      expect(h.settled[0]!.decision).toBe(h.handled[1])
      expect(h.settled[0]!.status).toBe(499)
      await eventually(() => !!h.settled[0]!.event, 'its usage event')
      expect(h.settled[0]!.event).toMatchObject({ status: 499, units: 0 })
      // Its slot and its hold are given back.
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
      hold.open()
      await eventually(() => h.settled.length === 3, 'the slow request to settle')
      expect(h.settled.map((x) => x.status).sort()).toEqual([200, 499, 499])
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(5)
    })

    test('sends X-Usage-* after the charge the handler reported', async () => {
      const h = await start(
        [
          {
            path: '/v1/tts',
            options: { cost: 10 },
            handle: (k) => {
              k.charge(5)
              return {}
            },
          },
          {
            path: '/v1/chat',
            options: { cost: 4, category: 'llm' },
            handle: (k) => {
              k.report({ cost: 2, provider: 'openai' })
              return {}
            },
          },
        ],
        PLAN,
      )
      const k = await key()
      const tts = await h.fetch('/v1/tts', { key: k })
      expect(tts.status).toBe(200)
      expect(tts.headers.get('x-usage-current')).toBe('5')
      expect(tts.headers.get('x-usage-limit')).toBe('100')
      expect(tts.headers.get('x-usage-remaining')).toBe('95')
      expect(tts.headers.get('x-usage-bypassed')).toBe('false')
      await eventually(() => h.settled.length === 1, 'the first request to settle')
      const chat = await h.fetch('/v1/chat', { key: k })
      expect(chat.headers.get('x-usage-current')).toBe('7')
      expect(chat.headers.get('x-usage-remaining')).toBe('93')
      expect(chat.headers.get('x-provider-used')).toBe('openai')
      await eventually(() => h.settled.length === 2 && !!h.settled[1]!.event, 'settle')
      expect(h.settled[1]!.event).toMatchObject({ units: 2, category: 'llm', path: '/v1/chat' })
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(7)
    })

    // A handler's own header of one of tollbooth's names wins over tollbooth's, in any case, and
    // goes out once, whether tollbooth's were written before the handler (no usage figures to
    // wait for) or after it; tollbooth's others go out under their lowercase names on every
    // framework, so all three send the same bytes.
    test('a header the handler sets itself replaces tollbooth’s, once; the rest go out lowercase', async () => {
      const own = { 'x-request-id': 'mine', 'X-RateLimit-Limit': 'theirs' }
      const h = await start(
        [
          { ...ok(), path: '/v1/metered', options: { cost: 1 }, headers: own },
          { ...ok(), path: '/v1/free', headers: own },
        ],
        PLAN,
      )
      const k = await key({ limits: { rateLimits: [{ limit: 5, windowMs: 1000 }] } })
      for (const [i, path] of ['/v1/metered', '/v1/free'].entries()) {
        const head = await rawHead(`${h.url}${path}`, k)
        const values = (name: string) =>
          head.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
        expect(values('x-request-id'), path).toEqual(['mine'])
        expect(values('x-ratelimit-limit'), path).toEqual(['theirs'])
        expect(values('x-ratelimit-remaining'), path).toEqual([String(4 - i)])
        const ours = head.filter(([n]) => /^x-(ratelimit-re|usage-)/i.test(n)).map(([n]) => n)
        expect(ours.length, path).toBeGreaterThan(1)
        for (const n of ours) expect(n, path).toBe(n.toLowerCase())
        await eventually(() => h.settled.length === h.handled.length, 'settle')
      }
      expect(h.settled.map((s) => s.status)).toEqual([200, 200])
    })

    // And one set by a middleware in front of the guard (a request-id middleware, say) stays
    // too, whether tollbooth writes its own before the handler or after it.
    test('a header set in front of the guard stays too, on a metered and an unmetered route', async () => {
      const before = { 'X-Request-Id': 'early' }
      const h = await start(
        [
          { ...ok(), path: '/v1/metered', options: { cost: 1 }, before },
          { ...ok(), path: '/v1/free', before },
        ],
        PLAN,
      )
      const k = await key({ limits: { rateLimits: [{ limit: 5, windowMs: 1000 }] } })
      for (const path of ['/v1/metered', '/v1/free']) {
        const head = await rawHead(`${h.url}${path}`, k)
        const values = (name: string) =>
          head.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
        expect(values('x-request-id'), path).toEqual(['early'])
        expect(values('x-ratelimit-limit'), path).toEqual(['5'])
        await eventually(() => h.settled.length === h.handled.length, 'settle')
      }
    })

    test('sends only the header families the route enables', async () => {
      const quiet = { cost: 1, headers: { requestId: false, usage: false, rateLimit: false } }
      const h = await start([{ ...ok(), options: quiet }], PLAN)
      const k = await key({ limits: { rateLimits: [{ limit: 5, windowMs: 1000 }] } })
      const res = await h.fetch('/v1/ok', { key: k })
      expect(res.status).toBe(200)
      for (const name of ['x-request-id', 'x-usage-current', 'x-ratelimit-limit'])
        expect(res.headers.get(name)).toBeNull()
    })

    test('does not charge a request served on the caller own provider key (BYOK)', async () => {
      const h = await start(
        [
          {
            path: '/v1/chat',
            options: { cost: 3, byok: true },
            handle: (k) => {
              k.report({ provider: 'openai' })
              return { got: k.providerKeys['openai'] === 'sk-caller-openai-key' }
            },
          },
        ],
        PLAN,
      )
      const k = await key()
      const res = await h.fetch('/v1/chat', {
        key: k,
        headers: { 'X-Provider-Key-OpenAI': 'sk-caller-openai-key' },
      })
      expect(res.status).toBe(200)
      expect(res.body).toEqual({ got: true })
      expect(res.headers.get('x-usage-bypassed')).toBe('true')
      expect(res.headers.get('x-usage-current')).toBe('0')
      expect(res.headers.get('x-provider-used')).toBe('openai')
      for (const [, v] of res.headers) expect(v).not.toContain('sk-caller-openai-key')
      await eventually(() => !!h.settled[0]?.event, 'settle')
      expect(h.settled[0]!.event).toMatchObject({ units: 0, bypassed: true })
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(0)
    })

    test('generates X-Request-Id, and echoes a valid incoming one', async () => {
      const h = await start([{ ...ok(), handle: (k) => ({ id: k.requestId }) }])
      const k = await key()
      const fresh = await h.fetch('/v1/ok', { key: k })
      expect(fresh.headers.get('x-request-id')).toMatch(/^req_/)
      expect(fresh.body).toEqual({ id: fresh.headers.get('x-request-id') })
      const echoed = await h.fetch('/v1/ok', {
        key: k,
        headers: { 'x-request-id': 'abc-123.X:9_z' },
      })
      expect(echoed.headers.get('x-request-id')).toBe('abc-123.X:9_z')
      expect(echoed.body).toEqual({ id: 'abc-123.X:9_z' })
      const bad = await h.fetch('/v1/ok', { key: k, headers: { 'x-request-id': 'a b<script>' } })
      expect(bad.headers.get('x-request-id')).toMatch(/^req_/)
      const denied = await h.fetch('/v1/ok', { headers: { 'x-request-id': 'deny-1' } })
      expect(denied.status).toBe(401)
      expect(denied.headers.get('x-request-id')).toBe('deny-1')
    })

    const BLOCKING = { failedAuth: { limit: 3, windowMs: 60_000, blockMs: 600_000 } }
    const bogus = `${PREFIXES.consumption}${'x'.repeat(40)}`

    test('blocks the socket IP after failed auths, with Retry-After; a forwarding header does not escape it', async () => {
      const h = await start([ok()], BLOCKING)
      const k = await key()
      for (const status of [401, 401, 403]) {
        const res = await h.fetch('/v1/ok', { key: bogus })
        expect(res.status).toBe(status)
        if (status === 403) expect(res.headers.get('retry-after')).toBe('600')
      }
      const spoofed = { key: k, headers: { 'x-forwarded-for': '198.51.100.9' } }
      const res = await expectDenied(
        h,
        '/v1/ok',
        spoofed,
        403,
        'IP temporarily blocked',
        'ip_blocked',
      )
      expect(res.headers.get('retry-after')).toBe('600')
      h.clock.advance(599_000)
      expect((await h.fetch('/v1/ok', { key: k })).headers.get('retry-after')).toBe('1')
      h.clock.advance(1_000)
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
      await eventually(() => !!h.settled[0]?.event, 'settle')
      expect(h.settled[0]!.event!.ip).toBe('127.0.0.1')
    })

    test('with trustProxy, blocks the forwarded client IP and not the proxy', async () => {
      const h = await start([{ ...ok(), options: { trustProxy: true } }], BLOCKING)
      const k = await key()
      const from = (ip: string) => ({ 'x-forwarded-for': `${ip}, 10.0.0.1` })
      for (let i = 0; i < 3; i++)
        await h.fetch('/v1/ok', { key: bogus, headers: from('203.0.113.7') })
      await expectDenied(
        h,
        '/v1/ok',
        { key: k, headers: from('203.0.113.7') },
        403,
        'IP temporarily blocked',
        'ip_blocked',
      )
      expect((await h.fetch('/v1/ok', { key: k, headers: from('203.0.113.8') })).status).toBe(200)
      expect((await h.fetch('/v1/ok', { key: k })).status).toBe(200)
      await eventually(() => h.settled.filter((s) => s.event).length === 2, 'settle')
      expect(h.settled.map((s) => s.event!.ip)).toEqual(['203.0.113.8', '127.0.0.1'])
    })
  })

  describe(`requireApiKey on ${name} behind a proxy`, () => {
    let h: Harness | undefined
    afterEach(async () => {
      await h?.close()
      h = undefined
    })
    const bogus = (i: number) => `${PREFIXES.consumption}${String(i).padStart(40, 'x')}`
    /** 50 bad keys from `from(i)`, the statuses they got. */
    const stuff = async (from: (i: number) => string) => {
      const statuses: number[] = []
      for (let i = 0; i < 50; i++) {
        const res = await h!.fetch('/v1/ok', {
          key: bogus(i),
          headers: { 'x-forwarded-for': from(i) },
        })
        statuses.push(res.status)
      }
      return statuses
    }

    test('without trustProxy, 50 bad keys from one client do not block another client', async () => {
      h = await harness(startServer, [ok()], {})
      const k = (await h.tb.keys.create({ accountId: 'acct_1' })).key
      const statuses = await stuff(() => '203.0.113.7')
      expect(new Set(statuses)).toEqual(new Set([401]))
      const res = await h.fetch('/v1/ok', { key: k, headers: { 'x-forwarded-for': '203.0.113.8' } })
      expect(res.status).toBe(200)
    })

    test('without trustProxy, a flood from the proxy address is still blocked at proxiedLimit', async () => {
      const blockMs = 900_000
      h = await harness(startServer, [ok()], {
        failedAuth: { limit: 3, windowMs: 60_000, blockMs, proxiedLimit: 60 },
      })
      const k = (await h.tb.keys.create({ accountId: 'acct_1' })).key
      const statuses = await stuff(() => '203.0.113.7')
      expect(new Set(statuses)).toEqual(new Set([401]))
      for (let i = 0; i < 9; i++)
        await h.fetch('/v1/ok', { key: bogus(i), headers: { 'x-forwarded-for': '203.0.113.7' } })
      const last = await h.fetch('/v1/ok', {
        key: bogus(0),
        headers: { 'x-forwarded-for': '203.0.113.7' },
      })
      expect(last.status).toBe(403)
      const res = await h.fetch('/v1/ok', { key: k, headers: { 'x-forwarded-for': '203.0.113.8' } })
      expect(res.status).toBe(403)
      expect(res.headers.get('retry-after')).toBe('900')
    })

    test('with trustProxy: 1, blocks the bad client only, and rotating a spoofed left-most X-Forwarded-For does not escape', async () => {
      h = await harness(startServer, [{ ...ok(), options: { trustProxy: 1 } }], {})
      const k = (await h.tb.keys.create({ accountId: 'acct_1' })).key
      // The proxy (the socket, 127.0.0.1) appends the client's address on the right.
      const statuses = await stuff((i) => `198.18.${i}.1, 203.0.113.7`)
      expect(statuses.slice(0, 19)).toEqual(Array(19).fill(401))
      expect(statuses.slice(19)).toEqual(Array(31).fill(403))
      for (const spoof of ['203.0.113.8', '10.1.2.3, 203.0.113.8', 'unknown']) {
        const res = await h.fetch('/v1/ok', {
          key: k,
          headers: { 'x-forwarded-for': `${spoof}, 203.0.113.7` },
        })
        expect(res.status).toBe(403)
        expect(res.body).toEqual({ error: 'IP temporarily blocked', code: 'ip_blocked' })
        expect(res.headers.get('retry-after')).toBe('900')
      }
      const good = await h.fetch('/v1/ok', {
        key: k,
        headers: { 'x-forwarded-for': '203.0.113.8' },
      })
      expect(good.status).toBe(200)
      await eventually(() => !!h!.settled[0]?.event, 'settle')
      expect(h.settled[0]!.event!.ip).toBe('203.0.113.8')
    })
  })
}
