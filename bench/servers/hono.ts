/**
 * @module bench/servers/hono
 *
 * One process, one Hono app per variant, each on its own port (so no variant pays for
 * another's routing). The runner loads one port at a time.
 */

import { serve } from '@hono/node-server'
import { Hono, type MiddlewareHandler } from 'hono'
import { RedisStore, rateLimiter } from 'hono-rate-limiter'
import pg from 'pg'
import { requireApiKey } from '../../adapters/hono/index.js'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import {
  ALL_HEADERS,
  announce,
  benchTollbooth,
  floor,
  IETF_ONLY,
  onShutdown,
  redisVariants,
  route,
  STORAGE_PROCESS,
  served,
  sqliteVariant,
  type Variant,
  withCounters,
} from './common.js'

const { tb, key } = await benchTollbooth()
const f = floor(key)

interface Node {
  incoming: { headers: Record<string, string | undefined> }
  outgoing: { setHeader(n: string, v: string): void }
}

// As tollbooth's adapter does on Node: the request's header record as it came (c.req.header()
// would build a Web Headers), and the response headers onto the ServerResponse.
const floorMw: MiddlewareHandler = async (c, next) => {
  const { incoming, outgoing } = c.env as Node
  const a = f.admit(incoming.headers['authorization'], incoming.headers['x-api-key'])
  if (!('key' in a)) return c.body(a.body, a.status as 401, { 'content-type': 'application/json' })
  await next()
  for (const [n, v] of a.headers) outgoing.setHeader(n, v)
  f.settle(a, c.res.status)
  return undefined
}

const bearer: MiddlewareHandler = async (c, next) => {
  const auth = c.req.header('authorization')
  if (auth !== `Bearer ${key}`) return c.json({ error: 'Invalid API Key' }, 401)
  await next()
  return undefined
}

/** hono-rate-limiter as the peer variants use it, on its memory store or the one given. */
const peerLimiter = (store?: RedisStore) =>
  rateLimiter({
    windowMs: 60_000,
    limit: 1e9,
    standardHeaders: 'draft-7',
    keyGenerator: (c) => c.req.header('authorization') ?? '',
    ...(store ? { store } : {}),
  })

const middleware: Record<Variant, MiddlewareHandler[]> = {
  bare: [],
  noop: [async (_c, next) => next()],
  floor: [floorMw],
  tollbooth: [requireApiKey(tb, route(ALL_HEADERS))],
  // hono-rate-limiter sends the IETF draft-7 pair; tollbooth sends its IETF family, the same two headers.
  'tollbooth-peer-headers': [requireApiKey(tb, route(IETF_ONLY))],
  peer: [bearer, peerLimiter()],
}

// Storage variants, when the servers are there: the same job with the counters on Redis or
// PostgreSQL (keys, accounts and usage stay in memory, as cached keys would), and the peer on
// its Redis store.
const extra: Record<string, MiddlewareHandler[]> = {}
const redis = redisVariants(tb)
if (redis) {
  extra['tollbooth-redis'] = [requireApiKey(redis.tb, route(ALL_HEADERS))]
  extra['tollbooth-peer-headers-redis'] = [requireApiKey(redis.tb, route(IETF_ONLY))]
  const client = redis.peer
  extra['peer-redis'] = [
    bearer,
    peerLimiter(
      // hono-rate-limiter's RedisStore takes a client of four methods: ioredis, adapted.
      new RedisStore({
        client: {
          scriptLoad: (script: string) => client.script('LOAD', script) as Promise<string>,
          evalsha: <TArgs extends unknown[], TData = unknown>(
            sha1: string,
            keys: string[],
            args: TArgs,
          ) => client.evalsha(sha1, keys.length, ...keys, ...(args as string[])) as Promise<TData>,
          decr: (key: string) => client.decr(key),
          del: (key: string) => client.del(key),
        },
        prefix: `hrl${process.pid}:`,
      }),
    ),
  ]
}
if (STORAGE_PROCESS && process.env.DATABASE_URL) {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 8 })
  const schema = `tb_bench_${process.pid}`
  await migrate({ pool, schema })
  onShutdown(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await pool.end()
  })
  const counters = postgresStorage({ pool, schema }).counters
  extra['tollbooth-postgres'] = [requireApiKey(withCounters(tb, counters), route(ALL_HEADERS))]
}

const sqlite = await sqliteVariant(tb)
if (sqlite) extra['tollbooth-sqlite'] = [requireApiKey(sqlite, route(ALL_HEADERS))]

const ports: Record<string, number> = {}
for (const v of served(extra)) {
  const app = new Hono()
  for (const m of middleware[v as Variant] ?? extra[v]!) app.use('/hello', m)
  app.get('/hello', (c) => c.json({ hello: 'world' }))
  app.get('/redis-commands', (c) => c.text(String(redis?.commands[v]?.() ?? 0)))
  await new Promise<void>((resolve) => {
    serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
      ports[v] = info.port
      resolve()
    })
  })
}
announce(ports, key)
