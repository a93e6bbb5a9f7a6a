/**
 * What the portal adds to the management API, over real HTTP (127.0.0.1, port 0): unique
 * aliases, the management API's own answers passing through, the per-day usage series, the
 * integrator's own `authenticate`, and the same portal mounted in Express and Fastify.
 */

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ManualClock, Tollbooth } from '../../src/index.js'
import {
  browserClient,
  makeTollbooth,
  SESSION_SECRET,
  type Served,
  servePortal,
  sessionToken,
} from './servers.js'

const DAY = 86_400_000
let tb: Tollbooth
let clock: ManualClock
let served: Served

beforeEach(async () => {
  ;({ tb, clock } = makeTollbooth())
  served = await servePortal('hono', tb)
})
afterEach(async () => {
  await served.close()
  await tb.close()
})

/** A client signed in as `accountId`. */
async function signedIn(accountId = 'acct_a') {
  const client = browserClient(served.url)
  const r = await client.signIn(await sessionToken(accountId, clock))
  expect(r.status).toBe(200)
  return client
}

describe('keys through the portal', () => {
  it('keeps aliases unique per account, without case, also on rename and under concurrency', async () => {
    const client = await signedIn()
    const a = await client.call('POST', '/api/keys', {
      json: { name: 'Backend', category: 'production' },
    })
    expect(a.status).toBe(201)
    const dup = await client.call('POST', '/api/keys', { json: { name: '  backend ' } })
    expect(dup.status).toBe(409)
    expect(dup.body).toEqual({
      error: 'An API key with the alias "backend" already exists; choose another alias',
      code: 'conflict',
      issues: [{ path: 'name', message: 'is already used by another key of this account' }],
    })
    const other = await signedIn('acct_b')
    expect((await other.call('POST', '/api/keys', { json: { name: 'Backend' } })).status).toBe(201)

    const b = await client.call('POST', '/api/keys', { json: { name: 'Worker' } })
    expect(
      (await client.call('PATCH', `/api/keys/${b.body.id}`, { json: { name: 'BACKEND' } })).status,
    ).toBe(409)
    expect(
      (await client.call('PATCH', `/api/keys/${a.body.id}`, { json: { name: 'backend' } })).status,
    ).toBe(200)

    const race = await Promise.all(
      [1, 2, 3, 4].map(() => client.call('POST', '/api/keys', { json: { name: 'Racer' } })),
    )
    expect(race.map((r) => r.status).sort()).toEqual([201, 409, 409, 409])
    expect((await tb.keys.list('acct_a')).data.map((k) => k.name).sort()).toEqual([
      'Racer',
      'Worker',
      'backend',
    ])
  })

  it('keeps aliases unique whatever spelling of the path reaches the key routes', async () => {
    // Issue 20, item 16: the check sat on `POST /api/keys` only, so `/api/x/..%2Fkeys` (which
    // the forwarding decoded into `/x/../keys`, then `/keys`) created a second "Backend".
    const client = await signedIn()
    const a = await client.call('POST', '/api/keys', { json: { name: 'Backend' } })
    expect(a.status).toBe(201)
    const b = await client.call('POST', '/api/keys', { json: { name: 'Worker' } })
    const creates = [
      '/api/x/..%2Fkeys',
      '/api/x/..%2fkeys',
      '/api/x/%2E%2E/keys',
      '/api/%6Beys',
      '/api/keys/',
      '/api//keys',
      '/api/./keys',
      '/api/KEYS',
    ]
    for (const path of creates) {
      const r = await client.call('POST', path, { json: { name: 'BACKEND' } })
      expect([409, 404], `POST ${path}: ${r.status} ${r.text}`).toContain(r.status)
      if (r.status === 409)
        expect(r.body.issues).toEqual([
          { path: 'name', message: 'is already used by another key of this account' },
        ])
    }
    const renames = [
      `/api/x/..%2Fkeys%2F${b.body.id}`,
      `/api/x/..%2Fkeys/${b.body.id}`,
      `/api/%6Beys/${b.body.id}`,
      `/api/keys/${b.body.id}/`,
    ]
    for (const path of renames) {
      const r = await client.call('PATCH', path, { json: { name: 'backend' } })
      expect([409, 404], `PATCH ${path}: ${r.status} ${r.text}`).toContain(r.status)
    }
    expect((await tb.keys.list('acct_a')).data.map((k) => k.name).sort()).toEqual([
      'Backend',
      'Worker',
    ])
  })

  it("passes the management API's own answers through (400 naming the field, 404, 409)", async () => {
    const client = await signedIn()
    const bad = await client.call('POST', '/api/keys', {
      json: { name: 'x', limits: { quotas: { daily: -1 } } },
    })
    expect(bad.status).toBe(400)
    expect(bad.body.code).toBe('invalid_request')
    expect(JSON.stringify(bad.body.issues)).toContain('limits.quotas.daily')
    expect((await client.call('GET', '/api/keys/key_nope')).status).toBe(404)
    expect((await client.call('GET', '/api/nowhere')).body.code).toBe('not_found')
    const big = await client.call('POST', '/api/keys', {
      json: { name: 'x', metadata: { pad: 'x'.repeat(70_000) } },
    })
    expect(big.status).toBe(413)
  })
})

describe('usage per day', () => {
  it('counts requests and credits per UTC day and category, for the current or a past month', async () => {
    const { key } = await tb.keys.create({ accountId: 'acct_a', category: 'production' })
    const call = () =>
      fetch(`${served.url}/v1/synthesize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
      })
    const start = Date.UTC(2026, 2, 10, 12)
    clock.set(start)
    expect((await call()).status).toBe(200)
    clock.set(start + DAY)
    expect((await call()).status).toBe(200)
    expect((await call()).status).toBe(200)
    // Signed in now: a token issued at the real time would be one from the future here.
    const client = await signedIn()
    const r = await client.call('GET', '/api/usage/daily?month=2026-03')
    expect(r.status).toBe(200)
    expect(r.body.period).toEqual({
      id: '2026-03',
      start: '2026-03-01T00:00:00.000Z',
      end: '2026-04-01T00:00:00.000Z',
    })
    expect(r.body.categories).toEqual(['tts'])
    expect(r.body.days).toHaveLength(31)
    const byDate = Object.fromEntries(r.body.days.map((d: { date: string }) => [d.date, d]))
    expect(byDate['2026-03-10']).toEqual({
      date: '2026-03-10',
      requests: 1,
      credits: 1,
      byCategory: { tts: { requests: 1, credits: 1 } },
    })
    expect(byDate['2026-03-11'].requests).toBe(2)
    expect(byDate['2026-03-12'].requests).toBe(0)
    const current = await client.call('GET', '/api/usage/daily')
    expect(current.body.period.id).toBe('2026-03')
    const usage = await client.call('GET', '/api/usage')
    expect(usage.body.requestCount).toBe(3)
    expect((await client.call('GET', '/api/usage/daily?month=2026-13')).body.issues).toEqual([
      { path: 'month', message: 'must be YYYY-MM' },
    ])
    expect((await client.call('GET', '/api/usage/daily?day=1')).status).toBe(400)
    expect((await browserClient(served.url).call('GET', '/api/usage/daily')).status).toBe(401)
  })

  it("splits the days and the period by the keys' categories, and filters by one", async () => {
    const made = await Promise.all(
      ['production', 'staging', null].map((category) =>
        tb.keys.create({ accountId: 'acct_a', category }),
      ),
    )
    const call = (key: string) =>
      fetch(`${served.url}/v1/synthesize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
      })
    const start = Date.UTC(2026, 2, 10, 12)
    clock.set(start)
    for (const { key } of [made[0]!, made[0]!, made[1]!]) expect((await call(key)).status).toBe(200)
    clock.set(start + DAY)
    for (const { key } of [made[0]!, made[2]!]) expect((await call(key)).status).toBe(200)
    const client = await signedIn()
    const r = await client.call('GET', '/api/usage/daily?month=2026-03&groupBy=keyCategory')
    expect(r.status).toBe(200)
    expect(r.body.groupBy).toBe('keyCategory')
    expect(r.body.categories).toEqual(['production', 'staging', 'uncategorized'])
    const byDate = Object.fromEntries(r.body.days.map((d: { date: string }) => [d.date, d]))
    expect(byDate['2026-03-10'].byCategory).toEqual({
      production: { requests: 2, credits: 2 },
      staging: { requests: 1, credits: 1 },
    })
    expect(byDate['2026-03-11'].byCategory).toEqual({
      production: { requests: 1, credits: 1 },
      uncategorized: { requests: 1, credits: 1 },
    })
    const prod = await client.call(
      'GET',
      '/api/usage/daily?groupBy=keyCategory&keyCategory=production',
    )
    expect(prod.body.categories).toEqual(['production'])
    expect(prod.body.days.reduce((n: number, d: { requests: number }) => n + d.requests, 0)).toBe(3)
    const period = await client.call('GET', '/api/usage?groupBy=keyCategory')
    expect(period.body).toMatchObject({
      groupBy: 'keyCategory',
      requests: { production: 3, staging: 1, uncategorized: 1 },
      requestCount: 5,
    })
    for (const q of ['groupBy=route', 'keyCategory=a%00b']) {
      const bad = await client.call('GET', `/api/usage/daily?${q}`)
      expect(bad.status).toBe(400)
      expect(bad.body.issues[0].path).toBe(q.slice(0, q.indexOf('=')))
    }
  })
})

describe("the integrator's own authenticate()", () => {
  it('signs in from their session cookie, and offers no token sign-in', async () => {
    await served.close()
    served = await servePortal('hono', tb, {
      authenticate: (req) => {
        const m = /(?:^|;\s*)app_session=(\w+)/.exec(req.headers.get('cookie') ?? '')
        return m ? { accountId: `acct_${m[1]}` } : null
      },
      signInUrl: '/login',
      signOutUrl: '/logout',
    })
    const client = browserClient(served.url)
    client.jar.set('app_session', 'carol')
    const s = await client.call('GET', '/api/session')
    expect(s.body).toMatchObject({ signedIn: true, accountId: 'acct_carol' })
    expect(s.body.portal).toMatchObject({
      tokenSignIn: false,
      signInUrl: '/login',
      signOutUrl: '/logout',
    })
    const created = await client.call('POST', '/api/keys', { json: { name: 'Mine' } })
    expect(created.status).toBe(201)
    expect((await tb.keys.get(created.body.id)).accountId).toBe('acct_carol')
    expect((await client.call('POST', '/api/session', { json: { token: 'x' } })).status).toBe(404)
    expect((await client.call('DELETE', '/api/session')).body.signOutUrl).toBe('/logout')
    client.jar.delete('app_session')
    expect((await client.call('GET', '/api/keys')).status).toBe(401)
  })

  it("passes the page's own changes on whatever Origin its no-referrer policy gives them", async () => {
    // The portal's CSRF check vouches for the request; the management API's check of browser
    // sessions does not judge it again (a same-origin DELETE under `Referrer-Policy:
    // no-referrer` carries `Origin: null`, and over plain HTTP no Sec-Fetch-Site).
    await served.close()
    served = await servePortal('hono', tb, { authenticate: () => ({ accountId: 'acct_dan' }) })
    const client = browserClient(served.url)
    await client.call('GET', '/api/session')
    const { record } = await tb.keys.create({ accountId: 'acct_dan', name: 'old' })
    const rotate = await client.call('POST', `/api/keys/${record.id}/rotate`, {
      headers: { origin: 'null' },
    })
    expect(rotate.status).toBe(200)
    const del = await client.call('DELETE', `/api/keys/${record.id}`, {
      headers: { origin: 'null' },
    })
    expect(del.status).toBe(204)
  })
})

describe('session tokens and authenticate() together', () => {
  it('a session cookie that no longer verifies gives way to authenticate(), in the API too', async () => {
    // A token signed with a retired secret (or expired) stays in the browser's cookie: the
    // page was told it is signed in (through authenticate) while every API call answered 401
    // for the stale token, and the page, asking again on each 401, went round without end.
    await served.close()
    served = await servePortal('hono', tb, {
      session: { secret: SESSION_SECRET },
      authenticate: (req) =>
        (req.headers.get('cookie') ?? '').includes('app_session=erin')
          ? { accountId: 'acct_erin' }
          : null,
    })
    const client = browserClient(served.url)
    client.jar.set('app_session', 'erin')
    const retired = 'retired-secret-retired-secret-retired-secret'
    client.jar.set('tollbooth-portal', await sessionToken('acct_erin', clock, retired))
    const s = await client.call('GET', '/api/session')
    expect(s.body).toMatchObject({ signedIn: true, accountId: 'acct_erin' })
    const list = await client.call('GET', '/api/keys')
    expect(list.status).toBe(200)
    const created = await client.call('POST', '/api/keys', { json: { name: 'Mine' } })
    expect(created.status).toBe(201)
    expect((await tb.keys.get(created.body.id)).accountId).toBe('acct_erin')
    // The stale cookie is dropped once the page asks who is signed in.
    expect(client.jar.has('tollbooth-portal')).toBe(false)
    // A valid session token still decides over authenticate().
    client.jar.set('tollbooth-portal', await sessionToken('acct_frank', clock))
    expect((await client.call('GET', '/api/session')).body.accountId).toBe('acct_frank')
    expect((await client.call('GET', '/api/keys')).status).toBe(200)
    const own = await client.call('POST', '/api/keys', { json: { name: 'Frank' } })
    expect((await tb.keys.get(own.body.id)).accountId).toBe('acct_frank')
  })
})

describe('mounted in Express and Fastify', () => {
  for (const framework of ['express', 'fastify'] as const) {
    it(`serves the page and the API under /portal in ${framework}`, async () => {
      const other = await servePortal(framework, tb)
      try {
        const redirect = await fetch(`${other.url}/portal`, { redirect: 'manual' })
        expect(redirect.status).toBe(308)
        expect(redirect.headers.get('location')).toBe('/portal/')
        const page = await fetch(`${other.url}/portal/`)
        expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
        const [, js] = /src="(assets\/[^"]+)"/.exec(await page.text()) ?? []
        expect((await fetch(`${other.url}/portal/${js}`)).status).toBe(200)
        const client = browserClient(other.url)
        expect((await client.signIn(await sessionToken('acct_f', clock))).status).toBe(200)
        expect((await client.call('POST', '/api/keys', { json: { name: framework } })).status).toBe(
          201,
        )
        expect((await client.call('POST', '/api/keys', { json: { name: framework } })).status).toBe(
          409,
        )
        expect(
          (await client.call('POST', '/api/keys', { json: { name: 'x' }, csrf: false })).status,
        ).toBe(403)
        const list = await client.call('GET', '/api/keys')
        expect(list.body.data.map((k: { name: string }) => k.name)).toEqual([framework])
        expect((await client.call('GET', '/api/usage/daily')).body.days.length).toBeGreaterThan(27)
      } finally {
        await other.close()
      }
    })
  }
})
