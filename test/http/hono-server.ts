/**
 * @module test/http/hono-server
 *
 * `startHono`: the behaviour suite's routes on a Hono app, guarded by `tollbooth/hono`, served by
 * `@hono/node-server` on 127.0.0.1:0 (shared by the Hono suite and the suites behind a proxy).
 */

import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { requireApiKey, streamSSE } from '../../adapters/hono/index.js'
import { serveHono } from '../support/servers.js'
import type { StartServer } from './behaviour.js'
import { webEvents } from './harness.js'

/** The behaviour suite's routes on Hono. */
export const startHono: StartServer = async (tb, routes) => {
  const app = new Hono()
  // Denials are HTTPExceptions carrying the prepared response; anything else is a 500.
  app.onError((err, c) =>
    err instanceof HTTPException ? err.getResponse() : c.json({ error: 'boom' }, 500),
  )
  for (const r of routes) {
    const { stream } = r
    if (stream && r.web) {
      app.on(r.method ?? 'GET', r.path, requireApiKey(tb, r.options), (c) => {
        const body = webEvents(r, c.get('apiKey'), stream)
        return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
      })
      continue
    }
    if (stream) {
      // streamSSE from tollbooth/hono: Hono's, telling tollbooth when the callback returned.
      app.on(r.method ?? 'GET', r.path, requireApiKey(tb, r.options), (c) =>
        streamSSE(c, async (s) => {
          let sent = 0
          try {
            for (; sent < stream.count && !s.aborted; sent++) {
              if (sent > 0) await s.sleep(stream.intervalMs)
              if (s.aborted) break
              await s.writeSSE({ data: String(sent) })
              stream.each?.(c.get('apiKey'), sent + 1)
            }
          } finally {
            await r.handle(c.get('apiKey'), { sent, aborted: s.aborted })
          }
        }),
      )
      continue
    }
    const before = r.before
    if (before)
      app.use(r.path, async (c, next) => {
        for (const name in before) c.header(name, before[name])
        await next()
      })
    if (r.outer) app.use(r.path, requireApiKey(tb, r.outer))
    app.on(r.method ?? 'GET', r.path, requireApiKey(tb, r.options), async (c) => {
      if (c.req.method === 'POST') await c.req.json()
      return c.json((await r.handle(c.get('apiKey'))) as object, 200, r.headers)
    })
  }
  return serveHono(app)
}
