/**
 * @module test/support/servers
 *
 * Real servers for the suites, each on 127.0.0.1 port 0 (the system picks a free port): a
 * Hono app on `@hono/node-server`, an Express app, a Fastify app. `close()` drops kept-alive
 * connections, so a suite never waits on them.
 */

import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { Express } from 'express'
import type { FastifyInstance } from 'fastify'
import type { Hono } from 'hono'

export interface Served {
  /** `http://127.0.0.1:<port>` */
  url: string
  close(): Promise<void>
}

/** Closes a Node server, dropping kept-alive connections so the test does not wait on them. */
export function closeServer(server: HttpServer): Promise<void> {
  return new Promise<void>((r) => {
    server.close(() => r())
    server.closeAllConnections()
  })
}

/** A Node server once it listens, as `Served`. */
export async function listening(server: HttpServer): Promise<Served> {
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
