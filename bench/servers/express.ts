/**
 * @module bench/servers/express
 *
 * One process, one Express 5 app per variant, each on its own port.
 */

import express, { type RequestHandler } from 'express'
import { rateLimit } from 'express-rate-limit'
import { RedisStore } from 'rate-limit-redis'
import { requireApiKey } from '../../adapters/express/index.js'
import {
  ALL_HEADERS,
  announce,
  benchTollbooth,
  floor,
  portOf,
  RATE_LIMIT_ONLY,
  redisVariants,
  route,
  served,
  sqliteVariant,
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

/** express-rate-limit as the peer variants use it, on its memory store or the one given. */
const peerLimiter = (store?: RedisStore) =>
  rateLimit({
    windowMs: 60_000,
    limit: 1e9,
    standardHeaders: false,
    legacyHeaders: true,
    keyGenerator: (req) => req.headers.authorization ?? '',
    validate: false,
    ...(store ? { store } : {}),
  })

const middleware: Record<Variant, RequestHandler[]> = {
  bare: [],
  noop: [(_req, _res, next) => next()],
  floor: [floorMw],
  tollbooth: [requireApiKey(tb, route(ALL_HEADERS))],
  // express-rate-limit's legacy X-RateLimit-* family, the same three headers as tollbooth's.
  'tollbooth-peer-headers': [requireApiKey(tb, route(RATE_LIMIT_ONLY))],
  peer: [bearer, peerLimiter()],
}

// With REDIS_URL: tollbooth's counters on Redis, and express-rate-limit on rate-limit-redis.
const extra: Record<string, RequestHandler[]> = {}
const redis = redisVariants(tb)
if (redis) {
  const client = redis.peer
  extra['tollbooth-redis'] = [requireApiKey(redis.tb, route(ALL_HEADERS))]
  extra['tollbooth-peer-headers-redis'] = [requireApiKey(redis.tb, route(RATE_LIMIT_ONLY))]
  extra['peer-redis'] = [
    bearer,
    peerLimiter(
      new RedisStore({
        sendCommand: (command: string, ...args: string[]) => client.call(command, ...args) as never,
        prefix: `rl${process.pid}:`,
      }),
    ),
  ]
}

const sqlite = await sqliteVariant(tb)
if (sqlite) extra['tollbooth-sqlite'] = [requireApiKey(sqlite, route(ALL_HEADERS))]

const ports: Record<string, number> = {}
for (const v of served(extra)) {
  const app = express()
  app.disable('x-powered-by')
  app.disable('etag')
  app.get('/hello', ...(middleware[v as Variant] ?? extra[v]!), (_req, res) => {
    res.json({ hello: 'world' })
  })
  app.get('/redis-commands', (_req, res) => {
    res.send(String(redis?.commands[v]?.() ?? 0))
  })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  ports[v] = portOf(server)
}
announce(ports, key)
