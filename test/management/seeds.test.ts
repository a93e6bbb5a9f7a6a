/**
 * The curl flows of the seeds, replayed end to end over HTTP in each framework:
 * 000 (keys and billing with a management key), 001 (the ordinary API key manages keys and
 * stored provider keys; BYOK bypasses metering) and 003 (session-only account API with
 * monthly usage). Each step checks the status, the fields the seed shows, and the effect on
 * the product route (`POST /v1/synthesize`, consumption keys, 1 credit, category tts).
 */

import { SignJWT } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { client, FRAMEWORKS, makeTollbooth, type Served, serveManagement, T0 } from './servers.js'

const DAY = 86_400_000
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

describe.each(FRAMEWORKS)('seed flows on %s', (framework) => {
  let served: Served | undefined
  afterEach(async () => {
    await served?.close()
    served = undefined
  })

  async function start(options: Parameters<typeof serveManagement>[2], extra = {}) {
    const t = makeTollbooth(extra)
    served = await serveManagement(framework, t.tb, options)
    return { ...t, api: client(served) }
  }

  it('000: create, list with a cursor, rotate, revoke, usage, subscription, billing', async () => {
    const { tb, clock, api } = await start({})
    const mk = (await tb.keys.create({ accountId: 'acct_persona', kind: 'management' })).key
    const synth = (key: string) =>
      api('POST', '/synthesize', { token: key, json: { text: 'Hello' } })

    // POST /v1/keys {"name": "Production Key", "expiresInDays": 90} -> 201
    const created = await api('POST', '/keys', {
      token: mk,
      json: { name: 'Production Key', expiresInDays: 90 },
    })
    expect(created.status).toBe(201)
    expect(Object.keys(created.body)).toEqual(
      expect.arrayContaining(['id', 'key', 'name', 'expiresAt', 'message']),
    )
    expect(created.body.expiresAt).toBe(new Date(T0 + 90 * DAY).toISOString())
    expect(created.body.message).toBe('Save this key - it will not be shown again.')
    const first = created.body as { id: string; key: string }
    clock.advance(1000)
    const second = (await api('POST', '/keys', { token: mk, json: {} })).body as {
      id: string
      name: string
    }
    expect(second.name).toBe('Default')

    // GET /v1/keys?limit=1 then ?limit=1&cursor=<nextCursor>
    const page1 = await api('GET', '/keys?limit=1', { token: mk })
    expect(page1.body).toMatchObject({ data: [{ id: second.id }], hasMore: true })
    const page2 = await api('GET', `/keys?limit=1&cursor=${page1.body.nextCursor}`, { token: mk })
    expect(page2.body).toEqual({
      data: [
        expect.objectContaining({
          id: first.id,
          name: 'Production Key',
          prefix: `${first.key.slice(0, 18)}...`,
          createdAt: new Date(T0).toISOString(),
          expiresAt: new Date(T0 + 90 * DAY).toISOString(),
          lastUsedAt: null,
        }),
      ],
      nextCursor: null,
      hasMore: false,
    })
    expect(page1.text + page2.text).not.toContain(first.key)

    // Use the key, then POST /v1/keys/:id/rotate -> 200; the old key is refused at once.
    expect((await synth(first.key)).status).toBe(200)
    const rotated = await api('POST', `/keys/${first.id}/rotate`, { token: mk })
    expect(rotated.status).toBe(200)
    expect(rotated.body).toMatchObject({
      name: 'Production Key',
      message: 'Save this key - it will not be shown again.',
    })
    expect((await synth(first.key)).status).toBe(401)
    expect((await synth(rotated.body.key)).status).toBe(200)

    // DELETE /v1/keys/:id -> 204, the key is immediately invalidated.
    expect((await api('DELETE', `/keys/${rotated.body.id}`, { token: mk })).status).toBe(204)
    expect((await synth(rotated.body.key)).body).toEqual({
      error: 'Invalid API Key',
      code: 'invalid_api_key',
    })

    // GET /v1/usage
    const usage = await api('GET', '/usage', { token: mk })
    expect(usage.body).toMatchObject({
      credits: { used: 2, limit: 200_000, remaining: 199_998 },
      breakdown: { tts: 2 },
      resetDate: '2026-04-01T00:00:00.000Z',
    })
    expect(usage.body.requests.tts).toBe(2)

    // GET /v1/billing/subscription; checkout and portal need a billing provider.
    const sub = await api('GET', '/billing/subscription', { token: mk })
    expect(sub.body).toMatchObject({
      tier: 'pro',
      tierDisplay: 'Pro ($99/mo)',
      credits: { used: 2, limit: 200_000, remaining: 199_998 },
      plan: { monthlyCredits: 200_000, overageRate: 0.0008, carryoverMonths: 1 },
      stripeCustomerId: null,
    })
    const checkout = await api('POST', '/billing/checkout', {
      token: mk,
      json: {
        tier: 'pro',
        successUrl: 'https://yourapp.com/billing/success',
        cancelUrl: 'https://yourapp.com/billing/cancel',
      },
    })
    expect([checkout.status, checkout.body.code]).toEqual([501, 'not_implemented'])
    expect((await api('POST', '/billing/portal', { token: mk })).status).toBe(501)
  })

  it('001: the ordinary API key manages keys and stored provider keys; BYOK is not metered', async () => {
    const { tb, clock, api } = await start({ auth: { consumptionKeys: true } })
    const apiKey = (await tb.keys.create({ accountId: 'acct_dev', name: 'Bootstrap' })).key
    clock.advance(1000)

    // curl -X POST /v1/keys -H "Authorization: Bearer $KEY" -d '{"name":"Production Key","expiresInDays":90}'
    const created = await api('POST', '/keys', {
      token: apiKey,
      json: { name: 'Production Key', expiresInDays: 90 },
    })
    expect(created.status).toBe(201)
    expect(created.body.key).toMatch(/^plabs_/)
    // curl /v1/keys
    const list = await api('GET', '/keys', { token: apiKey })
    expect(list.body.data.map((k: { name: string }) => k.name)).toEqual([
      'Production Key',
      'Bootstrap',
    ])
    // curl -X POST /v1/keys/key_id/rotate: returns a new key and revokes the old one.
    const rotated = await api('POST', `/keys/${created.body.id}/rotate`, { token: apiKey })
    expect(rotated.status).toBe(200)
    const old = await api('POST', '/synthesize', { token: created.body.key, json: {} })
    expect(old.status).toBe(401)
    // ... and the old key can no longer manage keys either.
    expect((await api('GET', '/keys', { token: created.body.key })).status).toBe(401)
    // curl -X DELETE /v1/keys/key_id
    expect((await api('DELETE', `/keys/${rotated.body.id}`, { token: apiKey })).status).toBe(204)
    expect((await api('POST', '/synthesize', { token: rotated.body.key, json: {} })).status).toBe(
      401,
    )

    // Stored provider keys: store, list, verify, delete.
    const stored = await api('POST', '/provider-keys', {
      token: apiKey,
      json: { provider: 'elevenlabs', apiKey: 'sk_elevenlabs_stored_9876' },
    })
    expect(stored.status).toBe(201)
    const listed = await api('GET', '/provider-keys', { token: apiKey })
    expect(listed.body.data).toEqual([
      {
        provider: 'elevenlabs',
        masked: '••••9876',
        createdAt: expect.stringMatching(ISO),
        verifiedAt: null,
      },
    ])
    const verified = await api('POST', '/provider-keys/elevenlabs/verify', { token: apiKey })
    expect(verified.body).toEqual({ provider: 'elevenlabs', valid: false, verifiedAt: null })
    expect((await api('DELETE', '/provider-keys/elevenlabs', { token: apiKey })).status).toBe(204)
    expect((await api('GET', '/provider-keys', { token: apiKey })).body.data).toEqual([])

    // BYOK: a request with X-Provider-Key-ElevenLabs is not charged.
    const byok = await api('POST', '/synthesize', {
      token: apiKey,
      json: { text: 'Hello', provider: 'elevenlabs' },
      headers: { 'X-Provider-Key-ElevenLabs': 'sk_your_elevenlabs_key' },
    })
    expect(byok.status).toBe(200)
    expect(byok.headers.get('x-usage-bypassed')).toBe('true')
    const paid = await api('POST', '/synthesize', { token: apiKey, json: { text: 'Hello' } })
    expect(paid.headers.get('x-usage-bypassed')).toBe('false')
    const usage = await api('GET', '/usage', { token: apiKey })
    expect(usage.body.credits.used).toBe(1)
    expect(usage.body.breakdown.tts).toBe(1)
    expect(usage.body.requests.tts).toBe(2)
  })

  it('001: a 402 of a valid key carries the usage figures as they stand', async () => {
    // "Every authenticated response includes usage information", the refusals of a limit too.
    const { tb, api } = await start(
      {},
      { plans: { zero: { monthlyCredits: 0 } }, defaultTier: 'zero' },
    )
    const key = (await tb.keys.create({ accountId: 'acct_broke' })).key
    const out = await api('POST', '/synthesize', { token: key, json: { text: 'Hello' } })
    expect(out.body.error).toBe('Insufficient credits')
    expect([
      out.status,
      out.headers.get('x-usage-current'),
      out.headers.get('x-usage-limit'),
      out.headers.get('x-usage-remaining'),
      out.headers.get('x-usage-bypassed'),
    ]).toEqual([402, '0', '0', '0', 'false'])
  })

  it('003: session-only key management with monthly usage', async () => {
    const secret = 'pdflys-session-secret-pdflys-session-secret'
    const { tb, clock, api } = await start(
      { auth: { managementKeys: false, session: { secret, maxAgeMs: 180 * DAY } } },
      { prefixes: { consumption: 'pdf_live_', management: 'pdf_mgmt_' } },
    )
    const token = await new SignJWT({ sub: 'user_42' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(Math.floor(T0 / 1000))
      .setExpirationTime(Math.floor((T0 + 120 * DAY) / 1000))
      .sign(new TextEncoder().encode(secret))

    // curl -X POST /api/v1/account/keys -H "Authorization: Bearer YOUR_TOKEN" -d '{"name":"CI Pipeline"}'
    const created = await api('POST', '/keys', { token, json: { name: 'CI Pipeline' } })
    expect(created.status).toBe(201)
    expect(created.body.key).toMatch(/^pdf_live_/)
    expect(created.body.prefix).toBe(`${created.body.key.slice(0, 13)}...`)
    // The key itself is refused here: API key authentication is not supported.
    const refused = await api('GET', '/keys', { token: created.body.key })
    expect(refused.status).toBe(403)
    expect(refused.body.error).toMatch(/accept a session token/)

    // Usage in one month, then the next.
    for (let i = 0; i < 3; i++)
      expect((await api('POST', '/synthesize', { token: created.body.key, json: {} })).status).toBe(
        200,
      )
    clock.set(Date.UTC(2026, 3, 2))
    expect((await api('POST', '/synthesize', { token: created.body.key, json: {} })).status).toBe(
      200,
    )

    // GET /api/v1/account/keys (lastUsedAt is written in batches: flush as the interval would)
    await tb.flush()
    const list = await api('GET', '/keys', { token })
    expect(list.body.data).toEqual([
      expect.objectContaining({
        id: created.body.id,
        name: 'CI Pipeline',
        lastUsedAt: '2026-04-02T00:00:00.000Z',
      }),
    ])
    // GET /api/v1/account/usage and ?month=2026-03
    const april = await api('GET', '/usage', { token })
    expect(april.body).toMatchObject({
      credits: { used: 1 },
      resetDate: '2026-05-01T00:00:00.000Z',
    })
    expect(april.body.requests.tts).toBe(1)
    const march = await api('GET', '/usage?month=2026-03', { token })
    expect(march.body).toMatchObject({
      credits: { used: 3 },
      resetDate: '2026-04-01T00:00:00.000Z',
    })
    expect(march.body.requests.tts).toBe(3)

    // curl -X DELETE /api/v1/account/keys/key_3 -> 204; immediately unusable.
    expect((await api('DELETE', `/keys/${created.body.id}`, { token })).status).toBe(204)
    expect((await api('POST', '/synthesize', { token: created.body.key, json: {} })).status).toBe(
      401,
    )
    expect((await api('GET', '/keys', { token })).body.data).toEqual([])
    expect(await tb.keys.get(created.body.id)).toMatchObject({ revokedAt: Date.UTC(2026, 3, 2) })
  })
})
