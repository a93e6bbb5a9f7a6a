/**
 * @module test/http/hono-middleware
 *
 * Hono's own middleware in front of `requireApiKey`. `timeout()` answers 504 while the handler
 * still runs: Hono hands that 504 to the server (which reads its body) and keeps it as `c.res`,
 * so when the handler ends, the guard finds a response already gone out. Before, it passed that
 * response's body through its watcher, whose reader threw (`ReadableStream is locked`): on
 * `@hono/node-server` an error for the app's `onError` on every timeout (the 504 settled by its
 * `close`), and on Bun, Deno and Workers (`app.fetch` called by the runtime) a request never
 * settled, its credit hold and concurrency slot kept until they expired.
 *
 * `cors()` goes in front of the guard: it answers a preflight itself. Behind it, the guard
 * answers the preflight (which carries no credentials) 401 without CORS headers, which fails
 * the browser's request; a missing key never counts toward the failed-auth IP block.
 */

import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { Hono } from 'hono'
import { compress } from 'hono/compress'
import { cors } from 'hono/cors'
import { HTTPException } from 'hono/http-exception'
import { timeout } from 'hono/timeout'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { createTollbooth, memoryStorage, type TollboothOptions } from '../../src/index.js'
import { serveHono } from '../support/servers.js'
import { gate, sleep, slowKeys } from './harness.js'

const COST = 5
const open: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close()
})

/** How a test reaches the app: through `@hono/node-server`, or `app.fetch` as Bun and Deno call it. */
const serving: Record<
  string,
  (app: Hono) => Promise<(path: string, key: string) => Promise<Response>>
> = {
  async '@hono/node-server'(app) {
    const server = await serveHono(app)
    open.push(() => server.close())
    return (path, key) => fetch(server.url + path, { headers: { authorization: `Bearer ${key}` } })
  },
  async 'app.fetch (Bun, Deno)'(app) {
    return async (path, key) =>
      app.fetch(
        new Request(`http://localhost${path}`, { headers: { authorization: `Bearer ${key}` } }),
      )
  },
}

const SECRET = 'hono-middleware-secret-0123456789abcdef'

/** A tollbooth (closed after the test) and a key of account acct_mw limited to 1 in flight. */
async function keyOf(options: Partial<TollboothOptions> = {}) {
  const tb = createTollbooth({
    secret: SECRET,
    plans: { pro: { monthlyCredits: 1000 } },
    defaultTier: 'pro',
    ...options,
  })
  open.push(() => tb.close())
  const created = await tb.keys.create({
    accountId: 'acct_mw',
    name: 'k',
    limits: { concurrency: 1 },
  })
  return { tb, ...created }
}

for (const [name, serve] of Object.entries(serving))
  describe(`Hono middleware in front of the guard, on ${name}`, () => {
    it('timeout(): the 504 settles once, not billed, its slot freed when the handler ends; no error', async () => {
      const { tb, key, record } = await keyOf()
      const errors: unknown[] = []
      const app = new Hono()
      app.onError((err, c) => {
        errors.push(err)
        return err instanceof HTTPException ? err.getResponse() : c.text('boom', 500)
      })
      const hold = gate()
      let ended = false
      app.use('/v1/*', timeout(50))
      app.use('/v1/*', requireApiKey(tb, { cost: COST }))
      app.get('/v1/slow', async (c) => {
        await hold.promise
        c.get('apiKey').report({ cost: 2 })
        ended = true
        return c.json({ ok: true })
      })
      app.get('/v1/ok', (c) => c.json({ ok: true }))
      const get = await serve(app)
      const res = await get('/v1/slow', key)
      expect(res.status).toBe(504)
      expect(await res.text()).toBe('Gateway Timeout')
      // The handler still runs: its slot stays taken.
      const busy = await get('/v1/ok', key)
      expect(busy.status).toBe(429)
      await busy.body?.cancel()
      hold.open()
      await vi.waitFor(() => expect(ended).toBe(true))
      await vi.waitFor(async () => {
        await tb.flush()
        const logs = await tb.usage.logs(record.id, {})
        expect(
          logs.data.filter((e) => e.path === '/v1/slow').map((e) => [e.status, e.units]),
        ).toEqual([[504, 0]])
      })
      // Its slot and its hold are given back: the next request is admitted, charged alone.
      const next = await get('/v1/ok', key)
      expect(next.status).toBe(200)
      await next.text()
      await vi.waitFor(async () => {
        await tb.flush()
        expect((await tb.usage.get('acct_mw')).credits.used).toBe(COST)
      })
      // The app's onError saw the timeout (and the 429 denial), nothing of tollbooth's.
      expect(errors.map((e) => (e instanceof HTTPException ? e.status : e))).toEqual([504, 429])
    })
  })

/**
 * Answers in front of the guard, given while its admission is in flight (the store's round
 * trip, here each key lookup 50 ms): `timeout()`'s 504, and a middleware of the app's own that
 * returns a 503 of its own after 5 ms (`Promise.race` with `next()`).
 */
const fronts: Record<string, { status: number; use(app: Hono): void }> = {
  'timeout()': { status: 504, use: (app) => app.use('/v1/slow', timeout(5)) },
  'a middleware returning its own 503': {
    status: 503,
    use: (app) =>
      app.use('/v1/slow', async (c, next) => {
        const late = sleep(5).then(() => 'late' as const)
        if ((await Promise.race([next(), late])) === 'late')
          return c.json({ error: 'timed out' }, 503)
        return undefined
      }),
  },
}

for (const [name, serve] of Object.entries(serving))
  for (const [front, { status, use }] of Object.entries(fronts))
    describe(`${front} in front, answering while the admission is in flight, on ${name}`, () => {
      it.each([
        ['admitted', [] as string[]],
        ['denied', ['admin']],
      ])(
        '%s: the front answer stands; settled once with its status, not billed; no error',
        async (_, scopes) => {
          const rejections: unknown[] = []
          const onRejection = (err: unknown) => rejections.push(err)
          process.on('unhandledRejection', onRejection)
          open.push(async () => {
            process.off('unhandledRejection', onRejection)
          })
          const { tb, key, record } = await keyOf({ storage: slowKeys(memoryStorage()) })
          const errors: unknown[] = []
          const app = new Hono()
          app.onError((err, c) => {
            errors.push(err)
            return err instanceof HTTPException ? err.getResponse() : c.text('boom', 500)
          })
          let ran = 0
          use(app)
          app.use('/v1/slow', requireApiKey(tb, { cost: COST, scopes }))
          app.use('/v1/ok', requireApiKey(tb, { cost: COST }))
          app.get('/v1/slow', (c) => {
            ran++
            return c.json({ ok: true })
          })
          app.get('/v1/ok', (c) => c.json({ ok: true }))
          const get = await serve(app)
          const res = await get('/v1/slow', key)
          expect(res.status).toBe(status)
          await res.text()
          await sleep(100)
          expect(ran).toBe(scopes.length === 0 ? 1 : 0)
          await vi.waitFor(async () => {
            await tb.flush()
            const logs = await tb.usage.logs(record.id, {})
            expect(
              logs.data.filter((e) => e.path === '/v1/slow').map((e) => [e.status, e.units]),
              // A refusal is logged as such, 0 credits (README, Usage), as on Express.
            ).toEqual(scopes.length === 0 ? [[status, 0]] : [[403, 0]])
          })
          // Its slot and its hold are given back: the next request is admitted, charged alone.
          const next = await fetchOk(get, key)
          expect(next).toBe(200)
          await vi.waitFor(async () => {
            await tb.flush()
            expect((await tb.usage.get('acct_mw')).credits.used).toBe(COST)
          })
          expect(rejections).toEqual([])
          // The app's onError saw the timeout (and a denial, given to no one), nothing of tollbooth's.
          expect(errors.map((e) => (e instanceof HTTPException ? e.status : e))).toEqual([
            ...(status === 504 ? [504] : []),
            ...(scopes.length === 0 ? [] : [403]),
          ])
        },
      )
    })

async function fetchOk(
  get: (path: string, key: string) => Promise<Response>,
  key: string,
): Promise<number> {
  const res = await get('/v1/ok', key)
  await res.text()
  return res.status
}

describe('cors() and the guard (Hono on @hono/node-server)', () => {
  it('in front: it answers the preflight; behind: 401, never counted toward the IP block', async () => {
    const { tb, key } = await keyOf({
      failedAuth: { limit: 3, windowMs: 60_000, blockMs: 60_000, proxiedLimit: 1000 },
    })
    const app = new Hono()
    app.use('/front/*', cors())
    app.use('/front/*', requireApiKey(tb))
    app.use('/behind/*', requireApiKey(tb))
    app.use('/behind/*', cors())
    for (const path of ['/front/x', '/behind/x']) app.post(path, (c) => c.json({ ok: true }))
    const server = await serveHono(app)
    open.push(() => server.close())
    const preflight = (path: string) =>
      fetch(server.url + path, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization',
        },
      })
    const front = await preflight('/front/x')
    expect(front.status).toBe(204)
    expect(front.headers.get('access-control-allow-headers')).toBe('authorization')
    // Behind the guard: a preflight is a request without a key.
    for (let i = 0; i < 5; i++) {
      const behind = await preflight('/behind/x')
      expect(behind.status).toBe(401)
      expect(behind.headers.get('access-control-allow-origin')).toBeNull()
      expect(await behind.json()).toMatchObject({ code: 'missing_api_key' })
    }
    // Five missing keys past a limit of 3 failures: not blocked (only invalid keys count).
    const real = await fetch(`${server.url}/front/x`, {
      method: 'POST',
      headers: { origin: 'https://app.example', authorization: `Bearer ${key}` },
    })
    expect(real.status).toBe(200)
    expect(real.headers.get('access-control-allow-origin')).toBe('*')
    await real.text()
  })
})

describe('compress() in front of the guard (Hono on @hono/node-server)', () => {
  it('a client leaving a compressed stream: settled 499 with what the stream reported', async () => {
    const { tb, key, record } = await keyOf()
    const app = new Hono()
    app.use('/v1/*', compress())
    app.use('/v1/*', requireApiKey(tb, { cost: COST }))
    app.get('/v1/stream', (c) => {
      let timer: ReturnType<typeof setInterval> | undefined
      // Incompressible chunks, so gzip passes them on as they come.
      const body = new ReadableStream<Uint8Array>({
        start(ctl) {
          timer = setInterval(() => ctl.enqueue(randomBytes(8192)), 10)
        },
        cancel() {
          clearInterval(timer)
          c.get('apiKey').report({ cost: 1 })
        },
      })
      return new Response(body, { headers: { 'content-type': 'text/plain' } })
    })
    const server = await serveHono(app)
    open.push(() => server.close())
    const encoding = await new Promise<string | undefined>((resolve) => {
      const req = request(`${server.url}/v1/stream`, {
        headers: { authorization: `Bearer ${key}`, 'accept-encoding': 'gzip' },
      })
      req.on('error', () => {})
      req.on('response', (res) => {
        let chunks = 0
        res.on('data', () => {
          if (++chunks !== 3) return
          req.destroy()
          resolve(res.headers['content-encoding'])
        })
      })
      req.end()
    })
    expect(encoding).toBe('gzip')
    await vi.waitFor(async () => {
      await tb.flush()
      const logs = await tb.usage.logs(record.id, {})
      expect(logs.data.map((e) => [e.status, e.units])).toEqual([[499, 1]])
    })
  })
})
