/**
 * @module test/http/express-prototypes
 *
 * `tollbooth/express` extends Express's own request and response prototypes once per process
 * (an `apiKey` getter, a `writeHead`), in a file of its own since that outlives each test. A
 * second copy of the adapter (its CommonJS build beside the ESM one) may have extended them
 * first: this one's getter and `writeHead` then defer to that copy's for what is not its own.
 */

import { IncomingMessage, ServerResponse } from 'node:http'
import express, { type Request } from 'express'
import { expect, test } from 'vitest'
import { requireApiKey } from '../../adapters/express/index.js'
import { planned } from './express-server.js'

/** Express's own prototype: the one just above Node's in a request's (or response's) chain. */
function expressBase(app: express.Express, which: 'request' | 'response'): object {
  let p = Object.getPrototypeOf(app[which]) as object
  const node = which === 'request' ? IncomingMessage.prototype : ServerResponse.prototype
  while (Object.getPrototypeOf(p) !== node) p = Object.getPrototypeOf(p) as object
  return p
}

test('defers to another copy that extended the prototypes first', async () => {
  // "The other copy": its own admissions, an apiKey getter and a writeHead on the same objects.
  const probe = express()
  const theirs = new WeakMap<object, unknown>()
  const heads: number[] = []
  Object.defineProperty(expressBase(probe, 'request'), 'apiKey', {
    configurable: true,
    get(this: object) {
      return theirs.get(this)
    },
  })
  Object.defineProperty(expressBase(probe, 'response'), 'writeHead', {
    configurable: true,
    writable: true,
    value: function writeHead(this: ServerResponse, ...args: unknown[]) {
      heads.push(this.statusCode)
      return (ServerResponse.prototype.writeHead as (...a: unknown[]) => ServerResponse).apply(
        this,
        args,
      )
    },
  })

  const s = await planned((tb) => {
    const app = express()
    app.get('/v1/a', requireApiKey(tb, { cost: 4 }), (req, res) => {
      res.json({ account: req.apiKey.accountId, own: Object.hasOwn(res, 'writeHead') })
    })
    // A request the other copy admitted: this copy's getter answers it from theirs.
    app.get('/other', (req: Request, res) => {
      theirs.set(req, { accountId: 'acct_theirs' })
      res.json({ account: (req.apiKey as unknown as { accountId: string }).accountId })
    })
    return app
  })
  try {
    const res = await s.fetch('/v1/a')
    expect(await res.json()).toEqual({ account: 'acct_1', own: false })
    expect(res.headers.get('x-usage-current')).toBe('4')
    // The other copy's writeHead ran under this one's, once per response.
    expect(heads).toEqual([200])
    const other = await s.fetch('/other')
    expect(await other.json()).toEqual({ account: 'acct_theirs' })
    expect(other.headers.get('x-usage-current')).toBeNull()
    expect(heads).toEqual([200, 200])
  } finally {
    await s.close()
  }
})
