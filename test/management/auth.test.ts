/**
 * Who may call the management API: session JWTs (shared secret, JWKS from a local server,
 * cookie), the user's own authenticate(), consumption keys where allowed (with a scope),
 * management keys refused where they are not, the 403 messages that say what is accepted,
 * configuration errors, and a billing provider.
 */

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type ManagementOptions, managementApi } from '../../adapters/management/index.js'
import { isTollboothError, type ManualClock, type Tollbooth } from '../../src/index.js'
import { client, makeTollbooth, type Served, serveManagement, T0 } from './servers.js'

const SESSION_SECRET = 'session-secret-session-secret-session-secret'
const enc = new TextEncoder()
const sec = (ms: number) => Math.floor(ms / 1000)

function hs256(claims: Record<string, unknown>, secret = SESSION_SECRET, expMs = T0 + 3_600_000) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(sec(T0))
    .setExpirationTime(sec(expMs))
    .sign(enc.encode(secret))
}

let tb: Tollbooth
let clock: ManualClock
let served: Served | undefined
let api: ReturnType<typeof client>

async function start(options: ManagementOptions) {
  ;({ tb, clock } = makeTollbooth())
  served = await serveManagement('hono', tb, options)
  api = client(served)
}
afterEach(async () => {
  await served?.close()
  served = undefined
})

describe('session JWTs with a shared secret', () => {
  const session = { secret: SESSION_SECRET, issuer: 'https://auth.example', audience: 'mgmt' }
  const good = { sub: 'acct_a', iss: 'https://auth.example', aud: 'mgmt' }

  it('accepts a valid token and acts on its subject account only', async () => {
    await start({ auth: { session } })
    const token = await hs256(good)
    const r = await api('POST', '/keys', { token, json: { name: 'CI Pipeline' } })
    expect(r.status).toBe(201)
    expect((await tb.keys.get(r.body.id)).accountId).toBe('acct_a')
    const list = await api('GET', '/keys', { token })
    expect(list.body.data.map((k: { id: string }) => k.id)).toEqual([r.body.id])
    const other = await hs256({ ...good, sub: 'acct_b' })
    expect((await api('GET', `/keys/${r.body.id}`, { token: other })).status).toBe(404)
  })

  it('refuses an expired token, by the tollbooth clock', async () => {
    await start({ auth: { session } })
    const token = await hs256(good, SESSION_SECRET, T0 + 60_000)
    expect((await api('GET', '/keys', { token })).status).toBe(200)
    // Five seconds' clock tolerance by default (`clockToleranceMs`).
    clock.advance(64_000)
    expect((await api('GET', '/keys', { token })).status).toBe(200)
    clock.advance(1000)
    const r = await api('GET', '/keys', { token })
    expect(r.status).toBe(401)
    expect(r.body).toEqual({ error: 'Session token expired', code: 'unauthorized' })
    expect(r.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"')
  })

  it('refuses a wrong audience, a wrong issuer, a bad signature, alg none and no subject', async () => {
    await start({ auth: { session } })
    const cases: Array<[string, string]> = [
      [await hs256({ ...good, aud: 'other' }), 'Invalid session token: "aud" claim check failed'],
      [
        await hs256({ ...good, iss: 'https://evil.example' }),
        'Invalid session token: "iss" claim check failed',
      ],
      [await hs256(good, 'another-secret-another-secret-another-secret'), 'Invalid session token'],
      [
        new UnsecuredJWT(good).setExpirationTime(sec(T0 + 60_000)).encode(),
        'Invalid session token',
      ],
      [await hs256({ iss: good.iss, aud: good.aud }), 'Invalid session token: no "sub" claim'],
      [
        await hs256({ ...good, sub: 'acct {a}' }),
        'Invalid session token: the account id is not valid',
      ],
    ]
    for (const [token, error] of cases) {
      const r = await api('GET', '/keys', { token })
      expect([r.status, r.body]).toEqual([401, { error, code: 'unauthorized' }])
    }
  })

  it('reads the token from a cookie when configured', async () => {
    await start({ auth: { session: { ...session, cookie: 'sid' } } })
    const token = await hs256(good)
    const r = await api('GET', '/usage', { headers: { cookie: `theme=dark; sid=${token}` } })
    expect(r.status).toBe(200)
    expect((await api('GET', '/usage', { headers: { cookie: 'sid=nope.nope.nope' } })).status).toBe(
      401,
    )
    // As RFC 6265 lets a cookie value be written: in double quotes (read by hono/cookie).
    const quoted = await api('GET', '/usage', { headers: { cookie: `sid="${token}"; x=1` } })
    expect(quoted.status).toBe(200)
  })

  it('takes management keys too by default, and refuses them when sessions only (003)', async () => {
    await start({ auth: { session } })
    const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    expect((await api('GET', '/keys', { token: mk })).status).toBe(200)
    await served!.close()
    await start({ auth: { session, managementKeys: false } })
    const mk2 = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    const r = await api('GET', '/keys', { token: mk2 })
    expect(r.status).toBe(403)
    expect(r.body).toEqual({
      error: 'Management keys cannot be used on these routes; these routes accept a session token',
      code: 'wrong_key_kind',
    })
    const key = (await tb.keys.create({ accountId: 'acct_a' })).key
    expect((await api('GET', '/keys', { token: key })).body.error).toBe(
      'API keys cannot be used on these routes; these routes accept a session token',
    )
  })
})

describe('session JWTs against a JWKS served over HTTP', () => {
  let jwksServer: Server
  let jwksUrl: string
  let fetches = 0
  let signing: CryptoKey
  let stranger: CryptoKey

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256')
    signing = pair.privateKey as CryptoKey
    stranger = (await generateKeyPair('ES256')).privateKey as CryptoKey
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
    jwksServer = createServer((_req, res) => {
      fetches++
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', () => r()))
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`
  })
  afterAll(() => new Promise<void>((r) => jwksServer.close(() => r())))

  const es256 = (key: CryptoKey, kid: string, audience = 'mgmt') =>
    new SignJWT({ sub: 'acct_j' })
      .setProtectedHeader({ alg: 'ES256', kid })
      .setIssuedAt(sec(T0))
      .setExpirationTime(sec(T0 + 3_600_000))
      .setAudience(audience)
      .sign(key)

  it('verifies with the fetched key set, and refuses a key not in it', async () => {
    await start({ auth: { session: { jwksUrl, audience: 'mgmt' } } })
    const before = fetches
    const token = await es256(signing, 'k1')
    const r = await api('POST', '/keys', { token, json: {} })
    expect(r.status).toBe(201)
    expect((await tb.keys.get(r.body.id)).accountId).toBe('acct_j')
    expect(fetches).toBeGreaterThan(before)
    expect((await api('GET', '/keys', { token: await es256(stranger, 'k1') })).status).toBe(401)
    expect((await api('GET', '/keys', { token: await es256(signing, 'k1', 'x') })).status).toBe(401)
    const unknownKid = await api('GET', '/keys', { token: await es256(signing, 'k9') })
    expect(unknownKid.body).toEqual({ error: 'Invalid session token', code: 'unauthorized' })
  })

  it('answers 503 when the key set cannot be fetched', async () => {
    const dead = createServer()
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()))
    const port = (dead.address() as AddressInfo).port
    await new Promise<void>((r) => dead.close(() => r()))
    await start({ auth: { session: { jwksUrl: `http://127.0.0.1:${port}/jwks` } } })
    const r = await api('GET', '/keys', { token: await es256(signing, 'k1') })
    expect(r.status).toBe(503)
    expect(r.body.code).toBe('session_keys_unavailable')
  })
})

describe('other credentials', () => {
  it("uses the user's own authenticate() for anything else", async () => {
    await start({
      auth: {
        managementKeys: false,
        authenticate: (req) =>
          req.headers.get('x-user') === 'alice' ? { accountId: 'acct_alice' } : null,
      },
    })
    const r = await api('POST', '/keys', { headers: { 'x-user': 'alice' }, json: { name: 'n' } })
    expect(r.status).toBe(201)
    expect((await tb.keys.get(r.body.id)).accountId).toBe('acct_alice')
    const no = await api('GET', '/keys', { headers: { 'x-user': 'mallory' } })
    expect(no.status).toBe(401)
    expect(no.body).toEqual({
      error: 'Missing credentials; these routes accept your account session',
      code: 'unauthorized',
    })
  })

  it('answers 500 without detail when authenticate() throws', async () => {
    const seen: unknown[] = []
    ;({ tb, clock } = makeTollbooth({ onError: (e: unknown) => seen.push(e) }))
    served = await serveManagement('hono', tb, {
      auth: {
        authenticate: () => {
          throw new Error('db down: password=hunter2')
        },
      },
    })
    const r = await client(served)('GET', '/keys')
    expect(r.status).toBe(500)
    expect(r.body).toEqual({ error: 'Internal server error', code: 'internal_error' })
    expect(r.text).not.toContain('hunter2')
    expect(seen).toHaveLength(1)
  })

  it('takes consumption keys where allowed, only with the required scope (001)', async () => {
    await start({ auth: { consumptionKeys: { scopes: ['keys:write'] } } })
    const plain = (await tb.keys.create({ accountId: 'acct_a' })).key
    const scoped = (await tb.keys.create({ accountId: 'acct_a', scopes: ['keys:write'] })).key
    const r = await api('GET', '/keys', { token: plain })
    expect([r.status, r.body]).toEqual([
      403,
      { error: 'Missing scope: keys:write', code: 'insufficient_scope' },
    ])
    const ok = await api('GET', '/keys', { token: scoped })
    expect(ok.status).toBe(200)
    expect(ok.body.data).toHaveLength(2)
    // A consumption key cannot mint management keys.
    const m = await api('POST', '/management-keys', { token: scoped, json: {} })
    expect(m.status).toBe(403)
    expect(m.body.code).toBe('forbidden')
    expect((await tb.keys.list('acct_a', { kind: 'management' })).data).toEqual([])
  })

  it('requires a scope of management keys when configured', async () => {
    await start({ auth: { managementKeys: { scopes: ['admin'] } } })
    const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    const admin = (
      await tb.keys.create({ accountId: 'acct_a', kind: 'management', scopes: ['admin'] })
    ).key
    expect((await api('GET', '/keys', { token: mk })).status).toBe(403)
    expect((await api('GET', '/keys', { token: admin })).status).toBe(200)
  })
})

describe('billing provider', () => {
  it('creates checkout and portal sessions for the caller account, and passes webhooks on', async () => {
    const calls: unknown[] = []
    await start({
      billing: {
        name: 'fake',
        // The instance's only plan is its default tier: sold only because the provider says so.
        tiers: ['pro'],
        async checkout(input) {
          calls.push(input)
          return { url: 'https://checkout.example/c/1', sessionId: 'cs_1' }
        },
        async portal(input) {
          calls.push(input)
          return { url: 'https://billing.example/p/1' }
        },
        async webhook(input) {
          const text = new TextDecoder().decode(input.body as Uint8Array)
          const sig = (input.headers as Headers).get('x-signature')
          calls.push({ webhook: text, sig })
          return sig === 'good'
            ? { status: 200, body: { received: true }, applied: [] }
            : { status: 400, body: { error: 'bad signature' }, applied: [] }
        },
      },
    })
    const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    await tb.accounts.patch('acct_a', { billingCustomerId: 'cus_1' })
    const body = {
      tier: 'pro',
      successUrl: 'https://app.example/ok',
      cancelUrl: 'https://app.example/no',
    }
    const r = await api('POST', '/billing/checkout', { token: mk, json: body })
    expect([r.status, r.body]).toEqual([
      200,
      { url: 'https://checkout.example/c/1', sessionId: 'cs_1' },
    ])
    const bad = await api('POST', '/billing/checkout', {
      token: mk,
      json: { ...body, tier: 'gold' },
    })
    expect(bad.status).toBe(400)
    expect(bad.body.issues).toEqual([{ path: 'tier', message: 'must be one of pro' }])
    const p = await api('POST', '/billing/portal', { token: mk })
    expect([p.status, p.body]).toEqual([200, { url: 'https://billing.example/p/1' }])
    const topUp = await api('POST', '/billing/checkout', {
      token: mk,
      json: { credits: 5000, successUrl: body.successUrl, cancelUrl: body.cancelUrl },
    })
    expect(topUp.status).toBe(200)
    const both = await api('POST', '/billing/checkout', {
      token: mk,
      json: { ...body, credits: 5 },
    })
    expect(both.status).toBe(400)
    const hook = await fetch(`${served!.url}/v1/billing/webhook`, {
      method: 'POST',
      headers: { 'x-signature': 'good', 'content-type': 'application/json' },
      body: '{"id":"evt_1"}',
    })
    expect([hook.status, await hook.json()]).toEqual([200, { received: true }])
    const forged = await fetch(`${served!.url}/v1/billing/webhook`, {
      method: 'POST',
      headers: { 'x-signature': 'forged' },
      body: '{"id":"evt_2"}',
    })
    expect(forged.status).toBe(400)
    expect(calls).toEqual([
      { accountId: 'acct_a', ...body },
      { accountId: 'acct_a' },
      {
        accountId: 'acct_a',
        credits: 5000,
        successUrl: body.successUrl,
        cancelUrl: body.cancelUrl,
      },
      { webhook: '{"id":"evt_1"}', sig: 'good' },
      { webhook: '{"id":"evt_2"}', sig: 'forged' },
    ])
  })
})

describe('configuration', () => {
  const { tb: t } = makeTollbooth()
  const bad: Array<[unknown, RegExp]> = [
    [
      { auth: { session: { secret: 'short' } } },
      /^managementApi: options\.auth\.session\.secret must be at least 32 bytes/,
    ],
    [
      { auth: { session: {} } },
      /options\.auth\.session\.secret is required \(at least 32 bytes, e\.g\. `openssl rand -base64 32`\), unless jwksUrl or jwks is given/,
    ],
    [
      // `secret: process.env.SESSION_SECRET!` with the variable unset: named, not "an object".
      { auth: { session: { secret: undefined } } },
      /options\.auth\.session\.secret is required .*, got undefined/,
    ],
    [
      { auth: { session: { secret: SESSION_SECRET, jwksUrl: 'https://x.example/jwks' } } },
      /exactly one/,
    ],
    [{ auth: { managementKeys: false } }, /options\.auth accepts no credential/],
    [{ auth: { consumptionKeys: 'yes' } }, /options\.auth\.consumptionKeys/],
    [
      { billing: { checkout() {} } },
      /options\.billing must be a BillingProvider with checkout, portal and webhook/,
    ],
    [{ trustProxy: -1 }, /options\.trustProxy/],
    [{ bogus: 1 }, /options\.bogus is not an option/],
  ]
  it.each(bad)('throws a ConfigError naming the option: %j', (options, message) => {
    let thrown: unknown
    try {
      managementApi(t, options as ManagementOptions)
    } catch (err) {
      thrown = err
    }
    expect(isTollboothError(thrown) && thrown.code).toBe('config_invalid')
    expect((thrown as Error).message).toMatch(message)
  })
})
