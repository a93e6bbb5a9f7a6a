/**
 * `001_da102ff7c76ebfc9.txt`: "Every authenticated response includes usage information": the
 * voice example's management routes under `/v1` (keys, usage, subscription, provider keys)
 * carry `X-Usage-*` as its product routes do, with the account's figures after the call; and
 * a product request refused by the credits (402) or the key's rate limit (429) carries them
 * too, as they stand (nothing charged).
 */

import { afterEach, describe, expect, it } from 'vitest'
import { KEY_LIMITS } from '../../examples/voice-api/app.js'
import { startVoice, synth, type VoiceFixture } from './voice-fixture.js'

let fx: VoiceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

describe('voice-api example: usage headers on every authenticated answer (001)', () => {
  it('sends X-Usage-* on /v1/keys, /v1/usage, /v1/billing/subscription, /v1/provider-keys', async () => {
    fx = await startVoice()
    const { tb, api, settles } = fx
    await tb.accounts.setTier('acct_dev', 'pro')
    const key = (await tb.keys.create({ accountId: 'acct_dev', limits: KEY_LIMITS })).key
    expect((await synth(api, key, 'x'.repeat(250))).status).toBe(200)
    await settles.idle()
    const calls: Array<[string, string, Record<string, unknown>?]> = [
      ['GET', '/v1/keys'],
      ['POST', '/v1/keys', { name: 'Production Key' }],
      ['GET', '/v1/usage'],
      ['GET', '/v1/billing/subscription'],
      ['POST', '/v1/provider-keys', { provider: 'elevenlabs', apiKey: `sk_${'a'.repeat(24)}` }],
      ['GET', '/v1/provider-keys'],
      ['DELETE', '/v1/provider-keys/elevenlabs'],
    ]
    for (const [method, path, json] of calls) {
      const r = await api(method, path, { token: key, ...(json ? { json } : {}) })
      expect([method, path, r.status < 300]).toEqual([method, path, true])
      expect([
        method,
        path,
        r.headers.get('x-usage-current'),
        r.headers.get('x-usage-limit'),
        r.headers.get('x-usage-remaining'),
        r.headers.get('x-usage-bypassed'),
      ]).toEqual([method, path, '3', '200000', '199997', 'false'])
    }
    // A refused credential is not an authenticated answer: no figures of anyone's account.
    const refused = await api('GET', '/v1/usage', { token: 'plabs_sk_live_nope' })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('x-usage-current')).toBeNull()
  })

  it('sends X-Usage-* on a 402 and a 429 of a valid key, the figures unchanged by it', async () => {
    fx = await startVoice({ free: { display: 'Free', monthlyCredits: 3 } })
    const { tb, api, settles } = fx
    const key = (
      await tb.keys.create({
        accountId: 'acct_dev',
        limits: { rateLimits: [{ limit: 5, windowMs: 60_000 }] },
      })
    ).key
    const usage = (r: Awaited<ReturnType<typeof synth>>) => [
      r.status,
      r.headers.get('x-usage-current'),
      r.headers.get('x-usage-limit'),
      r.headers.get('x-usage-remaining'),
      r.headers.get('x-usage-bypassed'),
    ]
    for (let i = 1; i <= 3; i++) {
      expect(usage(await synth(api, key))).toEqual([200, String(i), '3', String(3 - i), 'false'])
      await settles.idle()
    }
    // The credits are used up: 402, and the figures say so.
    const out = await synth(api, key)
    expect(out.body.error).toBe('Insufficient credits')
    expect(usage(out)).toEqual([402, '3', '3', '0', 'false'])
    // BYOK requests go on until the key's 5 a minute are used; the 6th is a 429.
    const own = { 'X-Provider-Key-ElevenLabs': 'sk_elevenlabs_own_0001' }
    for (let i = 0; i < 2; i++)
      expect(usage(await synth(api, key, 'Hello', own))).toEqual([200, '3', '3', '0', 'true'])
    await settles.idle()
    const limited = await synth(api, key, 'Hello', own)
    expect(limited.headers.get('retry-after')).not.toBeNull()
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0')
    expect(usage(limited)).toEqual([429, '3', '3', '0', 'false'])
  })
})
