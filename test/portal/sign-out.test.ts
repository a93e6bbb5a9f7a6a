/**
 * @module test/portal/sign-out
 *
 * Signing out of the portal ends the session, not just the cookie: a copy of the token (a
 * second tab's cookie, one read off a shared machine) is refused afterwards by the portal and
 * its API, on Hono, Express and Fastify, and on another instance sharing the store, on every
 * store. And a session without `exp` gets a cookie that ends with it (7 days after `iat`).
 */

import { createServer, type Socket } from 'node:net'
import { SignJWT } from 'jose'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import type { Storage } from '../../src/index.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { fourStores } from '../support/stores.js'
import {
  browserClient,
  type Framework,
  makeTollbooth,
  SESSION_SECRET,
  type Served,
  servePortal,
  sessionToken,
} from './servers.js'

const stores = await fourStores('portal-sign-out')
const running: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close()
})

async function portalOn(framework: Framework, storage?: Storage) {
  const { tb, clock } = makeTollbooth(storage ? { storage } : {})
  running.push(tb)
  const served: Served = await servePortal(framework, tb)
  running.push(served)
  return { tb, clock, served }
}

/** A client that sends `token` as the portal's session cookie (and learns the CSRF token). */
async function withCookie(url: string, token: string) {
  const c = browserClient(url)
  c.jar.set('tollbooth-portal', token)
  return c
}

for (const framework of ['hono', 'express', 'fastify'] as const)
  describe(`sign-out on ${framework}`, () => {
    it('ends the session: a copy of the cookie is refused after, by the page and the API', async () => {
      const { clock, served } = await portalOn(framework)
      const client = browserClient(served.url)
      const token = await sessionToken('acct_a', clock)
      expect((await client.signIn(token)).status).toBe(200)
      const copy = await withCookie(served.url, token)
      expect((await copy.call('GET', '/api/keys')).status).toBe(200)

      expect((await client.call('DELETE', '/api/session')).status).toBe(200)
      expect(client.jar.has('tollbooth-portal')).toBe(false)

      const keys = await copy.call('GET', '/api/keys')
      expect([keys.status, keys.body]).toEqual([
        401,
        { error: 'Session ended: signed out', code: 'unauthorized' },
      ])
      // The page shows it signed out, and drops the cookie.
      const s = await copy.call('GET', '/api/session')
      expect(s.body.signedIn).toBe(false)
      expect(copy.jar.has('tollbooth-portal')).toBe(false)
      const again = await browserClient(served.url).signIn(token)
      expect([again.status, again.body.error]).toEqual([401, 'Session ended: signed out'])
      // Another session of the account goes on.
      clock.advance(1000)
      const other = browserClient(served.url)
      expect((await other.signIn(await sessionToken('acct_a', clock))).status).toBe(200)
      expect((await other.call('GET', '/api/keys')).status).toBe(200)
    })

    it('gives a token without exp a cookie that ends 7 days after its iat', async () => {
      const { clock, served } = await portalOn(framework)
      const iat = Math.floor(clock.now() / 1000)
      const token = await new SignJWT({ sub: 'acct_a' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuedAt(iat)
        .sign(new TextEncoder().encode(SESSION_SECRET))
      const r = await browserClient(served.url).signIn(token)
      expect(r.status).toBe(200)
      expect(r.headers.getSetCookie()[0]).toMatch(/^tollbooth-portal=ey[\w.-]+; Max-Age=604800;/)
    })
  })

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`sign-out across instances on ${name}`, () => {
    it('a session signed out on one instance is refused on another sharing the store', async () => {
      const storage = await make!()
      const a = await portalOn('hono', storage)
      const b = await portalOn('hono', storage)
      b.clock.set(a.clock.now())
      const token = await sessionToken('acct_a', a.clock)
      const client = browserClient(a.served.url)
      expect((await client.signIn(token)).status).toBe(200)
      const atB = await withCookie(b.served.url, token)
      expect((await atB.call('GET', '/api/keys')).status).toBe(200)
      expect((await client.call('DELETE', '/api/session')).status).toBe(200)
      expect((await atB.call('GET', '/api/keys')).status).toBe(401)
      expect((await atB.call('GET', '/api/session')).body.signedIn).toBe(false)
    })
  })

describe.skipIf(skipPostgres)('sign-out while the store is down', () => {
  it('answers 503 and keeps the cookie, so that signing out again can end the session', async () => {
    const admin = newPool(1)
    const pool = newPool(2)
    const fresh = await freshSchema(admin)
    try {
      const { tb, clock, served } = await portalOn(
        'hono',
        postgresStorage({ pool, schema: fresh.schema }),
      )
      const client = browserClient(served.url)
      expect((await client.signIn(await sessionToken('acct_a', clock))).status).toBe(200)
      // Ending: every new query fails at once (the change feed's client holds the end off).
      const ended = pool.end()
      const r = await client.call('DELETE', '/api/session')
      expect([r.status, r.body.code]).toEqual([503, 'storage_unavailable'])
      expect(r.headers.getSetCookie()).toEqual([])
      expect(client.jar.has('tollbooth-portal')).toBe(true)
      // Nor is a session let in unchecked while the store is down.
      const s = await client.call('GET', '/api/session')
      expect([s.status, s.body.code]).toEqual([503, 'storage_unavailable'])
      running.splice(0)
      await served.close()
      await tb.close()
      await ended
    } finally {
      await fresh.drop()
      await admin.end()
    }
  })
})

describe('a session check on a store that does not answer', () => {
  it('answers 503 within storageTimeoutMs, not a request held open', async () => {
    // A "PostgreSQL" that takes connections and never says a word: every query waits forever.
    const sockets = new Set<Socket>()
    const silent = createServer((s) => {
      sockets.add(s)
      s.on('error', () => {})
    })
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const port = (silent.address() as { port: number }).port
    const pool = new pg.Pool({ connectionString: `postgres://x@127.0.0.1:${port}/x`, max: 4 })
    pool.on('error', () => {})
    const { tb, clock } = makeTollbooth({
      storage: postgresStorage({ pool, schema: 'never_reached' }),
      storageTimeoutMs: 300,
    } as never)
    const served = await servePortal('hono', tb)
    try {
      const c = await withCookie(served.url, await sessionToken('acct_a', clock))
      const started = Date.now()
      const s = await c.call('GET', '/api/session')
      expect([s.status, s.body.code]).toEqual([503, 'storage_unavailable'])
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      await served.close()
      for (const s of sockets) s.destroy()
      silent.close()
      void tb.close().catch(() => {})
      void pool.end().catch(() => {})
    }
  }, 15_000)
})
