/**
 * @module bench/servers/express
 *
 * One process, one Express 5 app per variant, each on its own port.
 */

import express, { type RequestHandler } from 'express'
import { rateLimit } from 'express-rate-limit'
import { requireApiKey } from '../../adapters/express/index.js'
import {
  ALL_HEADERS,
  announce,
  benchTollbooth,
  floor,
  portOf,
  RATE_LIMIT_ONLY,
  route,
  VARIANTS,
  type Variant,
} from './common.js'

const { tb, key } = await benchTollbooth()
const f = floor(key)

const floorMw: RequestHandler = (req, res, next) => {
  const a = f.admit(req.headers.authorization, req.headers['x-api-key'] as string | undefined)
  if (!('key' in a)) {
    res.status(a.status).type('application/json').send(a.body)
    return
  }
  for (const [n, v] of a.headers) res.setHeader(n, v)
  res.on('finish', () => f.settle(a, res.statusCode))
  next()
}

const bearer: RequestHandler = (req, res, next) => {
  if (req.headers.authorization !== `Bearer ${key}`) {
    res.status(401).json({ error: 'Invalid API Key' })
    return
  }
  next()
}

const middleware: Record<Variant, RequestHandler[]> = {
  bare: [],
  noop: [(_req, _res, next) => next()],
  floor: [floorMw],
  tollbooth: [requireApiKey(tb, route(ALL_HEADERS))],
  // express-rate-limit's legacy X-RateLimit-* family, the same three headers as tollbooth's.
  'tollbooth-peer-headers': [requireApiKey(tb, route(RATE_LIMIT_ONLY))],
  peer: [
    bearer,
    rateLimit({
      windowMs: 60_000,
      limit: 1e9,
      standardHeaders: false,
      legacyHeaders: true,
      keyGenerator: (req) => req.headers.authorization ?? '',
      validate: false,
    }),
  ],
}

const ports: Record<string, number> = {}
for (const v of VARIANTS) {
  const app = express()
  app.disable('x-powered-by')
  app.disable('etag')
  app.get('/hello', ...middleware[v], (_req, res) => {
    res.json({ hello: 'world' })
  })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  ports[v] = portOf(server)
}
announce(ports, key)
