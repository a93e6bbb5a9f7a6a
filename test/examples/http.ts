/**
 * @module test/examples/http
 *
 * What the example suites share: each example served in-process on 127.0.0.1 port 0 by its
 * own framework, a JSON client that replays the seeds' curl lines, and a way to wait until
 * every settle the server started has finished (adapters settle when the response finishes,
 * which can be after the client holds its answer).
 */

import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { Express } from 'express'
import type { FastifyInstance } from 'fastify'
import type { Hono } from 'hono'
import type { Tollbooth } from '../../src/index.js'

export interface Served {
  /** `http://127.0.0.1:<port>` */
  url: string
  close(): Promise<void>
}

/** Closes a Node server, dropping kept-alive connections. */
function closeServer(server: HttpServer): Promise<void> {
  return new Promise<void>((r) => {
    server.close(() => r())
    server.closeAllConnections()
  })
}

async function listening(server: HttpServer): Promise<Served> {
  if (!server.listening) await new Promise<void>((r) => server.once('listening', () => r()))
  const port = (server.address() as AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, close: () => closeServer(server) }
}

/** Serves a Hono app with `@hono/node-server`. */
export function serveHono(app: Hono): Promise<Served> {
  return listening(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as HttpServer)
}

/** Serves an Express app. */
export function serveExpress(app: Express): Promise<Served> {
  return listening(app.listen(0, '127.0.0.1'))
}

/** Serves a Fastify app. */
export async function serveFastify(app: FastifyInstance): Promise<Served> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      const closing = app.close()
      // A connection whose client abandoned a streamed response can stay counted as open
      // after its socket closed, and app.close() would wait for it.
      app.server.closeAllConnections()
      return closing
    },
  }
}

// One curl line: the management suite's helper, shared.
import { type Call, call, type Res } from '../management/servers.js'

export { type Call, call, type Res }

/** A client bound to one server. */
export type Client = (method: string, path: string, c?: Call) => Promise<Res>

export const clientOf =
  (served: Served): Client =>
  (method, path, c) =>
    call(served.url, method, path, c)

/**
 * Records every settle `tb` starts; `idle()` resolves once they have all finished, so the
 * charges of the answers a test already holds are counted before it checks usage.
 */
export function trackSettles(tb: Tollbooth): { idle(): Promise<void> } {
  const pending = new Set<Promise<unknown>>()
  const settle = tb.settle.bind(tb)
  ;(tb as { settle: Tollbooth['settle'] }).settle = (decision, outcome) => {
    const p = settle(decision, outcome)
    pending.add(p)
    void p.finally(() => pending.delete(p))
    return p
  }
  ;(tb as { settleLater: Tollbooth['settleLater'] }).settleLater = (decision, outcome) =>
    void tb.settle(decision, outcome).catch(() => {})
  return {
    async idle() {
      // The response's `finish` event may still be queued behind the client's read.
      await new Promise((r) => setImmediate(r))
      while (pending.size > 0) await Promise.allSettled([...pending])
    },
  }
}

/** The same request `n` times in sequence; the answers in order. */
export async function repeat(n: number, send: () => Promise<Res>): Promise<Res[]> {
  const out: Res[] = []
  for (let i = 0; i < n; i++) out.push(await send())
  return out
}

export const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
export const DAY = 86_400_000
