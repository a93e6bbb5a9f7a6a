/**
 * The voice API example (`examples/voice-api`, Hono) against the curl flows of
 * `001_da102ff7c76ebfc9.txt`: the ordinary API key manages keys and stored provider keys, BYOK
 * requests are not charged, every answer carries the usage headers, each key is rate limited
 * (429 with `X-RateLimit-*` and `Retry-After`) and the portal takes session tokens only.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { signSession } from '../../examples/shared/session.js'
import { KEY_LIMITS } from '../../examples/voice-api/app.js'
import type { TollboothOptions } from '../../src/index.js'
import { browserClient } from '../portal/servers.js'
import { ISO, repeat } from './http.js'
import { SESSION_SECRET, startVoice, synth, T0, type VoiceFixture } from './voice-fixture.js'

let fx: VoiceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

async function start(plans?: TollboothOptions['plans']) {
  fx = await startVoice(plans)
  return fx
}

describe('voice-api example: 001 authentication, BYOK and limits', () => {
  it('sends the usage and rate-limit headers on every authenticated answer', async () => {
    const { tb, api } = await start()
    await tb.accounts.setTier('acct_dev', 'pro')
    const key = (await tb.keys.create({ accountId: 'acct_dev', limits: KEY_LIMITS })).key
    // curl /v1/agents -H "Authorization: Bearer plabs_your_key_here"
    const agents = await api('GET', '/v1/agents', { token: key })
    expect(agents.status).toBe(200)
    expect(agents.headers.get('x-request-id')).toMatch(/^req_/)
    expect(agents.headers.get('x-usage-current')).toBe('0')
    expect(agents.headers.get('x-usage-limit')).toBe('200000')
    expect(agents.headers.get('x-usage-remaining')).toBe('200000')
    expect(agents.headers.get('x-usage-bypassed')).toBe('false')
    expect(agents.headers.get('x-ratelimit-limit')).toBe('60')
    expect(agents.headers.get('x-ratelimit-remaining')).toBe('59')
    const tts = await synth(api, key, 'x'.repeat(250))
    expect(tts.headers.get('x-usage-current')).toBe('3')
    expect(tts.headers.get('x-usage-remaining')).toBe('199997')
    expect(tts.headers.get('x-provider-used')).toBe('elevenlabs')

    const missing = await api('GET', '/v1/agents')
    expect([missing.status, missing.body]).toEqual([
      401,
      { error: 'Missing API Key', code: 'missing_api_key' },
    ])
    const wrong = await api('GET', '/v1/agents', { token: 'plabs_your_key_here' })
    expect([wrong.status, wrong.body.error]).toEqual([401, 'Invalid API Key'])
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"')
    // A bad body is a 400 naming the field, and is not charged.
    const bad = await api('POST', '/v1/synthesize', { token: key, json: { text: '' } })
    expect([bad.status, bad.body.code]).toEqual([400, 'invalid_request'])
    expect(bad.body.error).toMatch(/^Invalid request body: text:/)
    expect((await synth(api, key, 'x')).headers.get('x-usage-current')).toBe('4')
  })

  it('lets the ordinary API key manage keys and provider keys; BYOK requests are free', async () => {
    const { tb, api, settles } = await start()
    await tb.accounts.setTier('acct_dev', 'pro')
    const key = (await tb.keys.create({ accountId: 'acct_dev', name: 'Bootstrap' })).key

    // curl -X POST /v1/keys -H "Authorization: Bearer $KEY" -d '{"name":"Production Key","expiresInDays":90}'
    const created = await api('POST', '/v1/keys', {
      token: key,
      json: { name: 'Production Key', expiresInDays: 90 },
    })
    expect(created.status).toBe(201)
    // curl /v1/keys
    const list = await api('GET', '/v1/keys', { token: key })
    expect(list.body.data.map((k: { name: string }) => k.name).sort()).toEqual([
      'Bootstrap',
      'Production Key',
    ])
    // curl -X POST /v1/keys/key_id/rotate: a new key, the old one revoked.
    const rotated = await api('POST', `/v1/keys/${created.body.id}/rotate`, { token: key })
    expect(rotated.status).toBe(200)
    expect((await synth(api, created.body.key)).status).toBe(401)
    // curl -X DELETE /v1/keys/key_id
    expect((await api('DELETE', `/v1/keys/${rotated.body.id}`, { token: key })).status).toBe(204)
    expect((await synth(api, rotated.body.key)).status).toBe(401)
    // Management keys stay for management keys and sessions.
    const mgmt = await api('POST', '/v1/management-keys', { token: key, json: { name: 'ci' } })
    expect(mgmt.status).toBe(403)

    // Bad input names the field and creates nothing.
    const bad = await api('POST', '/v1/keys', { token: key, json: { expiresInDays: 400 } })
    expect([bad.status, bad.body.issues[0].path]).toEqual([400, 'expiresInDays'])

    // BYOK, the seed's curl line: X-Provider-Key-ElevenLabs bypasses metering.
    const byok = await api('POST', '/v1/synthesize', {
      token: key,
      headers: { 'X-Provider-Key-ElevenLabs': 'sk_your_elevenlabs_key' },
      json: { text: 'Hello', provider: 'elevenlabs', voiceId: 'your_voice' },
    })
    expect(byok.body).toMatchObject({ provider: 'elevenlabs', voiceId: 'your_voice' })
    expect(byok.status).toBe(200)
    expect(byok.headers.get('x-usage-bypassed')).toBe('true')
    expect(byok.headers.get('x-usage-current')).toBe('0')
    expect(byok.headers.get('x-provider-used')).toBe('elevenlabs')
    const paid = await synth(api, key)
    expect(paid.headers.get('x-usage-bypassed')).toBe('false')
    expect(paid.headers.get('x-usage-current')).toBe('1')

    // Stored provider keys: store, list (masked), verify, use, delete.
    const stored = await api('POST', '/v1/provider-keys', {
      token: key,
      json: { provider: 'elevenlabs', apiKey: 'sk_elevenlabsStored9876' },
    })
    expect(stored.status).toBe(201)
    expect(stored.text).not.toContain('sk_elevenlabsStored9876')
    const listed = await api('GET', '/v1/provider-keys', { token: key })
    expect(listed.body.data).toEqual([
      {
        provider: 'elevenlabs',
        masked: '••••9876',
        createdAt: expect.stringMatching(ISO),
        verifiedAt: null,
      },
    ])
    const verified = await api('POST', '/v1/provider-keys/elevenlabs/verify', { token: key })
    expect(verified.body).toEqual({
      provider: 'elevenlabs',
      valid: true,
      verifiedAt: new Date(T0).toISOString(),
    })
    // The stored key is used automatically: free, without a header.
    const auto = await synth(api, key)
    expect(auto.headers.get('x-usage-bypassed')).toBe('true')
    expect(auto.headers.get('x-usage-current')).toBe('1')
    // ... but only for its provider: deepgram is ours, and charged.
    const stt = await api('POST', '/v1/transcribe', {
      token: key,
      json: { audioUrl: 'https://example.com/a.wav', durationSeconds: 5 },
    })
    expect(stt.headers.get('x-usage-bypassed')).toBe('false')
    expect((await api('DELETE', '/v1/provider-keys/elevenlabs', { token: key })).status).toBe(204)
    expect((await api('GET', '/v1/provider-keys', { token: key })).body.data).toEqual([])
    expect((await synth(api, key)).headers.get('x-usage-bypassed')).toBe('false')

    await settles.idle()
    const usage = await api('GET', '/v1/usage', { token: key })
    expect(usage.body.credits.used).toBe(3)
    expect(usage.body.breakdown).toEqual({ tts: 2, stt: 1, llm: 0, rag: 0 })
    expect(usage.body.requests.tts).toBe(4)
  })

  it('limits each key per minute: 429 with X-RateLimit-* and Retry-After', async () => {
    const { tb, api, clock } = await start()
    // On pro: the free plan also caps every account at 10 requests a second.
    await tb.accounts.setTier('acct_dev', 'pro')
    const key = (await tb.keys.create({ accountId: 'acct_dev', limits: KEY_LIMITS })).key
    const answers = await repeat(61, () => api('GET', '/v1/agents', { token: key }))
    expect(answers.slice(0, 60).every((r) => r.status === 200)).toBe(true)
    const limited = answers[60]!
    expect(limited.status).toBe(429)
    expect(limited.body).toEqual({
      error: 'Rate limit exceeded: per-minute rate limit of this key',
      code: 'rate_limited',
    })
    expect(limited.headers.get('x-ratelimit-limit')).toBe('60')
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0')
    expect(limited.headers.get('retry-after')).toBe('1')
    // The management routes count against the same key.
    expect((await api('GET', '/v1/keys', { token: key })).status).toBe(429)
    clock.advance(1000)
    expect((await api('GET', '/v1/agents', { token: key })).status).toBe(200)

    // A key created with its own limits keeps them.
    clock.advance(60_000)
    const own = await api('POST', '/v1/keys', {
      token: key,
      json: { name: 'slow', limits: { rateLimits: [{ limit: 2, windowMs: 60_000 }] } },
    })
    const slow = await repeat(3, () => api('GET', '/v1/agents', { token: own.body.key }))
    expect(slow.map((r) => r.status)).toEqual([200, 200, 429])
    expect(slow[2]!.headers.get('retry-after')).toBe('30')
  })

  it('serves the portal to session tokens only', async () => {
    const { tb, api, url } = await start()
    const key = (await tb.keys.create({ accountId: 'acct_dev', name: 'Bootstrap' })).key
    const mk = (await tb.keys.create({ accountId: 'acct_dev', kind: 'management' })).key
    // "Portal routes are not accessible with API keys": neither kind, even on GET.
    for (const token of [key, mk]) {
      const refused = await api('GET', '/portal/api/keys', { token })
      expect([refused.status, refused.body.code]).toEqual([403, 'forbidden'])
    }
    expect((await api('GET', '/portal/api/keys')).status).toBe(401)
    // A bearer session token is not a sign-in either: the portal reads its cookie only.
    const session = await signSession(SESSION_SECRET, 'acct_dev', { now: T0 })
    expect((await api('GET', '/portal/api/keys', { token: session })).status).toBe(403)
    const browser = browserClient(url)
    expect((await browser.signIn(session)).status).toBe(200)
    const list = await browser.call('GET', '/api/keys')
    expect(list.body.data.map((k: { name: string }) => k.name)).toEqual(['Bootstrap'])
  })
})
