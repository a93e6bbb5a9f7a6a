/**
 * The portal's guards over real HTTP (127.0.0.1, port 0), without a browser: options checked
 * at construction, the page and its security headers, sign-in into cookies (attributes,
 * `Secure` and `__Host-` outside localhost, expiry, sign-out), the CSRF check and the refusal
 * of API keys on every portal route.
 */

import { request as httpRequest } from 'node:http'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { portal } from '../../adapters/portal/index.js'
import { isTollboothError, type ManualClock, type Tollbooth } from '../../src/index.js'
import {
  browserClient,
  makeTollbooth,
  PREFIXES,
  SESSION_SECRET,
  type Served,
  servePortal,
  sessionToken,
} from './servers.js'

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

/** A request with a chosen Host header (fetch cannot set one), answering status and cookies. */
function withHost(
  path: string,
  host: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; cookies: string[] }> {
  const { port } = new URL(served.url)
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, headers: { ...headers, host } },
      (res) => {
        res.resume()
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, cookies: res.headers['set-cookie'] ?? [] }),
        )
      },
    )
    req.on('error', reject)
    req.end()
  })
}

describe('portal options', () => {
  const configError = (f: () => unknown) => {
    try {
      f()
    } catch (err) {
      expect(isTollboothError(err) && err.code).toBe('config_invalid')
      return (err as Error).message
    }
    throw new Error('expected a ConfigError')
  }

  it('throws a ConfigError naming each bad option', () => {
    expect(configError(() => portal(tb, {}))).toContain(
      'portal: options must give session (session JWTs) or authenticate',
    )
    expect(configError(() => portal(tb, { session: { secret: 'short' } }))).toBe(
      'portal: options.session.secret must be at least 32 bytes, got a string of 5 characters',
    )
    expect(
      configError(() => portal(tb, { session: { secret: SESSION_SECRET, cookie: 'x' } as never })),
    ).toContain('options.session must not set cookie: the portal names its own')
    expect(
      configError(() => portal(tb, { authenticate: () => null, colour: 'red' } as never)),
    ).toContain('options.colour is not an option')
    expect(
      configError(() => portal(tb, { authenticate: () => null, signInUrl: 'javascript:x' })),
    ).toContain('options.signInUrl must be a path or an http(s) URL, got "javascript:x"')
    // A browser reads `/\\host` and `//host` as another site, not a path of this one.
    for (const bad of ['//evil.example/login', '/\\evil.example/login', '/\t/evil.example']) {
      expect(
        configError(() => portal(tb, { authenticate: () => null, signOutUrl: bad })),
      ).toContain('options.signOutUrl must be a path or an http(s) URL')
      expect(new URL(bad, 'https://portal.example/').host).not.toBe('portal.example')
    }
    expect(configError(() => portal({} as Tollbooth, { authenticate: () => null }))).toContain(
      'tb must be a tollbooth instance',
    )
  })
})

describe('the page', () => {
  it('redirects <base> to <base>/ and serves a shell with a strict CSP and no inline code', async () => {
    const redirect = await fetch(`${served.url}/portal?x=1`, { redirect: 'manual' })
    expect(redirect.status).toBe(308)
    expect(redirect.headers.get('location')).toBe('/portal/?x=1')
    const res = await fetch(`${served.url}/portal/`)
    expect(res.status).toBe(200)
    const csp = res.headers.get('content-security-policy') ?? ''
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("style-src 'self'")
    expect(csp).toContain("frame-ancestors 'self'")
    expect(csp).not.toContain('unsafe')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('referrer-policy')).toBe('no-referrer')
    const html = await res.text()
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/)
    expect(html).not.toMatch(/\sstyle=|\son[a-z]+=/)
    const [, js] = /src="(assets\/app-[0-9a-f]{10}\.js)"/.exec(html) ?? []
    const [, css] = /href="(assets\/app-[0-9a-f]{10}\.css)"/.exec(html) ?? []
    for (const [path, type] of [
      [js, 'text/javascript'],
      [css, 'text/css'],
    ]) {
      const a = await fetch(`${served.url}/portal/${path}`)
      expect(a.status).toBe(200)
      expect(a.headers.get('content-type')).toContain(type)
      expect(a.headers.get('cache-control')).toContain('immutable')
    }
    expect((await fetch(`${served.url}/portal/assets/app-0000000000.js`)).status).toBe(404)
    expect((await fetch(`${served.url}/portal/elsewhere`)).status).toBe(404)
  })
})

describe('sign-in and cookies', () => {
  it('keeps the session in an HttpOnly SameSite=Strict cookie that expires with the token', async () => {
    const client = browserClient(served.url)
    const first = await client.call('GET', '/api/session')
    expect(first.body).toMatchObject({ signedIn: false, accountId: null, secureCookies: false })
    expect(first.headers.getSetCookie()).toEqual([
      expect.stringMatching(
        /^tollbooth-portal-csrf=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict$/,
      ),
    ])
    const csrfBefore = client.jar.get('tollbooth-portal-csrf')
    const r = await client.call('POST', '/api/session', {
      json: { token: await sessionToken('acct_a', clock) },
    })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ signedIn: true, accountId: 'acct_a' })
    const cookies = r.headers.getSetCookie()
    expect(cookies[0]).toMatch(
      /^tollbooth-portal=ey[\w.-]+; Max-Age=3600; Path=\/; HttpOnly; SameSite=Strict$/,
    )
    expect(client.jar.get('tollbooth-portal-csrf')).not.toBe(csrfBefore)
    expect((await client.call('GET', '/api/session')).body.accountId).toBe('acct_a')
  })

  it('keeps a long-lived session at most 400 days, as browsers do', async () => {
    await served.close()
    served = await servePortal('hono', tb, {
      session: { secret: SESSION_SECRET, maxAgeMs: 400 * 86_400_000 },
    })
    const client = browserClient(served.url)
    const twoYears = 2 * 365 * 24 * 3600
    const r = await client.signIn(await sessionToken('acct_a', clock, undefined, twoYears))
    expect(r.status).toBe(200)
    expect(r.headers.getSetCookie()[0]).toMatch(
      /^tollbooth-portal=ey[\w.-]+; Max-Age=34560000; Path=\/; HttpOnly; SameSite=Strict$/,
    )
    expect((await client.call('GET', '/api/session')).body.accountId).toBe('acct_a')
  })

  it('refuses a bad token and sets no session cookie', async () => {
    const client = browserClient(served.url)
    for (const token of [await sessionToken('acct_a', clock, 'x'.repeat(40)), 'not-a-jwt']) {
      const r = await client.signIn(token)
      expect(r.status).toBe(401)
      expect(r.body.code).toBe('unauthorized')
    }
    expect(client.jar.has('tollbooth-portal')).toBe(false)
    expect((await client.call('POST', '/api/session', { json: { jwt: 'x' } })).status).toBe(400)
  })

  it('refuses a token with a NUL or a lone surrogate as every text field: 400 naming token', async () => {
    // Before, 401 `unauthorized` as a token that did not verify.
    const client = browserClient(served.url)
    const good = await sessionToken('acct_a', clock)
    for (const [token, message] of [
      [`${good}\u0000`, 'must not contain a NUL character'],
      [`${good.slice(0, 20)}\ud800`, 'must be valid Unicode (it contains a lone UTF-16 surrogate)'],
    ] as const) {
      const r = await client.signIn(token)
      expect([r.status, r.body.code, r.body.issues]).toEqual([
        400,
        'invalid_request',
        [{ path: 'token', message }],
      ])
    }
    expect(client.jar.has('tollbooth-portal')).toBe(false)
  })

  it('takes a session cookie the portal never writes (a NUL, a line break) as none: 401, never a 500', async () => {
    // Before, `/api/keys` handed `%00` on to the management API as `Bearer \0`, which
    // `Headers` refused: 500 `internal_error`.
    for (const value of ['%00', 'ey.a%0Ab.c', '%0D%0D%0D', 'a%7Fb']) {
      for (const path of ['/api/keys', '/api/usage', '/api/usage/daily', '/api/provider-keys']) {
        const r = await fetch(`${served.url}/portal${path}`, {
          headers: { cookie: `tollbooth-portal=${value}` },
        })
        expect([r.status, (await r.json()).code], `${value} ${path}`).toEqual([401, 'unauthorized'])
      }
      const session = await fetch(`${served.url}/portal/api/session`, {
        headers: { cookie: `tollbooth-portal=${value}` },
      })
      expect([session.status, (await session.json()).signedIn]).toEqual([200, false])
    }
  })

  it('drops a session that expired: signed out, and the API answers 401', async () => {
    const client = await signedIn()
    clock.advance(3_606_000) // past the hour and the 5 s clock tolerance
    const s = await client.call('GET', '/api/session')
    expect(s.body.signedIn).toBe(false)
    expect(s.headers.getSetCookie()).toContain(
      'tollbooth-portal=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict',
    )
    expect((await client.call('GET', '/api/keys')).status).toBe(401)
  })

  it('uses Secure __Host- cookies outside localhost', async () => {
    const remote = await withHost('/portal/api/session', 'portal.example.com')
    expect(remote.status).toBe(200)
    expect(remote.cookies[0]).toMatch(
      /^__Host-tollbooth-portal-csrf=[\w-]{43}; Path=\/; HttpOnly; Secure; SameSite=Strict$/,
    )
    const local = await withHost('/portal/api/session', 'localhost:8080')
    expect(local.cookies[0]).toMatch(
      /^tollbooth-portal-csrf=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/,
    )
  })

  it('uses Secure __Host- cookies behind a proxy that says the browser came over HTTPS', async () => {
    // nginx's default `proxy_pass http://127.0.0.1:3000` sends `Host: 127.0.0.1:3000`: the
    // portal saw a local host and set plain cookies on a site the browser reached over HTTPS.
    const secure =
      /^__Host-tollbooth-portal-csrf=[\w-]{43}; Path=\/; HttpOnly; Secure; SameSite=Strict$/
    const proxies: Array<Record<string, string>> = [
      { 'x-forwarded-proto': 'https' },
      { 'x-forwarded-proto': 'HTTPS, http' },
      { forwarded: 'for=203.0.113.7;proto=https;host=portal.example.com' },
    ]
    for (const h of proxies) {
      const r = await withHost('/portal/api/session', '127.0.0.1:3000', h)
      expect([h, r.cookies[0]]).toEqual([h, expect.stringMatching(secure)])
    }
    const plain = await withHost('/portal/api/session', '127.0.0.1:3000', {
      'x-forwarded-proto': 'http',
    })
    expect(plain.cookies[0]).toMatch(
      /^tollbooth-portal-csrf=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/,
    )
  })

  it('signs out: the session cookie is cleared and the CSRF token renewed', async () => {
    const client = await signedIn()
    const r = await client.call('DELETE', '/api/session')
    expect(r.status).toBe(200)
    expect(client.jar.has('tollbooth-portal')).toBe(false)
    expect((await client.call('GET', '/api/keys')).status).toBe(401)
  })
})

describe('CSRF and API keys', () => {
  it('refuses a change without the token, with a wrong one, or from another site, and changes nothing', async () => {
    const client = await signedIn()
    const body = { json: { name: 'Sneaky' } }
    const token = client.jar.get('tollbooth-portal-csrf')!
    const refused = [
      await client.call('POST', '/api/keys', { ...body, csrf: false }),
      await client.call('POST', '/api/keys', {
        ...body,
        csrf: false,
        headers: { 'x-csrf-token': 'A'.repeat(43) },
      }),
      await client.call('POST', '/api/keys', {
        ...body,
        headers: { 'sec-fetch-site': 'cross-site' },
      }),
      await client.call('DELETE', '/api/session', { csrf: false }),
    ]
    for (const r of refused) {
      expect(r.status).toBe(403)
      expect(r.body.code).toBe('forbidden')
    }
    expect(token).toMatch(/^[\w-]{43}$/)
    expect((await tb.keys.list('acct_a')).data).toEqual([])
    expect((await client.call('GET', '/api/session')).body.signedIn).toBe(true)
    const ok = await client.call('POST', '/api/keys', {
      ...body,
      headers: { 'sec-fetch-site': 'same-origin' },
    })
    expect(ok.status).toBe(201)
    expect(ok.body.key).toMatch(/^plabs_sk_live_/)
  })

  it('refuses consumption and management keys on every portal route, but not Basic auth', async () => {
    const { key } = await tb.keys.create({ accountId: 'acct_a' })
    const { key: mk } = await tb.keys.create({ accountId: 'acct_a', kind: 'management' })
    expect(key.startsWith(PREFIXES.consumption) && mk.startsWith(PREFIXES.management)).toBe(true)
    const presented: Array<Record<string, string>> = [
      { authorization: `Bearer ${key}` },
      { authorization: `bearer ${mk}` },
      { 'x-api-key': key },
    ]
    for (const headers of presented) {
      for (const [method, path] of [
        ['GET', '/portal/api/keys'],
        ['POST', '/portal/api/keys'],
        ['GET', '/portal/api/session'],
        ['GET', '/portal/'],
      ] as const) {
        const r = await fetch(`${served.url}${path}`, { method, headers })
        expect(r.status, `${method} ${path}`).toBe(403)
        expect(await r.json()).toEqual({
          error: 'Portal routes are not accessible with API keys; sign in to the portal instead',
          code: 'forbidden',
        })
      }
    }
    const basic = await fetch(`${served.url}/portal/api/session`, {
      headers: { authorization: 'Basic c3RhZ2luZzpwYXNz' },
    })
    expect(basic.status).toBe(200)
    expect((await tb.keys.list('acct_a')).data).toHaveLength(1)
  })
})
