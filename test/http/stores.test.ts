/**
 * @module test/http/stores
 *
 * The ends of a response (completed, streamed, a client gone mid-stream, a response the server
 * broke off) over real HTTP on Hono, Express and Fastify, on stores whose holds and
 * concurrency leases live in the store (a SQLite file, Redis, PostgreSQL) as well as memory.
 * After each: nothing left held (a key limited to 1 request in flight is admitted), each
 * admitted request recorded once, and the credits charged equal to the recorded events' units.
 */

import { Readable } from 'node:stream'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { describe, expect, test } from 'vitest'
import { requireApiKey as expressGuard } from '../../adapters/express/index.js'
import { requireApiKey as fastifyGuard, tollbooth } from '../../adapters/fastify/index.js'
import { requireApiKey as honoGuard, streamSSE } from '../../adapters/hono/index.js'
import type { Admission, Tollbooth } from '../../src/index.js'
import { serveExpress, serveFastify, serveHono } from '../support/servers.js'
import { fourStores } from '../support/stores.js'
import { asyncHandler } from './express-server.js'
import { eventually, harness, type StartServer, sleep } from './harness.js'

const EVENTS = 20
const INTERVAL_MS = 5
const PLAN = { plans: { pro: { monthlyCredits: 1000 } }, defaultTier: 'pro' }

/** What a route's handler reports: a streamed one the events it wrote. */
type Report = (k: Admission, sent: number) => void
const report: Report = (k, sent) => k.report({ cost: sent })

/** The routes each framework serves: `/v1/ok`, `/v1/stream` (20 events), `/v1/broken`. */
const apps: Record<string, (tb: Tollbooth) => Promise<{ url: string; close(): Promise<void> }>> = {
  Express: async (tb) => {
    const app = express()
    app.set('env', 'test')
    app.get('/v1/ok', expressGuard(tb, { cost: 3 }), (_req, res) => {
      res.json({})
    })
    app.get(
      '/v1/stream',
      expressGuard(tb, { cost: 100 }),
      asyncHandler(async (req, res) => {
        let gone = false
        res.on('close', () => {
          gone = !res.writableFinished
        })
        res.setHeader('content-type', 'text/event-stream')
        let sent = 0
        try {
          for (; sent < EVENTS && !gone; sent++) {
            if (sent > 0) await sleep(INTERVAL_MS)
            if (!gone) res.write(`data: ${sent}\n\n`)
          }
        } finally {
          report(req.apiKey, sent)
          res.end()
        }
      }),
    )
    app.get(
      '/v1/broken',
      expressGuard(tb, { cost: 100 }),
      asyncHandler(async (req, res) => {
        report(req.apiKey, 1)
        res.write('data: 0\n\n')
        await sleep(INTERVAL_MS)
        throw new Error('failed half-way')
      }),
    )
    return serveExpress(app)
  },
  Fastify: async (tb) => {
    const app = Fastify()
    await app.register(tollbooth, { tb })
    app.get('/v1/ok', { preHandler: fastifyGuard(tb, { cost: 3 }) }, async () => ({}))
    app.get('/v1/stream', { preHandler: fastifyGuard(tb, { cost: 100 }) }, async (req, reply) => {
      const apiKey = req.apiKey
      async function* events() {
        let sent = 0
        try {
          for (; sent < EVENTS; sent++) {
            if (sent > 0) await sleep(INTERVAL_MS)
            yield `data: ${sent}\n\n`
          }
        } finally {
          report(apiKey, sent)
        }
      }
      return reply.type('text/event-stream').send(Readable.from(events()))
    })
    app.get('/v1/broken', { preHandler: fastifyGuard(tb, { cost: 100 }) }, async (req, reply) => {
      report(req.apiKey, 1)
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
      reply.raw.write('data: 0\n\n')
      await sleep(INTERVAL_MS)
      throw new Error('failed half-way')
    })
    return serveFastify(app)
  },
  Hono: async (tb) => {
    const app = new Hono()
    app.onError((err, c) =>
      err instanceof HTTPException ? err.getResponse() : c.json({ error: 'boom' }, 500),
    )
    app.get('/v1/ok', honoGuard(tb, { cost: 3 }), (c) => c.json({}))
    app.get('/v1/stream', honoGuard(tb, { cost: 100 }), (c) =>
      streamSSE(c, async (s) => {
        let sent = 0
        try {
          for (; sent < EVENTS && !s.aborted; sent++) {
            if (sent > 0) await s.sleep(INTERVAL_MS)
            if (!s.aborted) await s.writeSSE({ data: String(sent) })
          }
        } finally {
          report(c.get('apiKey'), sent)
        }
      }),
    )
    app.get('/v1/broken', honoGuard(tb, { cost: 100 }), async (c) => {
      report(c.get('apiKey'), 1)
      await sleep(INTERVAL_MS)
      throw new Error('failed')
    })
    return serveHono(app)
  },
}

const stores = await fourStores('http-stores')

// Express alone in the Express 4 run (vitest.express4.config.ts).
for (const [storeName, makeStore] of Object.entries(stores))
  for (const [framework, serve] of Object.entries(apps).filter(
    ([name]) => !process.env['TOLLBOOTH_EXPRESS_MAJOR'] || name === 'Express',
  ))
    describe.skipIf(makeStore === null)(`${framework} on ${storeName}`, () => {
      test('completed, streamed, aborted mid-stream, broken off: nothing held, each recorded once, charged what was recorded', async () => {
        const storage = await makeStore!()
        const start: StartServer = (tb) => serve(tb)
        const h = await harness(start, [], { ...PLAN, storage })
        try {
          const { key, record } = await h.tb.keys.create({
            accountId: 'acct_1',
            limits: { concurrency: 1 },
          })
          const auth = { authorization: `Bearer ${key}` }
          const admitted = async () => {
            const res = await fetch(`${h.url}/v1/ok`, { headers: auth })
            await res.text()
            return res.status
          }
          const settledAll = (n: number, what: string) =>
            eventually(() => h.settled.length === n && h.settled.every((s) => s.event), what)

          // Completed, and a whole stream.
          expect(await admitted()).toBe(200)
          const whole = await fetch(`${h.url}/v1/stream`, { headers: auth })
          expect((await whole.text()).match(/data: /g)).toHaveLength(EVENTS)
          await settledAll(2, 'the whole stream to settle')
          // A client gone after 3 events.
          const ac = new AbortController()
          const cut = await fetch(`${h.url}/v1/stream`, { headers: auth, signal: ac.signal })
          const reader = cut.body!.getReader()
          let text = ''
          while ((text.match(/data: /g) ?? []).length < 3)
            text += new TextDecoder().decode((await reader.read()).value)
          ac.abort()
          await reader.cancel().catch(() => {})
          await settledAll(3, 'the aborted stream to settle')
          // Broken off by the server after its head (Hono: a handler that throws).
          await fetch(`${h.url}/v1/broken`, { headers: auth })
            .then((r) => r.text())
            .catch(() => {})
          await settledAll(4, 'the broken response to settle')
          expect(await admitted()).toBe(200)
          await settledAll(5, 'the last request to settle')

          const statuses = h.settled.map((s) => s.status)
          expect(statuses.slice(0, 3)).toEqual([200, 200, 499])
          expect(statuses[4]).toBe(200)
          await h.tb.flush()
          const logs = (await h.tb.storage.usage.logs(record.id, { limit: 100 })).data
          const ids = logs.map((e) => e.requestId)
          expect(new Set(ids).size).toBe(ids.length)
          expect(ids.sort()).toEqual(h.settled.map((s) => s.decision.requestId).sort())
          const units = logs.reduce((sum, e) => sum + e.units, 0)
          expect(units).toBeGreaterThanOrEqual(3 + EVENTS + 3 + 3)
          expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(units)
        } finally {
          await h.close()
        }
      })
    })
