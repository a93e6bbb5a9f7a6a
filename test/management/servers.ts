/**
 * @module test/management/servers
 *
 * Real servers for the management API suites: the same `managementApi(tb)` mounted under a
 * base path in Hono (`app.route`, served by `@hono/node-server`), Express (`mountFetch`) and
 * Fastify (`mountFetch` registered with a prefix), each on 127.0.0.1 port 0, beside a product
 * route (`POST <base>/synthesize`, consumption keys, cost 1) to show that a rotated or revoked
 * key stops working there. Also a tollbooth on a manual clock and a small JSON client.
 */

import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { mountFetch as expressMount } from '../../adapters/express/mount.js'
import { mountFetch as fastifyMount } from '../../adapters/fastify/mount.js'
import { requireApiKey } from '../../adapters/hono/index.js'
import { type ManagementOptions, managementApi } from '../../adapters/management/index.js'
import {
  createTollbooth,
  type HeaderSource,
  type ManualClock,
  manualClock,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/internal.js'

import { type Served, serveExpress, serveFastify, serveHono } from '../support/servers.js'

export type Framework = 'hono' | 'express' | 'fastify'
/** All three; Express alone in the Express 4 run (`vitest.express4.config.ts`). */
export const FRAMEWORKS: Framework[] = process.env['TOLLBOOTH_EXPRESS_MAJOR']
  ? ['express']
  : ['hono', 'express', 'fastify']

export const SECRET = 'management-suite-secret-management-suite-secret'
export const PREFIXES = { consumption: 'plabs_sk_live_', management: 'mk_' }
export const T0 = Date.UTC(2026, 2, 21, 0, 0, 0)
/** The provider key the verifier below accepts. */
export const GOOD_PROVIDER_KEY = 'sk_elevenlabs_good_0001'

export type { Served }

/** A tollbooth on a manual clock with a plan and a provider-key verifier. */
export function makeTollbooth(extra: Partial<TollboothOptions> = {}): {
  tb: Tollbooth
  clock: ManualClock
} {
  const clock = manualClock(T0)
  const tb = createTollbooth({
    secret: SECRET,
    clock,
    prefixes: PREFIXES,
    failedAuth: false,
    plans: {
      pro: {
        display: 'Pro ($99/mo)',
        monthlyCredits: 200_000,
        overageRate: 0.0008,
        carryoverMonths: 1,
      },
    },
    defaultTier: 'pro',
    verifiers: { elevenlabs: (k: string) => k === GOOD_PROVIDER_KEY },
    ...extra,
  } as TollboothOptions)
  return { tb, clock }
}

const consumption = (tb: Tollbooth) => tb.route({ cost: 1, category: 'tts', byok: true })

/** The product route without a framework adapter: authenticate, answer, settle on finish. */
async function product(tb: Tollbooth, headers: HeaderSource, ip: string | null, path: string) {
  return tb.authenticate({ headers, ip, method: 'POST', path }, consumption(tb))
}

/** Serves `managementApi(tb, options)` under `base` in `framework`, beside the product route. */
export async function serveManagement(
  framework: Framework,
  tb: Tollbooth,
  options: ManagementOptions = {},
  base = '/v1',
): Promise<Served> {
  const api = managementApi(tb, options)
  if (framework === 'hono') {
    const app = new Hono()
    app.route(base, api)
    // Registered after the management API: its routes answer first, the product's stay guarded.
    app.use(`${base}/*`, requireApiKey(tb, { cost: 1, category: 'tts', byok: true }))
    app.post(`${base}/synthesize`, (c) =>
      c.json({ ok: true, accountId: c.get('apiKey').accountId }),
    )
    return serveHono(app)
  }
  if (framework === 'express') {
    const app = express()
    app.post(`${base}/synthesize`, async (req, res) => {
      const d = await product(tb, req.headers, req.socket.remoteAddress ?? null, req.path)
      if (!d.allowed) {
        res.status(d.status).set(d.headers).type('application/json').send(d.body)
        return
      }
      res.on('finish', () => void tb.settle(d, { status: res.statusCode }))
      res.set(d.responseHeaders()).json({ ok: true, accountId: d.accountId })
    })
    app.use(base, expressMount(api.fetch))
    return serveExpress(app)
  }
  const app = Fastify()
  app.post(`${base}/synthesize`, async (request, reply) => {
    const d = await product(tb, request.headers, request.ip, request.url)
    if (!d.allowed)
      return reply.status(d.status).headers(d.headers).type('application/json').send(d.body)
    reply.raw.on('finish', () => void tb.settle(d, { status: reply.statusCode }))
    return reply.headers(d.responseHeaders()).send({ ok: true, accountId: d.accountId })
  })
  await app.register(fastifyMount(api.fetch), { prefix: base })
  return serveFastify(app)
}

export interface Res {
  status: number
  headers: Headers
  /** Parsed JSON, or null for an empty or non-JSON body. */
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers field by field and compare them whole
  body: any
  text: string
}

export interface Call {
  /** Bearer token (a key or a JWT). */
  token?: string
  /** Sent as JSON. */
  json?: unknown
  /** Sent as is. */
  raw?: string
  headers?: Record<string, string>
}

/** A fetch to `url + path`, answering status, headers, parsed JSON and text (one curl line). */
export async function call(url: string, method: string, path: string, c: Call = {}): Promise<Res> {
  const headers: Record<string, string> = { ...c.headers }
  if (c.token) headers['authorization'] = `Bearer ${c.token}`
  let body: string | undefined
  if (c.json !== undefined) {
    body = JSON.stringify(c.json)
    headers['content-type'] ??= 'application/json'
  } else if (c.raw !== undefined) {
    body = c.raw
  }
  // Redirects are answers too (the portal redirects its bare base path).
  const res = await fetch(url + path, {
    method,
    headers,
    redirect: 'manual',
    ...(body !== undefined ? { body } : {}),
  })
  const text = await res.text()
  let parsed: unknown = null
  try {
    parsed = text ? JSON.parse(text) : null
  } catch {
    parsed = null
  }
  return { status: res.status, headers: res.headers, body: parsed, text }
}

/** A client bound to one server and base path. */
export function client(served: Served, base = '/v1') {
  return (method: string, path: string, c: Call = {}) => call(served.url, method, base + path, c)
}
