/**
 * tollbooth/hono on Node writes its headers in the same writeHead() call as the response's own
 * (no setHeader() first, which takes Node off its fast path). What a response sees, through
 * real HTTP on @hono/node-server: the usage headers with the final charge beside the handler's
 * headers; a header of the same name from the handler, in any case, replaces tollbooth's (once,
 * no duplicate), as it did when tollbooth's were set first; and the other forms of writeHead
 * that code after the guard may call itself (a status message, raw header arrays, none at all:
 * `end()` writes the head).
 */

import type { ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { createTollbooth } from '../../src/index.js'

type Env = { Bindings: { outgoing: ServerResponse } }

const tb = createTollbooth({
  secret: 'hono-head-secret-hono-head-secret-42',
  plans: { pro: { monthlyCredits: 1000 } },
  defaultTier: 'pro',
})
const app = new Hono<Env>()
// Middleware in front of the guard that writes the head itself once the guard is done, in
// Node's other forms of writeHead (tollbooth's headers then go in with that call).
const ALREADY_SENT = { headers: { 'x-hono-already-sent': 'true' } }
app.use('/v1/*', async (c, next) => {
  await next()
  const out = c.env.outgoing
  switch (c.req.path) {
    case '/v1/message':
      out.writeHead(203, 'Fine', { 'content-type': 'text/plain' })
      out.end('message')
      break
    case '/v1/raw':
      out.writeHead(200, ['content-type', 'text/plain', 'X-Raw', '1'])
      out.end('raw')
      break
    case '/v1/implicit':
      out.statusCode = 202
      out.end('implicit')
      break
    default:
      return
  }
  c.res = new Response(null, ALREADY_SENT)
})
app.use('/v1/*', requireApiKey(tb, { cost: 2 }))
app.get('/v1/json', (c) => c.json({ ok: true }, 200, { 'x-handler': 'yes' }))
// The handler names one of tollbooth's headers itself, in another case.
app.get('/v1/own', () => new Response('own', { headers: { 'X-Request-Id': 'mine' } }))
app.get('/v1/message', (c) => c.text('replaced'))
app.get('/v1/raw', (c) => c.text('replaced'))
app.get('/v1/implicit', (c) => c.text('replaced'))

let base = ''
let key = ''
let server: ReturnType<typeof serve>
beforeAll(async () => {
  key = (await tb.keys.create({ accountId: 'acct_head', limits: { quotas: { daily: 100 } } })).key
  server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s))
  })
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise<void>((done) => server.close(() => done()))
  await tb.close()
})

const get = (path: string) =>
  fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } })

describe('tollbooth/hono on Node: one head with the response', () => {
  it('the usage headers, with the final charge, beside the handler’s own', async () => {
    const res = await get('/v1/json')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-handler')).toBe('yes')
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(res.headers.get('x-request-id')).toMatch(/\S/)
    expect(res.headers.get('x-ratelimit-limit')).toBe('100')
    expect(res.headers.get('x-usage-limit')).toBe('1000')
    const remaining = Number(res.headers.get('x-usage-remaining'))
    expect(remaining).toBeGreaterThan(0)
    // A second request: its 2 credits in its own head.
    const next = await get('/v1/json')
    expect(Number(next.headers.get('x-usage-remaining'))).toBe(remaining - 2)
    expect(next.headers.get('x-usage-current')).toBe(String(1000 - remaining + 2))
  })

  it('a header of the same name from the handler, in another case, replaces tollbooth’s', async () => {
    const res = await get('/v1/own')
    expect(res.headers.get('x-request-id')).toBe('mine')
    expect(await res.text()).toBe('own')
    expect(res.headers.get('x-ratelimit-limit')).toBe('100')
  })

  it('writeHead with a status message, with raw header arrays, and implicit', async () => {
    const message = await get('/v1/message')
    expect(message.status).toBe(203)
    expect(message.statusText).toBe('Fine')
    expect(message.headers.get('x-request-id')).toMatch(/\S/)
    expect(await message.text()).toBe('message')
    const raw = await get('/v1/raw')
    expect(raw.headers.get('x-raw')).toBe('1')
    expect(raw.headers.get('x-request-id')).toMatch(/\S/)
    expect(await raw.text()).toBe('raw')
    const implicit = await get('/v1/implicit')
    expect(implicit.status).toBe(202)
    expect(implicit.headers.get('x-request-id')).toMatch(/\S/)
    expect(await implicit.text()).toBe('implicit')
  })
})
