/**
 * The voice API example (`examples/voice-api`, Hono) against the curl flows of
 * `000_e64ca3fbac44b344.txt` (keys with a cursor, rotation, revocation, usage, subscription,
 * checkout and portal) and its plans (credits, overage, carryover), over real HTTP on a manual
 * clock.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { KEY_LIMITS, PLANS } from '../../examples/voice-api/app.js'
import type { TollboothOptions } from '../../src/index.js'
import { DAY, repeat } from './http.js'
import { startVoice, synth, T0, type VoiceFixture } from './voice-fixture.js'

let fx: VoiceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

async function start(plans?: TollboothOptions['plans']) {
  fx = await startVoice(plans)
  return fx
}

describe('voice-api example: 000 keys and billing', () => {
  it('creates, lists with a cursor, rotates and revokes keys; reports usage and the subscription', async () => {
    const { tb, clock, api, settles } = await start()
    await tb.accounts.setTier('acct_persona', 'pro')
    const mk = (await tb.keys.create({ accountId: 'acct_persona', kind: 'management' })).key

    // POST /v1/keys {"name":"Production Key","expiresInDays":90} -> 201
    const created = await api('POST', '/v1/keys', {
      token: mk,
      json: { name: 'Production Key', expiresInDays: 90 },
    })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({
      id: expect.stringMatching(/^key_/),
      key: expect.stringMatching(/^plabs_sk_live_/),
      name: 'Production Key',
      expiresAt: new Date(T0 + 90 * DAY).toISOString(),
      message: 'Save this key - it will not be shown again.',
    })
    const first = created.body as { id: string; key: string }
    // Every key gets the per-key rate limit.
    expect((await tb.keys.get(first.id)).limits).toEqual(KEY_LIMITS)
    clock.advance(1000)
    const second = await api('POST', '/v1/keys', { token: mk, json: {} })
    expect(second.body.name).toBe('Default')

    // GET /v1/keys?limit=1, then the next page with the cursor.
    const page1 = await api('GET', '/v1/keys?limit=1', { token: mk })
    expect(page1.body).toMatchObject({ data: [{ id: second.body.id }], hasMore: true })
    const page2 = await api('GET', `/v1/keys?limit=1&cursor=${page1.body.nextCursor}`, {
      token: mk,
    })
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

    // The key works on every metered route, each under its category.
    const ok = await synth(api, first.key, 'Hello there')
    expect(ok.status).toBe(200)
    expect(ok.headers.get('x-ratelimit-limit')).toBe('60')
    const stt = await api('POST', '/v1/transcribe', {
      token: first.key,
      json: { audioUrl: 'https://example.com/clip.wav', durationSeconds: 25 },
    })
    expect([stt.status, stt.headers.get('x-provider-used')]).toEqual([200, 'deepgram'])
    const chat = await api('POST', '/v1/chat', { token: first.key, json: { message: 'Hi' } })
    expect(chat.body).toEqual({ reply: 'You said: Hi', provider: 'openai' })
    const rag = await api('POST', '/v1/rag/query', {
      token: first.key,
      json: { query: 'how fast does streaming synthesis start' },
    })
    expect(rag.body.results[0].id).toBe('doc_latency')

    // POST /v1/keys/:id/rotate -> 200: a new key, the old one revoked at once.
    const rotated = await api('POST', `/v1/keys/${first.id}/rotate`, { token: mk })
    expect(rotated.status).toBe(200)
    expect(rotated.body).toMatchObject({
      id: expect.stringMatching(/^key_/),
      key: expect.stringMatching(/^plabs_sk_live_/),
      name: 'Production Key',
      message: 'Save this key - it will not be shown again.',
    })
    expect((await synth(api, first.key)).status).toBe(401)
    expect((await synth(api, rotated.body.key)).status).toBe(200)
    expect((await tb.keys.get(rotated.body.id)).limits).toEqual(KEY_LIMITS)

    // DELETE /v1/keys/:id -> 204; the key is immediately invalidated.
    const revoked = await api('DELETE', `/v1/keys/${rotated.body.id}`, { token: mk })
    expect([revoked.status, revoked.text]).toEqual([204, ''])
    expect((await synth(api, rotated.body.key)).body).toEqual({
      error: 'Invalid API Key',
      code: 'invalid_api_key',
    })

    // GET /v1/usage: tts 1 + 1, stt 3 (25 s), llm 1, rag 2.
    await settles.idle()
    const usage = await api('GET', '/v1/usage', { token: mk })
    expect(usage.status).toBe(200)
    expect(usage.body).toMatchObject({
      credits: { used: 8, limit: 200_000, remaining: 199_992 },
      breakdown: { tts: 2, stt: 3, llm: 1, rag: 2 },
      resetDate: '2026-04-01T00:00:00.000Z',
    })
    expect(usage.body.breakdown).toEqual({ tts: 2, stt: 3, llm: 1, rag: 2 })
    expect(usage.body.requestCount).toBeGreaterThanOrEqual(5)

    // GET /v1/billing/subscription
    const sub = await api('GET', '/v1/billing/subscription', { token: mk })
    expect(sub.body).toMatchObject({
      tier: 'pro',
      tierDisplay: 'Pro ($99/mo)',
      credits: { used: 8, limit: 200_000, remaining: 199_992 },
      plan: { monthlyCredits: 200_000, overageRate: 0.0008, carryoverMonths: 1 },
      stripeCustomerId: null,
      tierExpiresAt: null,
    })
  })

  it('upgrades through checkout and opens the billing portal', async () => {
    const { tb, api } = await start()
    const mk = (await tb.keys.create({ accountId: 'acct_buyer', kind: 'management' })).key
    const bad = await api('POST', '/v1/billing/checkout', {
      token: mk,
      json: {
        tier: 'gold',
        successUrl: 'https://yourapp.com/ok',
        cancelUrl: 'https://yourapp.com/no',
      },
    })
    expect([bad.status, bad.body.code]).toEqual([400, 'invalid_request'])
    expect(bad.body.error).toMatch(/tier: must be one of starter, pro, scale/)

    // POST /v1/billing/checkout {"tier":"pro","successUrl":…,"cancelUrl":…} -> { url, sessionId }
    const checkout = await api('POST', '/v1/billing/checkout', {
      token: mk,
      json: {
        tier: 'pro',
        successUrl: 'https://yourapp.com/billing/success',
        cancelUrl: 'https://yourapp.com/billing/cancel',
      },
    })
    expect(checkout.status).toBe(200)
    expect(checkout.body).toEqual({ url: expect.any(String), sessionId: expect.any(String) })
    expect((await api('GET', '/v1/billing/subscription', { token: mk })).body.tier).toBe('free')
    // Paying (opening the checkout page) applies the tier and redirects to successUrl, once.
    const paid = await fetch(checkout.body.url, { redirect: 'manual' })
    expect([paid.status, paid.headers.get('location')]).toEqual([
      303,
      'https://yourapp.com/billing/success',
    ])
    expect((await fetch(checkout.body.url, { redirect: 'manual' })).status).toBe(404)
    const sub = await api('GET', '/v1/billing/subscription', { token: mk })
    expect(sub.body).toMatchObject({
      tier: 'pro',
      tierExpiresAt: new Date(T0 + 30 * DAY).toISOString(),
      credits: { limit: 200_000 },
    })

    // POST /v1/billing/portal -> { url }
    const portal = await api('POST', '/v1/billing/portal', { token: mk })
    expect(portal.body).toEqual({ url: expect.stringContaining('/billing/demo/portal/') })
    const page = await fetch(portal.body.url)
    expect(await page.json()).toMatchObject({ account: 'acct_buyer', tier: 'pro' })
  })
})

describe('voice-api example: plans', () => {
  // The shipped plans with small monthly credits, so a test can use them up.
  const small = {
    ...PLANS,
    free: { ...PLANS.free, monthlyCredits: 10 },
    pro: { ...PLANS.pro, monthlyCredits: 10 },
  }

  it('refuses a plan without overage once its credits are used, with 402', async () => {
    const { tb, api } = await start(small)
    const key = (await tb.keys.create({ accountId: 'acct_free' })).key
    // A request holds the most it can cost (from its size) until it is settled.
    expect((await synth(api, key, 'x'.repeat(1000))).status).toBe(402)
    expect((await synth(api, key, 'x'.repeat(900))).headers.get('x-usage-current')).toBe('9')
    expect((await synth(api, key, 'x')).headers.get('x-usage-current')).toBe('10')
    const refused = await synth(api, key, 'x')
    expect([refused.status, refused.body]).toEqual([
      402,
      { error: 'Insufficient credits', code: 'insufficient_credits' },
    ])
  })

  it('serves overage on pro and carries unused credits into the next month', async () => {
    const { tb, api, clock, settles } = await start(small)
    await tb.accounts.setTier('acct_pro', 'pro')
    const key = (await tb.keys.create({ accountId: 'acct_pro' })).key
    expect((await synth(api, key, 'x'.repeat(400))).headers.get('x-usage-current')).toBe('4')
    await settles.idle()
    // April: the 6 unused credits carry over (up to one month of credits).
    clock.set(Date.UTC(2026, 3, 2))
    const april = await api('GET', '/v1/billing/subscription', { token: key })
    expect(april.body.credits).toEqual({ used: 0, limit: 16, remaining: 16 })
    const over = await repeat(2, () => synth(api, key, 'x'.repeat(1000)))
    expect(over.map((r) => r.status)).toEqual([200, 200])
    expect(over[1]!.headers.get('x-usage-current')).toBe('20')
    expect(over[1]!.headers.get('x-usage-remaining')).toBe('0')
  })
})
