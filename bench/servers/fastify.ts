/**
 * @module bench/servers/fastify
 *
 * One process, one Fastify 5 instance per variant, each on its own port.
 */

import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { requireApiKey, tollbooth } from '../../adapters/fastify/index.js'
import type { FloorAdmit } from '../floor.js'
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
const FLOOR = Symbol('floor')

const handler = async () => ({ hello: 'world' })

const redis = redisVariants(tb)

const bearer = async (req: FastifyRequest, reply: FastifyReply) => {
  if (req.headers.authorization !== `Bearer ${key}`)
    return reply.code(401).send({ error: 'Invalid API Key' })
}

const sqlite = await sqliteVariant(tb)

async function build(
  v:
    | Variant
    | 'tollbooth-redis'
    | 'tollbooth-peer-headers-redis'
    | 'peer-redis'
    | 'tollbooth-sqlite',
): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  app.get('/redis-commands', async () => String(redis?.commands[v]?.() ?? 0))
  switch (v) {
    case 'tollbooth-redis':
    case 'tollbooth-peer-headers-redis':
      await app.register(tollbooth, { tb: redis!.tb })
      app.get(
        '/hello',
        {
          preHandler: requireApiKey(
            redis!.tb,
            route(v === 'tollbooth-redis' ? ALL_HEADERS : RATE_LIMIT_ONLY),
          ),
        },
        handler,
      )
      break
    case 'tollbooth-sqlite':
      await app.register(tollbooth, { tb: sqlite! })
      app.get('/hello', { preHandler: requireApiKey(sqlite!, route(ALL_HEADERS)) }, handler)
      break
    case 'peer-redis':
      // @fastify/rate-limit's own Redis store, on ioredis.
      await app.register(rateLimit, {
        max: 1e9,
        timeWindow: 60_000,
        keyGenerator: (req) => req.headers.authorization ?? '',
        redis: redis!.peer,
        nameSpace: `frl${process.pid}:`,
      })
      app.get('/hello', { onRequest: bearer }, handler)
      break
    case 'bare':
      app.get('/hello', handler)
      break
    case 'noop':
      app.addHook('onRequest', async () => {})
      app.get('/hello', handler)
      break
    case 'floor':
      app.addHook('onRequest', async (req, reply) => {
        const a = f.admit(req.headers.authorization, req.headers['x-api-key'] as string | undefined)
        if (!('key' in a)) return reply.code(a.status).type('application/json').send(a.body)
        for (const [n, h] of a.headers) reply.header(n, h)
        ;(req as unknown as Record<symbol, FloorAdmit>)[FLOOR] = a
      })
      app.addHook('onResponse', async (req, reply) => {
        const a = (req as unknown as Record<symbol, FloorAdmit | undefined>)[FLOOR]
        if (a) f.settle(a, reply.statusCode)
      })
      app.get('/hello', handler)
      break
    case 'tollbooth':
    case 'tollbooth-peer-headers':
      await app.register(tollbooth, { tb })
      // @fastify/rate-limit's x-ratelimit-* family, the same three headers as tollbooth's.
      app.get(
        '/hello',
        { preHandler: requireApiKey(tb, route(v === 'tollbooth' ? ALL_HEADERS : RATE_LIMIT_ONLY)) },
        handler,
      )
      break
    case 'peer':
      app.addHook('onRequest', bearer)
      await app.register(rateLimit, {
        max: 1e9,
        timeWindow: 60_000,
        keyGenerator: (req) => req.headers.authorization ?? '',
      })
      app.get('/hello', handler)
      break
  }
  return app
}

const ports: Record<string, number> = {}
const storageVariants: Record<string, unknown> = { ...(redis?.commands ?? {}) }
if (sqlite) storageVariants['tollbooth-sqlite'] = true
for (const v of served(storageVariants) as Array<Parameters<typeof build>[0]>) {
  const app = await build(v)
  await app.listen({ port: 0, host: '127.0.0.1' })
  ports[v] = portOf(app.server)
}
announce(ports, key)
