/**
 * @module test/runtimes/app
 *
 * The Hono app the runtime suite bundles and serves on Bun, Deno and workerd: a streamed
 * route through `requireApiKey` and `streamSSE` from tollbooth/hono, on the in-memory store.
 * Built on the first request, as Workers allow no random numbers or timers at start-up.
 *
 * - `POST /setup`: a key limited to 1 request in flight, on a plan with credits (test only).
 * - `GET /v1/stream`: 20 server-sent events 12 ms apart, then reports `{ cost: 42, tokens: 1234 }`.
 * - `GET /v1/long`: 20 server-sent events 25 ms apart, then reports `{ cost: 42, tokens: 1234 }`;
 *   it carries on to its end when the client goes away (an upstream model that is paid for).
 * - `GET /v1/slow`: reports `{ cost: 42, tokens: 1234 }` at once, answers 400 ms later; a
 *   departed client's request settles at the latest 600 ms after it left or its body was
 *   last read (`abortSettleMs`).
 * - `GET /v1/gzip`: behind Hono's `compress()`, 20 chunks of 4 KiB (random, so gzip passes
 *   them on) 25 ms apart, then reports `{ cost: 42, tokens: 1234 }`, or in its cancel.
 * - `GET /v1/timeout`: behind Hono's `timeout(100)`, reports `{ cost: 42, tokens: 1234 }` at
 *   once and answers 400 ms later: the client gets the 504 at 100 ms.
 * - `GET /v1/ok`: a plain JSON answer.
 * - `GET /v1/stuck`: an endless stream whose cancel never finishes, reporting 3
 *   (`abortSettleMs` 600 ms).
 * - `GET /v1/cleanup`: an endless stream whose cancel takes 300 ms and then reports 5.
 * - `GET /v1/own`: a plain JSON answer with an `X-Request-Id` of the handler's own.
 * - `GET /v1/realtime`: a WebSocket (cost 10), with `upgradeWebSocket` from `hono/bun`,
 *   `hono/deno` or `hono/cloudflare-workers` as the runtime is: `charge:N` charges N,
 *   `close-await:N` reports N in `onClose` after a 200 ms await given to `waitUntil`; every
 *   message is echoed once handled.
 * - `GET /usage`: the account's credits used and its settled requests.
 */

import { Hono, type MiddlewareHandler } from 'hono'
import { upgradeWebSocket as bunUpgrade, websocket } from 'hono/bun'
import { upgradeWebSocket as workersUpgrade } from 'hono/cloudflare-workers'
import { compress } from 'hono/compress'
import { upgradeWebSocket as denoUpgrade } from 'hono/deno'
import { HTTPException } from 'hono/http-exception'
import { timeout } from 'hono/timeout'
import type { WSEvents } from 'hono/ws'
import { requireApiKey, streamSSE } from '../../adapters/hono/index.js'
import { createTollbooth, type Tollbooth } from '../../src/index.js'

const ACCOUNT = 'acct_runtime'
let app: Hono | undefined
let tb: Tollbooth | undefined
let keyId = ''

function build(): Hono {
  tb = createTollbooth({
    secret: 'runtime-suite-secret-runtime-suite-secret',
    plans: { pro: { monthlyCredits: 1000 } },
    defaultTier: 'pro',
  })
  const a = new Hono()
  a.onError((err, c) =>
    err instanceof HTTPException ? err.getResponse() : c.json({ error: String(err) }, 500),
  )
  a.post('/setup', async (c) => {
    const created = await tb!.keys.create({ accountId: ACCOUNT, limits: { concurrency: 1 } })
    keyId = created.record.id
    return c.json({ key: created.key })
  })
  a.get('/v1/stream', requireApiKey(tb, { cost: 100 }), (c) =>
    streamSSE(c, async (stream) => {
      for (let i = 0; i < 20; i++) {
        if (i > 0) await stream.sleep(12)
        await stream.writeSSE({ data: String(i) })
      }
      c.get('apiKey').report({ cost: 42, tokens: 1234 })
    }),
  )
  a.get('/v1/long', requireApiKey(tb, { cost: 100 }), (c) =>
    streamSSE(c, async (stream) => {
      for (let i = 0; i < 20; i++) {
        if (i > 0) await stream.sleep(25)
        await stream.writeSSE({ data: String(i) })
      }
      c.get('apiKey').report({ cost: 42, tokens: 1234 })
    }),
  )
  a.get('/v1/slow', requireApiKey(tb, { cost: 100, abortSettleMs: 600 }), async (c) => {
    c.get('apiKey').report({ cost: 42, tokens: 1234 })
    await new Promise((done) => setTimeout(done, 400))
    return c.json({ late: true })
  })
  a.get('/v1/gzip', compress(), requireApiKey(tb, { cost: 100 }), (c) => {
    const apiKey = c.get('apiKey')
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent > 0) await new Promise((done) => setTimeout(done, 25))
        if (sent++ === 20) {
          apiKey.report({ cost: 42, tokens: 1234 })
          controller.close()
          return
        }
        controller.enqueue(crypto.getRandomValues(new Uint8Array(4096)))
      },
      cancel() {
        apiKey.report({ cost: 42, tokens: 1234 })
      },
    })
    return new Response(body, { headers: { 'content-type': 'text/plain' } })
  })
  a.get('/v1/timeout', timeout(100), requireApiKey(tb, { cost: 100 }), async (c) => {
    c.get('apiKey').report({ cost: 42, tokens: 1234 })
    await new Promise((done) => setTimeout(done, 400))
    return c.json({ late: true })
  })
  a.get('/v1/ok', requireApiKey(tb), (c) => c.json({ ok: true }))
  // An endless stream whose cancel never finishes (a handler stuck in its cleanup), reporting 3.
  a.get('/v1/stuck', requireApiKey(tb, { cost: 10, abortSettleMs: 600 }), (c) => {
    c.get('apiKey').report({ cost: 3 })
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent++ > 0) await new Promise((done) => setTimeout(done, 20))
        controller.enqueue(new TextEncoder().encode(`data: ${sent}\n\n`))
      },
      cancel: () => new Promise<void>(() => {}),
    })
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
  })
  // An endless stream whose cancel (its cleanup) takes 300 ms and reports 5 at its end.
  a.get('/v1/cleanup', requireApiKey(tb, { cost: 10, abortSettleMs: 2_000 }), (c) => {
    const apiKey = c.get('apiKey')
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent++ > 0) await new Promise((done) => setTimeout(done, 20))
        controller.enqueue(new TextEncoder().encode(`data: ${sent}\n\n`))
      },
      async cancel() {
        await new Promise((done) => setTimeout(done, 300))
        apiKey.report({ cost: 5 })
      },
    })
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
  })
  // The handler names one of tollbooth's headers itself: its own goes out.
  a.get('/v1/own', requireApiKey(tb), (c) => c.json({ ok: true }, 200, { 'X-Request-Id': 'mine' }))
  const g = globalThis as { Bun?: unknown; Deno?: unknown }
  const upgradeWebSocket = (g.Bun ? bunUpgrade : g.Deno ? denoUpgrade : workersUpgrade) as (
    events: (c: Parameters<MiddlewareHandler>[0]) => WSEvents,
  ) => MiddlewareHandler
  a.get(
    '/v1/realtime',
    requireApiKey(tb, { cost: 10, abortSettleMs: 60_000 }),
    upgradeWebSocket((c) => {
      const apiKey = c.get('apiKey')
      let awaited: number | undefined
      // Workers show no socket's end to the guard: the session is held open with waitUntil
      // (README, "WebSockets"), bounded by the route's abortSettleMs.
      let ended: (() => void) | undefined
      if (!g.Bun && !g.Deno) apiKey.waitUntil(new Promise<void>((done) => (ended = done)))
      return {
        onMessage(event, ws) {
          const text = String(event.data)
          if (text.startsWith('charge:')) apiKey.charge(Number(text.slice(7)))
          else if (text.startsWith('close-await:')) awaited = Number(text.slice(12))
          ws.send(text)
        },
        onClose() {
          const cost = awaited
          if (cost !== undefined) {
            const late = new Promise((done) => setTimeout(done, 200))
            apiKey.waitUntil(late.then(() => apiKey.report({ cost })))
          }
          ended?.()
        },
      }
    }),
  )
  a.get('/usage', async (c) => {
    const usage = await tb!.usage.get(ACCOUNT)
    const logs = await tb!.usage.logs(keyId, { limit: 100 })
    return c.json({
      used: usage.credits.used,
      requests: logs.data.map((e) => ({
        path: e.path,
        status: e.status,
        units: e.units,
        tokens: e.tokens,
      })),
    })
  })
  return a
}

export default {
  /** Bun's WebSocket handlers, for `Bun.serve`. */
  websocket,
  fetch(request: Request, env?: unknown, ctx?: unknown): Response | Promise<Response> {
    app ??= build()
    return app.fetch(request, env, ctx as never)
  },
}
