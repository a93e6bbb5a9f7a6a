/**
 * @module test/http/express-server
 *
 * Express apps for the Express tests, on 127.0.0.1:0: `listen`, and `planned`, an instance on a
 * plan of 100 credits with a key, whose app `build` makes.
 */

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type express from 'express'
import { createTollbooth, memoryStorage, type Tollbooth } from '../../src/index.js'
import { SECRET } from './harness.js'

export async function listen(app: express.Express) {
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
  const server = await listen(build(tb))
  return {
    fetch: (path: string) =>
      fetch(server.url + path, { headers: { authorization: `Bearer ${key}` } }),
    close: async () => {
      await server.close()
      await tb.close()
    },
  }
}
