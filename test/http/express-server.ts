/**
 * @module test/http/express-server
 *
 * For the Express tests: `startExpress`, the behaviour suite's routes on Express (shared by the
 * Express suite and the suites behind a proxy), and `planned`, an instance on a plan of 100 credits with a key, whose app
 * `build` makes, served on 127.0.0.1:0 (`serveExpress`).
 */

import { Readable } from 'node:stream'
import express from 'express'
import pkg from 'express/package.json' with { type: 'json' }
import { requireApiKey } from '../../adapters/express/index.js'
import { createTollbooth, memoryStorage, type Tollbooth } from '../../src/index.js'
import { serveExpress } from '../support/servers.js'
import type { StartServer } from './behaviour.js'
import { SECRET, sleep, webEvents } from './harness.js'

/**
 * The Express major the suites run on: 5 under `npm test`, 4 under
 * `vitest --config vitest.express4.config.ts` (its alias of `express` to the devDependency
 * `express4`), read from the package that was loaded.
 */
export const EXPRESS_MAJOR = Number(pkg.version.split('.')[0])

/**
 * An async handler as an application writes it for the Express it runs on. Express 5 passes a
 * rejected promise to `next(err)` itself; Express 4 ignores the promise, by design (the request
 * hangs, the rejection goes unhandled), so an Express 4 application passes the error on itself:
 * on 4, `.catch(next)`, as Express 4's error-handling guide says. On 5 the handler is left as
 * it is, so the suites keep testing Express 5's own catching.
 */
export function asyncHandler(
  fn: (req: express.Request, res: express.Response) => Promise<void>,
): express.RequestHandler {
  if (EXPRESS_MAJOR >= 5) return fn
  return (req, res, next) => {
    fn(req, res).catch(next)
  }
}

/**
 * An instance on a plan of 100 credits, a key of it, and an app built by `build`, listening;
 * `fetch` sends the key.
 */
export async function planned(build: (tb: Tollbooth) => express.Express) {
  const tb = createTollbooth({
    secret: SECRET,
    storage: memoryStorage(),
    plans: { pro: { monthlyCredits: 100 } },
    defaultTier: 'pro',
  })
  const { key } = await tb.keys.create({ accountId: 'acct_1' })
  const server = await serveExpress(build(tb))
  return {
    fetch: (path: string) =>
      fetch(server.url + path, { headers: { authorization: `Bearer ${key}` } }),
    close: async () => {
      await server.close()
      await tb.close()
    },
  }
}

/** The behaviour suite's routes on Express, on 127.0.0.1:0. */
export const startExpress: StartServer = async (tb, routes) => {
  const app = express()
  app.use(express.json())
  for (const r of routes) {
    const method = r.method === 'POST' ? 'post' : 'get'
    const { stream } = r
    if (stream && r.web) {
      app[method](r.path, requireApiKey(tb, r.options), (req, res) => {
        res.setHeader('content-type', 'text/event-stream')
        const body = Readable.fromWeb(webEvents(r, req.apiKey, stream) as never)
        body.pipe(res)
        // The client gone, the body is cancelled; once that has finished (its `close`),
        // res.end(), as the adapter asks of a handler whose client left.
        res.on('close', () => body.destroy())
        body.on('close', () => res.end())
      })
      continue
    }
    if (stream) {
      app[method](
        r.path,
        requireApiKey(tb, r.options),
        asyncHandler(async (req, res) => {
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
              stream.each?.(req.apiKey, sent + 1)
            }
          } finally {
            await r.handle(req.apiKey, { sent, aborted: gone })
            res.end()
          }
        }),
      )
      continue
    }
    const before = r.before
    if (before)
      app.use(r.path, (_req, res, next) => {
        res.set(before)
        next()
      })
    if (r.outer) app.use(r.path, requireApiKey(tb, r.outer))
    app[method](
      r.path,
      requireApiKey(tb, r.options),
      asyncHandler(async (req, res) => {
        const body = await r.handle(req.apiKey)
        if (r.headers) res.set(r.headers)
        res.json(body)
      }),
    )
  }
  return serveExpress(app)
}
