/**
 * `000_e64ca3fbac44b344.txt`: `POST /v1/billing/checkout` takes "starter, pro, or scale". The
 * voice example's `free` tier exists (the default every account falls back to) but cannot be
 * bought: a 400 naming `tier`, and no checkout session is opened.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { startVoice, type VoiceFixture } from './voice-fixture.js'

let fx: VoiceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

const URLS = { successUrl: 'https://yourapp.com/ok', cancelUrl: 'https://yourapp.com/no' }

describe('voice-api example: only purchasable tiers at checkout (000)', () => {
  it('refuses tier "free" with 400 naming the field, sells starter, pro and scale', async () => {
    fx = await startVoice()
    const { tb, api } = fx
    const key = (await tb.keys.create({ accountId: 'acct_buyer' })).key
    const free = await api('POST', '/v1/billing/checkout', {
      token: key,
      json: { tier: 'free', ...URLS },
    })
    expect([free.status, free.body]).toEqual([
      400,
      {
        error: 'Invalid request body: tier: must be one of starter, pro, scale',
        code: 'invalid_request',
        issues: [{ path: 'tier', message: 'must be one of starter, pro, scale' }],
      },
    ])
    for (const tier of ['starter', 'pro', 'scale']) {
      const ok = await api('POST', '/v1/billing/checkout', { token: key, json: { tier, ...URLS } })
      expect([tier, ok.status]).toEqual([tier, 200])
    }
    expect((await tb.accounts.get('acct_buyer')).tier).toBe('free')
  })
})
