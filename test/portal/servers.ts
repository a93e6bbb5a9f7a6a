/**
 * @module test/portal/servers
 *
 * Real servers for the portal suites, each on 127.0.0.1 port 0: a product API with the
 * portal mounted at a base path, in Hono (`app.route`), Express and Fastify (`mountFetch`),
 * beside a product route (`POST /v1/synthesize`, consumption keys, cost 1, category `tts`).
 * Also a tollbooth on a manual clock, session JWTs signed with jose, and a cookie-keeping
 * fetch client that behaves like the portal's page (CSRF token from `GET api/session`).
 */

import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { SignJWT } from 'jose'
import {
  mountFetch as expressMount,
  requireApiKey as expressRequireApiKey,
} from '../../adapters/express/index.js'
import { mountFetch as fastifyMount } from '../../adapters/fastify/mount.js'
import { requireApiKey } from '../../adapters/hono/index.js'
import { type PortalOptions, portal } from '../../adapters/portal/index.js'
import {
  createTollbooth,
  type ManualClock,
  manualClock,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/internal.js'

import { type Served, serveExpress, serveFastify, serveHono } from '../support/servers.js'

export type Framework = 'hono' | 'express' | 'fastify'

export const SECRET = 'portal-suite-secret-portal-suite-secret-0001'
export const SESSION_SECRET = 'portal-session-secret-portal-session-secret'
export const PREFIXES = { consumption: 'plabs_sk_live_', management: 'mk_' }
/** The provider key the verifier accepts. */
export const GOOD_PROVIDER_KEY = 'sk-openai-good-key-0001'

export type { Served }

/** A tollbooth on a manual clock (started at the real time, so the browser's dates agree). */
export function makeTollbooth(extra: Partial<TollboothOptions> = {}): {
  tb: Tollbooth
  clock: ManualClock
} {
  const clock = manualClock(Date.now())
  const tb = createTollbooth({
    secret: SECRET,
    clock,
    prefixes: PREFIXES,
    failedAuth: false,
    plans: { pro: { display: 'Pro', monthlyCredits: 1000, overageRate: 0, carryoverMonths: 0 } },
    defaultTier: 'pro',
    verifiers: { openai: (k: string) => k === GOOD_PROVIDER_KEY },
    ...extra,
  } as TollboothOptions)
  return { tb, clock }
}

/** A session JWT for `accountId`, valid for `lifetimeS` (an hour) from the clock's now. */
export function sessionToken(
  accountId: string,
  clock: ManualClock,
  secret = SESSION_SECRET,
  lifetimeS = 3600,
): Promise<string> {
  const now = Math.floor(clock.now() / 1000)
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(accountId)
    .setIssuedAt(now)
    .setExpirationTime(now + lifetimeS)
    .sign(new TextEncoder().encode(secret))
}

/** Serves the product route and `portal(tb, options)` under `base` in `framework`. */
export async function servePortal(
  framework: Framework,
  tb: Tollbooth,
  options: PortalOptions = { session: { secret: SESSION_SECRET } },
  base = '/portal',
): Promise<Served> {
  const app = portal(tb, options)
  if (framework === 'hono') {
    const root = new Hono()
    root.use('/v1/*', requireApiKey(tb, { cost: 1, category: 'tts' }))
    root.post('/v1/synthesize', (c) => c.json({ ok: true, accountId: c.get('apiKey').accountId }))
    root.route(base, app)
    return serveHono(root)
  }
  if (framework === 'express') {
    const root = express()
    root.post(
      '/v1/synthesize',
      expressRequireApiKey(tb, { cost: 1, category: 'tts' }),
      (_req, res) => {
        res.json({ ok: true })
      },
    )
    root.use(base, expressMount(app.fetch))
    return serveExpress(root)
  }
  const root = Fastify()
  await root.register(fastifyMount(app.fetch), { prefix: base })
  return serveFastify(root)
}

/** An answer: status, headers, parsed JSON (or null) and text. */
export interface Res {
  status: number
  headers: Headers
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers field by field
  body: any
  text: string
}

/**
 * A browser-like client of one portal: keeps the cookies it is given, and sends the CSRF
 * token it learnt from `GET api/session` on changes (unless told not to).
 */
export function browserClient(url: string, base = '/portal') {
  const jar = new Map<string, string>()
  let csrf = ''
  const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
  const keep = (res: Response) => {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const eq = pair!.indexOf('=')
      const name = pair!.slice(0, eq)
      const value = pair!.slice(eq + 1)
      if (/max-age=0/i.test(c)) jar.delete(name)
      else jar.set(name, value)
    }
  }
  async function call(
    method: string,
    path: string,
    opts: { json?: unknown; headers?: Record<string, string>; csrf?: boolean } = {},
  ): Promise<Res> {
    const headers: Record<string, string> = { ...opts.headers }
    if (jar.size) headers['cookie'] = cookieHeader()
    if (opts.csrf !== false && method !== 'GET') headers['x-csrf-token'] = csrf
    let body: string | undefined
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json)
      headers['content-type'] = 'application/json'
    }
    const res = await fetch(`${url}${base}${path}`, { method, headers, body, redirect: 'manual' })
    keep(res)
    const text = await res.text()
    let parsed: unknown = null
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {}
    if (path === '/api/session' && parsed && typeof parsed === 'object' && 'csrfToken' in parsed)
      csrf = String((parsed as { csrfToken: string }).csrfToken)
    return { status: res.status, headers: res.headers, body: parsed, text }
  }
  return {
    call,
    jar,
    /** GET session (learns the CSRF token), then POST the token. */
    async signIn(token: string): Promise<Res> {
      await call('GET', '/api/session')
      return call('POST', '/api/session', { json: { token } })
    },
  }
}
