/**
 * `001_da102ff7c76ebfc9.txt`, "Verify a key works": `POST /v1/provider-keys/:provider/verify`
 * asks the provider. The voice example verifies with one request to the provider's cheapest
 * authenticated endpoint (here a local stand-in), the key in a header only, bounded by a
 * timeout; a key the provider refuses, or a provider that does not answer, is not valid.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { startVoice, T0, type VoiceFixture } from './voice-fixture.js'

let fx: VoiceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

describe('voice-api example: provider-key verify that verifies (001)', () => {
  it('asks the provider: accepted, refused, or no answer within the timeout', async () => {
    fx = await startVoice(undefined, undefined, { verifyTimeoutMs: 300 })
    const { tb, api, providers } = fx
    const key = (await tb.keys.create({ accountId: 'acct_byok' })).key
    const store = (provider: string, apiKey: string) =>
      api('POST', '/v1/provider-keys', { token: key, json: { provider, apiKey } })
    const verify = (provider: string) =>
      api('POST', `/v1/provider-keys/${provider}/verify`, { token: key })

    // Accepted by the provider.
    expect((await store('elevenlabs', 'sk_acceptedByProvider0001')).status).toBe(201)
    expect((await verify('elevenlabs')).body).toEqual({
      provider: 'elevenlabs',
      valid: true,
      verifiedAt: new Date(T0).toISOString(),
    })
    const asked = providers.requests.at(-1)!
    expect([asked.method, asked.path]).toEqual(['GET', '/v1/user'])
    expect(asked.headers['xi-api-key']).toBe('sk_acceptedByProvider0001')

    // Well-formed, but refused by the provider (401): not valid, nothing recorded.
    expect((await store('elevenlabs', 'sk_revokedByProvider0001')).status).toBe(201)
    expect((await verify('elevenlabs')).body).toEqual({
      provider: 'elevenlabs',
      valid: false,
      verifiedAt: null,
    })

    // OpenAI's endpoint, with the key as a Bearer token.
    expect((await store('openai', 'sk-acceptedByProvider-000000000')).status).toBe(201)
    expect((await verify('openai')).body.valid).toBe(true)
    const models = providers.requests.at(-1)!
    expect([models.path, models.headers.authorization]).toEqual([
      '/v1/models',
      'Bearer sk-acceptedByProvider-000000000',
    ])

    // A provider that does not answer: bounded by the timeout, not valid.
    expect((await store('deepgram', 'slow0000000000000000000000000000000000000')).status).toBe(201)
    const started = Date.now()
    const slow = await verify('deepgram')
    expect(Date.now() - started).toBeLessThan(5_000)
    expect([slow.status, slow.body.valid]).toEqual([200, false])
    expect(providers.requests.at(-1)!.path).toBe('/v1/projects')
  })
})
