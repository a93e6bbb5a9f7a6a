/**
 * Cross-site request forgery on the management API where the browser sends the credential by
 * itself: a session JWT in a cookie (`auth.session.cookie`), or the user's own `authenticate`
 * (which reads their own cookie). Another site's form or no-cors fetch can POST a body a
 * browser calls "simple" (`text/plain`, a form, or none) with that cookie: such a change is
 * refused with 403 `forbidden` (Hono's `csrf` check: same origin by `Sec-Fetch-Site` or
 * `Origin`) and changes nothing. JSON bodies need a CORS preflight another site cannot pass;
 * Bearer credentials and clients that are not browsers (no `Origin`, no `Sec-Fetch-Site`)
 * are not affected.
 */

import express from 'express'
import { SignJWT } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { mountFetch } from '../../adapters/express/mount.js'
import { type ManagementOptions, managementApi } from '../../adapters/management/index.js'
import type { Tollbooth } from '../../src/index.js'
import { serveExpress } from '../support/servers.js'
import {
  call,
  client,
  FRAMEWORKS,
  makeTollbooth,
  type Served,
  serveManagement,
  T0,
} from './servers.js'

const SESSION_SECRET = 'csrf-suite-secret-csrf-suite-secret-csrf-suite'
const sec = (ms: number) => Math.floor(ms / 1000)
const token = () =>
  new SignJWT({ sub: 'acct_a' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(sec(T0))
    .setExpirationTime(sec(T0 + 3_600_000))
    .sign(new TextEncoder().encode(SESSION_SECRET))

const EVIL = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }

describe.each(FRAMEWORKS)('cookie credentials on %s', (framework) => {
  let tb: Tollbooth
  let served: Served | undefined
  let api: ReturnType<typeof client>
  afterEach(async () => {
    await served?.close()
    served = undefined
  })
  const start = async (options: ManagementOptions) => {
    ;({ tb } = makeTollbooth())
    served = await serveManagement(framework, tb, options)
    api = client(served)
  }

  for (const [label, options, cookie] of [
    ['a session cookie', { auth: { session: { secret: SESSION_SECRET, cookie: 'sid' } } }, 'sid'],
    [
      'authenticate() reading its own cookie',
      {
        auth: {
          authenticate: (req: Request) =>
            (req.headers.get('cookie') ?? '').includes('app=acct_a')
              ? { accountId: 'acct_a' }
              : null,
        },
      },
      'app',
    ],
  ] as const) {
    it(`refuses a cross-site simple POST with ${label}, and changes nothing`, async () => {
      await start(options as ManagementOptions)
      const value = cookie === 'sid' ? await token() : 'acct_a'
      const headers = { cookie: `${cookie}=${value}` }
      const { record } = await tb.keys.create({ accountId: 'acct_a', name: 'victim' })
      const attempts = [
        // A form with enctype=text/plain writes `name=value`: the field's name `{"name":"evil`
        // and value `"}` make a JSON body.
        ['/keys', { 'content-type': 'text/plain', ...EVIL }, '{"name":"evil="}'],
        [
          '/provider-keys',
          { 'content-type': 'text/plain;charset=UTF-8', ...EVIL },
          '{"provider":"elevenlabs","apiKey":"sk_attacker=key_0001"}',
        ],
        // no-cors fetch with no body: no Content-Type at all.
        [`/keys/${record.id}/rotate`, { ...EVIL }, undefined],
        // An old browser without Sec-Fetch-Site still sends Origin on a cross-site POST.
        [
          '/keys',
          { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
          'a=b',
        ],
      ] as const
      for (const [path, h, raw] of attempts) {
        const r = await api('POST', path, {
          headers: { ...headers, ...h },
          ...(raw === undefined ? {} : { raw }),
        })
        expect([path, r.status, r.body?.code]).toEqual([path, 403, 'forbidden'])
      }
      expect((await tb.keys.list('acct_a')).data.map((k) => k.name)).toEqual(['victim'])
      expect(await tb.providerKeys.list('acct_a')).toEqual([])

      // The same origin (a browser), JSON from anywhere (a preflight guards it), and a client
      // that is not a browser keep working.
      const same = await api('POST', '/keys', {
        headers: { ...headers, 'sec-fetch-site': 'same-origin', origin: served!.url },
        raw: '{"name":"mine"}',
      })
      expect(same.status).toBe(201)
      const json = await api('POST', '/keys', { headers, json: { name: 'json' } })
      expect(json.status).toBe(201)
      const rotated = await api('POST', `/keys/${record.id}/rotate`, { headers })
      expect(rotated.status).toBe(200)
      const read = await api('GET', '/keys', { headers: { ...headers, ...EVIL } })
      expect(read.status).toBe(200)
      // A cross-origin DELETE or PATCH needs a CORS preflight: what gets here, the application's
      // CORS let in (a dashboard on another origin of the same site, say).
      const cors = {
        ...headers,
        origin: 'https://dashboard.example',
        'sec-fetch-site': 'same-site',
      }
      const patched = await api('PATCH', `/keys/${same.body.id}`, {
        headers: { ...cors, 'content-type': 'text/plain' },
        raw: '{"name":"renamed"}',
      })
      expect(patched.status).toBe(200)
      expect((await api('DELETE', `/keys/${same.body.id}`, { headers: cors })).status).toBe(204)
    })
  }

  it('leaves Bearer credentials alone: the browser never sends them by itself', async () => {
    await start({ auth: { session: { secret: SESSION_SECRET, cookie: 'sid' } } })
    const r = await api('POST', '/keys', {
      token: await token(),
      headers: { 'content-type': 'text/plain', ...EVIL },
      raw: '{"name":"bearer"}',
    })
    expect(r.status).toBe(201)
    await served!.close()
    // A header credential of the user's own (an opaque token) from a page another origin
    // that CORS lets in: the preflight vouched for it.
    await start({
      auth: {
        authenticate: (req: Request) =>
          req.headers.get('authorization') === 'Bearer opaque-token'
            ? { accountId: 'acct_a' }
            : null,
      },
    })
    const opaque = await api('POST', '/keys', {
      token: 'opaque-token',
      headers: { 'content-type': 'text/plain', ...EVIL },
      raw: '{"name":"cors"}',
    })
    expect(opaque.status).toBe(201)
  })
})

describe('behind a body parser that turns a form into JSON (Express)', () => {
  it('judges the type the browser sent, not the JSON the parser made of it', async () => {
    const { tb } = makeTollbooth()
    const app = express()
    app.use(express.urlencoded({ extended: true }), express.json())
    const auth = { session: { secret: SESSION_SECRET, cookie: 'sid' } }
    app.use('/v1', mountFetch(managementApi(tb, { auth }).fetch))
    const served = await serveExpress(app)
    try {
      const cookie = `sid=${await token()}`
      const form = { cookie, 'content-type': 'application/x-www-form-urlencoded' }
      const forged = await call(served.url, 'POST', '/v1/keys', {
        headers: { ...form, ...EVIL },
        raw: 'name=evil',
      })
      expect([forged.status, forged.body?.code]).toEqual([403, 'forbidden'])
      expect((await tb.keys.list('acct_a')).data).toEqual([])
      const own = await call(served.url, 'POST', '/v1/keys', {
        headers: { ...form, 'sec-fetch-site': 'same-origin' },
        raw: 'name=mine',
      })
      expect(own.status).toBe(201)
      const json = await call(served.url, 'POST', '/v1/keys', {
        headers: { cookie, ...EVIL },
        json: { name: 'json' },
      })
      expect(json.status).toBe(201)
    } finally {
      await served.close()
      await tb.close()
    }
  })
})
