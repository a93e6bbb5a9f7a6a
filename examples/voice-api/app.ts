/**
 * @module examples/voice-api/app
 *
 * A voice API in the shape of `000_e64ca3fbac44b344.txt` and `001_da102ff7c76ebfc9.txt`, on
 * tollbooth and Hono: `plabs_sk_live_` keys, `/v1/synthesize`, `/v1/transcribe`, `/v1/chat`
 * metered in credits by category (tts, stt, llm), plans starter/pro/scale with monthly
 * credits, overage and carryover, BYOK provider-key headers that bypass metering, the usage
 * headers, and a per-key rate limit.
 */

import { Hono } from 'hono'
import { requireApiKey } from '../../adapters/hono/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'

export const PLANS = {
  free: { display: 'Free', monthlyCredits: 1_000, rateLimits: [{ limit: 10, windowMs: 1_000 }] },
  starter: {
    display: 'Starter ($29/mo)',
    monthlyCredits: 50_000,
    overageRate: 0.001,
    carryoverMonths: 0,
  },
  pro: {
    display: 'Pro ($99/mo)',
    monthlyCredits: 200_000,
    overageRate: 0.0008,
    allowOverage: true,
    carryoverMonths: 1,
  },
  scale: {
    display: 'Scale ($499/mo)',
    monthlyCredits: 1_500_000,
    overageRate: 0.0005,
    allowOverage: true,
    carryoverMonths: 2,
  },
}

export interface VoiceApi {
  app: Hono
  tb: Tollbooth
}

export function createVoiceApi(options: { secret: string; storage?: Storage }): VoiceApi {
  const tb = createTollbooth({
    secret: options.secret,
    ...(options.storage ? { storage: options.storage } : {}),
    prefixes: { consumption: 'plabs_sk_live_', management: 'plabs_mk_live_' },
    plans: PLANS,
    defaultTier: 'free',
  })
  const app = new Hono()

  app.get('/', (c) => c.json({ name: 'voice-api', docs: 'see examples/voice-api/README.md' }))

  // Text to speech: 10 credits held, then 1 credit per 100 characters charged.
  app.post(
    '/v1/synthesize',
    requireApiKey(tb, { category: 'tts', byok: true, cost: 10 }),
    async (c) => {
      const body = (await c.req.json().catch(() => ({}))) as { text?: string; provider?: string }
      const text = typeof body.text === 'string' ? body.text : ''
      if (!text) return c.json({ error: 'text is required', code: 'invalid_request' }, 400)
      const provider = (body.provider ?? 'elevenlabs').toLowerCase()
      const apiKey = c.get('apiKey')
      await apiKey.providerKey(provider)
      apiKey.report({ provider, cost: Math.max(1, Math.ceil(text.length / 100)) })
      return c.json({
        audio: `data:audio/wav;base64,${btoa(text.slice(0, 32))}`,
        characters: text.length,
        provider,
      })
    },
  )

  app.post('/v1/transcribe', requireApiKey(tb, { category: 'stt', byok: true, cost: 5 }), (c) => {
    c.get('apiKey').report({ provider: 'deepgram' })
    return c.json({ text: 'hello world', provider: 'deepgram' })
  })

  app.post('/v1/chat', requireApiKey(tb, { category: 'llm', byok: true, cost: 10 }), async (c) => {
    const body = (await c.req.json().catch(() => ({}))) as { message?: string }
    const reply = `You said: ${String(body.message ?? '').slice(0, 200)}`
    c.get('apiKey').report({ provider: 'openai', cost: Math.max(1, Math.ceil(reply.length / 4)) })
    return c.json({ reply, provider: 'openai' })
  })

  app.get('/v1/agents', requireApiKey(tb, { cost: 0 }), (c) => c.json({ data: [] }))

  return { app, tb }
}
