/**
 * The account endpoints over real HTTP, mounted under `/v1` in Hono, Express and Fastify:
 * usage, stored provider keys, billing, and who is refused.
 */

import { describe, expect, it } from 'vitest'
import { useManagement } from './fixture.js'
import { FRAMEWORKS, GOOD_PROVIDER_KEY, T0 } from './servers.js'

describe.each(FRAMEWORKS)('account endpoints on %s', (framework) => {
  const f = useManagement(framework)

  it('answers usage for the current period and a past month', async () => {
    const { key } = await f.create()
    for (let i = 0; i < 3; i++) expect((await f.synthesize(key)).status).toBe(200)
    const r = await f.api('GET', '/usage', { token: f.mk })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({
      credits: { used: 3, limit: 200_000, remaining: 199_997, carryover: 0, balance: 0 },
      groupBy: 'category',
      filter: { category: null, keyCategory: null },
      // Management calls are not product usage: only the three product requests count.
      breakdown: { tts: 3 },
      requests: { tts: 3 },
      requestCount: 3,
      resetDate: '2026-04-01T00:00:00.000Z',
      period: { id: '2026-03', start: '2026-03-01T00:00:00.000Z', end: '2026-04-01T00:00:00.000Z' },
    })
    const past = await f.api('GET', '/usage?month=2026-02', { token: f.mk })
    expect(past.body).toMatchObject({
      credits: { used: 0 },
      requestCount: 0,
      resetDate: '2026-03-01T00:00:00.000Z',
    })
    // Another account's usage is its own.
    expect((await f.api('GET', '/usage', { token: f.otherMk })).body.requestCount).toBe(0)
  })

  it("answers a closed month's statement: its limit, carryover, balance, used and remaining", async () => {
    const { key } = await f.create()
    for (let i = 0; i < 3; i++) expect((await f.synthesize(key)).status).toBe(200)
    await f.tb.accounts.addCredits('acct_a', 500)
    const march = { used: 3, limit: 200_500, remaining: 200_497, carryover: 0, balance: 500 }
    f.clock.set(Date.UTC(2026, 3, 10))
    let r = await f.api('GET', '/usage?month=2026-03', { token: f.mk })
    expect(r.status).toBe(200)
    expect(r.body.credits).toEqual(march)
    // April: pro's 200,000, the 199,997 March left unused (one month's worth at most), the balance.
    r = await f.api('GET', '/usage', { token: f.mk })
    expect(r.body.credits).toEqual({
      used: 0,
      limit: 400_497,
      remaining: 400_497,
      carryover: 199_997,
      balance: 500,
    })
    // After April closed too, March reads the same.
    f.clock.set(Date.UTC(2026, 4, 10))
    r = await f.api('GET', '/usage?month=2026-03', { token: f.mk })
    expect(r.body.credits).toEqual(march)
    // A month before the account: no figures kept, its plan's credits alone.
    r = await f.api('GET', '/usage?month=2025-12', { token: f.mk })
    expect(r.body.credits).toEqual({
      used: 0,
      limit: 200_000,
      remaining: 200_000,
      carryover: null,
      balance: null,
    })
  })

  it('stores, lists masked, verifies and deletes provider keys', async () => {
    let r = await f.api('POST', '/provider-keys', {
      token: f.mk,
      json: { provider: 'ElevenLabs', apiKey: GOOD_PROVIDER_KEY },
    })
    expect(r.status).toBe(201)
    expect(r.body).toEqual({
      provider: 'elevenlabs',
      masked: '••••0001',
      createdAt: expect.any(String),
      verifiedAt: null,
    })
    r = await f.api('GET', '/provider-keys', { token: f.mk })
    expect(r.body.data).toEqual([
      expect.objectContaining({ provider: 'elevenlabs', masked: '••••0001' }),
    ])
    expect(r.text).not.toContain(GOOD_PROVIDER_KEY)
    expect(await f.tb.providerKeys.get('acct_a', 'elevenlabs')).toBe(GOOD_PROVIDER_KEY)
    r = await f.api('POST', '/provider-keys/elevenlabs/verify', { token: f.mk })
    expect(r.body).toEqual({
      provider: 'elevenlabs',
      valid: true,
      verifiedAt: new Date(T0).toISOString(),
    })
    // Without a verifier for the provider: 501.
    await f.api('POST', '/provider-keys', {
      token: f.mk,
      json: { provider: 'openai', apiKey: 'sk-openai-123456' },
    })
    expect((await f.api('POST', '/provider-keys/openai/verify', { token: f.mk })).status).toBe(501)
    // Another account neither sees nor deletes it.
    expect((await f.api('GET', '/provider-keys', { token: f.otherMk })).body.data).toEqual([])
    expect((await f.api('DELETE', '/provider-keys/elevenlabs', { token: f.otherMk })).status).toBe(
      404,
    )
    expect((await f.api('DELETE', '/provider-keys/elevenlabs', { token: f.mk })).status).toBe(204)
    expect((await f.api('DELETE', '/provider-keys/elevenlabs', { token: f.mk })).status).toBe(404)
    expect(await f.tb.providerKeys.get('acct_a', 'elevenlabs')).toBeUndefined()
  })

  it('answers the subscription from the account; checkout and portal are 501 without billing', async () => {
    await f.tb.accounts.patch('acct_a', { billingCustomerId: 'cus_abc123' })
    const r = await f.api('GET', '/billing/subscription', { token: f.mk })
    expect(r.body).toEqual({
      tier: 'pro',
      tierDisplay: 'Pro ($99/mo)',
      credits: { used: 0, limit: 200_000, remaining: 200_000 },
      plan: { monthlyCredits: 200_000, overageRate: 0.0008, carryoverMonths: 1 },
      balance: 0,
      stripeCustomerId: 'cus_abc123',
      tierExpiresAt: null,
    })
    for (const path of ['/billing/checkout', '/billing/portal']) {
      const n = await f.api('POST', path, { token: f.mk, json: { tier: 'pro' } })
      expect(n.status).toBe(501)
      expect(n.body).toEqual({
        error: expect.stringMatching(/Billing is not configured/),
        code: 'not_implemented',
      })
    }
  })

  it('refuses callers without an accepted credential', async () => {
    let r = await f.api('GET', '/keys')
    expect(r.status).toBe(401)
    expect(r.body).toEqual({
      error: 'Missing credentials; these routes accept a management key',
      code: 'unauthorized',
    })
    expect(r.headers.get('www-authenticate')).toBe('Bearer')
    const { key } = await f.create()
    r = await f.api('GET', '/keys', { token: key })
    expect(r.status).toBe(403)
    expect(r.body).toEqual({
      error: 'API keys cannot be used on these routes; these routes accept a management key',
      code: 'wrong_key_kind',
    })
    r = await f.api('GET', '/keys', { token: 'mk_notarealkey' })
    expect(r.status).toBe(401)
    expect(r.body.code).toBe('invalid_api_key')
    r = await f.api('GET', '/keys', { token: 'something-else' })
    expect(r.status).toBe(401)
    expect(r.body.code).toBe('unauthorized')
    // x-api-key works too.
    r = await f.api('GET', '/keys', { headers: { 'x-api-key': f.mk } })
    expect(r.status).toBe(200)
  })

  it('leaves routes it does not serve to the app it is mounted in', async () => {
    const { key } = await f.create()
    const r = await f.synthesize(key)
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ ok: true, accountId: 'acct_a' })
  })
})
