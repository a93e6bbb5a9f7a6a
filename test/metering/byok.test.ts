/**
 * @module test/metering/byok
 *
 * BYOK through the pipeline: provider keys from `X-Provider-Key-*` headers (route option
 * `byok`), else the account's stored ones; a request served on the caller's own key is not
 * charged and says `X-Usage-Bypassed: true`; provider keys are never logged or echoed.
 */

import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/index.js'
import { admitted, events, req, setup } from './helpers.js'

const PREPAID = { plans: { p: { monthlyCredits: 2 } }, defaultTier: 'p' }
const CALLER_EL = 'sk_el_caller_own_key_0123456789'
const STORED_EL = 'sk_el_stored_key_abcdefghijkl'
const CALLER_OA = 'sk-oa-caller-own-key-987654321'

describe('BYOK from request headers', () => {
  it('exposes the header key, does not charge, and says X-Usage-Bypassed: true', async () => {
    const s = await setup(PREPAID)
    const route = s.tb.route({ cost: 1, category: 'tts', byok: true })
    const d = admitted(
      await s.tb.authenticate(req(s.key, { 'x-provider-key-elevenlabs': CALLER_EL }), route),
    )
    expect(d.providerKeys).toEqual({ elevenlabs: CALLER_EL })
    expect(await d.providerKey('ElevenLabs')).toBe(CALLER_EL)
    expect(d.bypassed).toBe(true)
    expect(d.cost).toBe(0)
    d.report({ provider: 'elevenlabs' })
    const h = d.responseHeaders()
    expect(h).toMatchObject({
      'X-Usage-Current': '0',
      'X-Usage-Limit': '2',
      'X-Usage-Remaining': '2',
      'X-Usage-Bypassed': 'true',
      'X-Provider-Used': 'elevenlabs',
    })
    const e = await s.tb.settle(d, { status: 200 })
    expect(e).toMatchObject({ units: 0, bypassed: true, provider: 'elevenlabs', category: 'tts' })
    expect((await s.tb.accounts.get('acct_1')).credits.used).toBe(0)
  })

  it('serves a BYOK caller whose credits are exhausted', async () => {
    const s = await setup(PREPAID)
    const route = s.tb.route({ cost: 1, byok: true })
    for (let i = 0; i < 2; i++)
      await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    expect((await s.tb.authenticate(req(s.key), route)).allowed).toBe(false)
    const byok = req(s.key, { 'x-provider-key-openai': CALLER_OA })
    for (let i = 0; i < 5; i++) {
      const d = admitted(await s.tb.authenticate(byok, route))
      expect((await s.tb.settle(d, { status: 200, provider: 'openai' }))?.units).toBe(0)
    }
  })

  it('charges the route cost when another provider than the caller’s served the request', async () => {
    const s = await setup(PREPAID)
    const route = s.tb.route({ cost: 1, byok: true })
    const d = admitted(
      await s.tb.authenticate(req(s.key, { 'x-provider-key-openai': CALLER_OA }), route),
    )
    d.report({ provider: 'elevenlabs' }) // served on the platform's ElevenLabs account
    expect(d.bypassed).toBe(false)
    expect(d.responseHeaders()['X-Usage-Bypassed']).toBe('false')
    expect((await s.tb.settle(d, { status: 200 }))?.units).toBe(1)
    expect((await s.tb.accounts.get('acct_1')).credits.used).toBe(1)
  })

  it('reads headers only on routes that ask: byok false ignores them, a list reads those', async () => {
    const s = await setup(PREPAID)
    const headers = { 'x-provider-key-elevenlabs': CALLER_EL, 'x-provider-key-openai': CALLER_OA }
    const off = admitted(await s.tb.authenticate(req(s.key, headers), s.tb.route({ cost: 1 })))
    expect(off.providerKeys).toEqual({})
    expect(off.bypassed).toBe(false)
    expect((await s.tb.settle(off, { status: 200 }))?.units).toBe(1)
    const only = admitted(
      await s.tb.authenticate(req(s.key, headers), s.tb.route({ cost: 1, byok: ['OpenAI'] })),
    )
    expect(only.providerKeys).toEqual({ openai: CALLER_OA })
    expect(() => s.tb.route({ byok: ['acme'] })).toThrow(ConfigError)
    expect(() => s.tb.route({ byok: ['acme'] })).toThrow(/byok/)
  })

  it('custom providers come with their own header', async () => {
    const s = await setup({ providers: { acme: 'X-Acme-Key' } })
    const d = admitted(
      await s.tb.authenticate(
        req(s.key, { 'x-acme-key': 'acme-secret-1', 'x-provider-key-openai': CALLER_OA }),
        s.tb.route({ cost: 1, byok: true }),
      ),
    )
    expect(d.providerKeys).toEqual({ acme: 'acme-secret-1' })
  })
})

describe('BYOK from stored provider keys', () => {
  it('falls back to the account’s stored key; the header one wins when both exist', async () => {
    const s = await setup(PREPAID)
    await s.tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: STORED_EL })
    const route = s.tb.route({ cost: 1, byok: true })
    const stored = admitted(await s.tb.authenticate(req(s.key), route))
    expect(stored.providerKeys).toEqual({})
    expect(await stored.providerKey('elevenlabs')).toBe(STORED_EL)
    expect(await stored.providerKey('openai')).toBeUndefined()
    const both = admitted(
      await s.tb.authenticate(req(s.key, { 'x-provider-key-elevenlabs': CALLER_EL }), route),
    )
    expect(await both.providerKey('elevenlabs')).toBe(CALLER_EL)
  })

  it('a request served on the stored key is refunded and says bypassed', async () => {
    const s = await setup(PREPAID)
    await s.tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: STORED_EL })
    const route = s.tb.route({ cost: 1, category: 'tts', byok: true })
    const d = admitted(await s.tb.authenticate(req(s.key), route))
    // Reserved at admission (the stored key is only known once the handler asks for it) …
    expect((await s.tb.accounts.get('acct_1')).credits.used).toBe(1)
    expect(d.bypassed).toBe(false)
    await d.providerKey('elevenlabs')
    d.report({ provider: 'elevenlabs' })
    expect(d.responseHeaders()).toMatchObject({
      'X-Usage-Current': '0',
      'X-Usage-Bypassed': 'true',
      'X-Provider-Used': 'elevenlabs',
    })
    // … and refunded whole at settle.
    expect(await s.tb.settle(d, { status: 200 })).toMatchObject({ units: 0, bypassed: true })
    expect((await s.tb.accounts.get('acct_1')).credits.used).toBe(0)
  })

  it('taking the stored key marks the request bypassed even if no provider is reported', async () => {
    const s = await setup(PREPAID)
    await s.tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: STORED_EL })
    const d = admitted(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 1, byok: true })))
    await d.providerKey('elevenlabs')
    expect((await s.tb.settle(d, { status: 200 }))?.units).toBe(0)
  })

  it('stored keys serve routes without the byok option too (it governs headers only)', async () => {
    const s = await setup(PREPAID)
    await s.tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: STORED_EL })
    const d = admitted(
      await s.tb.authenticate(
        req(s.key, { 'x-provider-key-elevenlabs': CALLER_EL }),
        s.tb.route({ cost: 1 }),
      ),
    )
    expect(await d.providerKey('elevenlabs')).toBe(STORED_EL)
    expect((await s.tb.settle(d, { status: 200, provider: 'elevenlabs' }))?.bypassed).toBe(true)
  })

  it('asking for a provider with no stored key keeps the request charged', async () => {
    const s = await setup(PREPAID)
    const d = admitted(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 1, byok: true })))
    expect(await d.providerKey('elevenlabs')).toBeUndefined()
    expect((await s.tb.settle(d, { status: 200, provider: 'elevenlabs' }))?.units).toBe(1)
  })

  it('a stored key sealed under another secret is not used, and the request is charged', async () => {
    const s = await setup(PREPAID)
    await s.tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: STORED_EL })
    const raw = (await s.tb.storage.secrets.get('acct_1', 'elevenlabs'))!
    const other = await setup({ ...PREPAID, secret: 'x'.repeat(40) })
    await other.tb.storage.secrets.put(raw)
    const d = admitted(
      await other.tb.authenticate(req(other.key), other.tb.route({ cost: 1, byok: true })),
    )
    expect(await d.providerKey('elevenlabs')).toBeUndefined()
    expect((await other.tb.settle(d, { status: 200 }))?.units).toBe(1)
  })
})

describe('provider keys are never logged or echoed', () => {
  it('no provider key in headers, events, logs, or a logged or serialized decision', async () => {
    const s = await setup(PREPAID)
    await s.tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: STORED_EL })
    const route = s.tb.route({ cost: 1, category: 'tts', byok: true })
    const d = admitted(
      await s.tb.authenticate(req(s.key, { 'x-provider-key-openai': CALLER_OA }), route),
    )
    await d.providerKey('elevenlabs')
    d.report({ provider: 'openai' })
    const dumps = [
      JSON.stringify(d.responseHeaders()),
      JSON.stringify(d),
      inspect(d, { depth: 10 }),
      JSON.stringify(await s.tb.settle(d, { status: 200 })),
      JSON.stringify(await events(s.tb, s.keyId)),
      JSON.stringify(await s.tb.usage.logs(s.keyId)),
      JSON.stringify(await s.tb.usage.get('acct_1')),
      JSON.stringify(await s.tb.providerKeys.list('acct_1')),
    ]
    for (const text of dumps) {
      expect(text).not.toContain(CALLER_OA)
      expect(text).not.toContain(STORED_EL)
    }
    // The decision still hands them to the handler.
    expect(d.providerKeys.openai).toBe(CALLER_OA)
  })
})
