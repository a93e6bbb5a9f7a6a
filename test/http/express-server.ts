/**
 * @module test/http/express-server
 *
 * For the Express tests: `planned`, an instance on a plan of 100 credits with a key, whose app
 * `build` makes, served on 127.0.0.1:0 (`serveExpress`).
 */

import type express from 'express'
import { createTollbooth, memoryStorage, type Tollbooth } from '../../src/index.js'
import { serveExpress } from '../support/servers.js'
import { SECRET } from './harness.js'

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
