/**
 * @module test/http/express
 *
 * The behaviour suite on Express 5, on 127.0.0.1:0, plus what is Express's own: mounting
 * under `app.use(path, …)` and on a Router keeps the full path.
 */

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express, { type Request } from 'express'
import { describe, expect, expectTypeOf, test } from 'vitest'
import { requireApiKey } from '../../adapters/express/index.js'
import { type Admission, ConfigError, createTollbooth } from '../../src/index.js'
import { describeBehaviour, type StartServer } from './behaviour.js'
import { eventually, harness, SECRET, sleep } from './harness.js'
import { describeStreaming } from './streaming.js'

async function listen(app: express.Express) {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

const startExpress: StartServer = async (tb, routes) => {
  const app = express()
  app.use(express.json())
  for (const r of routes) {
    const method = r.method === 'POST' ? 'post' : 'get'
    const { stream } = r
    if (stream) {
      app[method](r.path, requireApiKey(tb, r.options), async (req, res) => {
        res.setHeader('content-type', 'text/event-stream')
        res.flushHeaders()
        let gone = false
        res.on('close', () => {
          gone = !res.writableFinished
        })
        let sent = 0
        try {
          for (; sent < stream.count && !gone; sent++) {
            if (sent > 0) await sleep(stream.intervalMs)
            if (gone) break
            res.write(`data: ${sent}\n\n`)
          }
        } finally {
          await r.handle(req.apiKey, { sent, aborted: gone })
          res.end()
        }
      })
      continue
    }
    if (r.outer) app.use(r.path, requireApiKey(tb, r.outer))
    app[method](r.path, requireApiKey(tb, r.options), async (req, res) => {
      res.json(await r.handle(req.apiKey))
    })
  }
  return listen(app)
}

describeBehaviour('Express', startExpress)
describeStreaming('Express', startExpress)

describe('tollbooth/express', () => {
  test('throws a ConfigError naming a bad option at construction', () => {
    const tb = createTollbooth({ secret: SECRET })
    expect(() => requireApiKey(tb, { trustProxy: 'yes' as never })).toThrow(ConfigError)
    expect(() => requireApiKey(tb, { trustProxy: 'yes' as never })).toThrow(/trustProxy/)
    expect(() => requireApiKey(tb, { quotaStatus: 500 as never })).toThrow(/quotaStatus/)
  })

  test('names the middleware requireApiKey', () => {
    expect(requireApiKey(createTollbooth({ secret: SECRET })).name).toBe('requireApiKey')
  })

  test('types req.apiKey as the Admission', () => {
    expectTypeOf<Request['apiKey']>().toEqualTypeOf<Admission>()
  })

  test('keeps the full path when mounted with app.use and on a Router', async () => {
    const h = await harness(
      async (tb, routes) => {
        const app = express()
        const router = express.Router()
        router.use(requireApiKey(tb, { category: 'tts' }))
        router.get('/speak', async (req, res) => {
          res.json(await routes[0]!.handle(req.apiKey))
        })
        app.use('/v1', router)
        return listen(app)
      },
      [{ path: '/v1/speak', handle: (k) => ({ id: k.key.id }) }],
    )
    try {
      const { key } = await h.tb.keys.create({ accountId: 'acct_1' })
      const res = await h.fetch('/v1/speak?voice=a', { key })
      expect(res.status).toBe(200)
      const denied = await h.fetch('/v1/speak')
      expect(denied.status).toBe(401)
      expect(h.handled).toHaveLength(1)
      await eventually(() => h.settled.length === 1 && !!h.settled[0]!.event, 'settle')
      expect(h.settled[0]!.event).toMatchObject({
        path: '/v1/speak',
        method: 'GET',
        category: 'tts',
      })
    } finally {
      await h.close()
    }
  })
})
