/**
 * @module examples/voice-api/product-routes
 *
 * The voice API's own routes, each guarded by `requireApiKey` and metered in credits under
 * its category: `POST /v1/synthesize` (tts), `POST /v1/transcribe` (stt), `POST /v1/chat`
 * (llm), `POST /v1/rag/query` (rag) and the free `GET /v1/agents`. The providers are
 * stand-ins that answer deterministically; what matters is the API around them:
 *
 * - each route holds the most the request can cost (from its `Content-Length` where the cost
 *   depends on the text) and the handler reports the actual cost and provider;
 * - `apiKey.providerKey(provider)` returns the caller's `X-Provider-Key-*` header or the
 *   account's stored key for that provider: either makes the request BYOK, not charged
 *   (`X-Usage-Bypassed: true`);
 * - a bad body is a 400 naming the field, and is not charged.
 */

import type { Context, Hono } from 'hono'
import { z } from 'zod'
import { requireApiKey } from '../../adapters/hono/index.js'
import { readHeader, type Tollbooth, type TollboothRequest } from '../../src/index.js'

/** Credits: 1 per 100 characters of speech, 1 per 10 s of audio, 1 per 100 characters of chat. */
export const PRICING = { ttsCharsPerCredit: 100, sttSecondsPerCredit: 10, llmCharsPerCredit: 100 }

const TTS = ['elevenlabs', 'cartesia', 'fishaudio', 'inworld', 'resembleai', 'huggingface'] as const
const STT = ['deepgram', 'elevenlabs', 'cartesia', 'groq'] as const
const LLM = ['openai', 'anthropic', 'groq'] as const

const synthesizeBody = z.object({
  text: z.string().min(1).max(5000),
  provider: z.enum(TTS).default('elevenlabs'),
  voiceId: z.string().min(1).max(100).default('default'),
})
const transcribeBody = z.object({
  audioUrl: z.url({ protocol: /^https?$/ }),
  durationSeconds: z.number().positive().max(600),
  provider: z.enum(STT).default('deepgram'),
})
const chatBody = z.object({
  message: z.string().min(1).max(4000),
  provider: z.enum(LLM).default('openai'),
})
const ragBody = z.object({
  query: z.string().min(1).max(1000),
  topK: z.number().int().min(1).max(5).default(3),
})

/** The knowledge base the stand-in retrieval searches. */
const DOCUMENTS = [
  { id: 'doc_voices', text: 'Voices can be cloned from a 30 second sample and used for synthesis' },
  { id: 'doc_latency', text: 'Streaming synthesis starts playing audio in under 300 ms' },
  { id: 'doc_formats', text: 'Transcription accepts wav mp3 and ogg audio up to ten minutes' },
  { id: 'doc_agents', text: 'Agents combine speech recognition a language model and synthesis' },
]

/**
 * The most a request can cost, from its declared body size: a JSON body of n bytes carries at
 * most n characters of text. Without a `Content-Length` (a chunked body), the route's maximum.
 */
function fromBodySize(charsPerCredit: number, max: number, factor = 1) {
  return (r: TollboothRequest): number => {
    const bytes = Number(readHeader(r.headers, 'content-length'))
    if (!Number.isFinite(bytes) || bytes <= 0) return max
    return Math.min(max, Math.max(1, Math.ceil((bytes * factor) / charsPerCredit)))
  }
}

/** The body, validated; a bad one throws a 400 answer naming each field. */
async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const raw = await c.req.json().catch(() => undefined)
  const r = schema.safeParse(raw ?? {})
  if (r.success) return r.data
  const issues = r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }))
  const message = issues.map((i) => `${i.path || '(body)'}: ${i.message}`).join('; ')
  throw new BadRequest(`Invalid request body: ${message}`, issues)
}

/** A 400 thrown by a handler; `app.onError` in `app.ts` answers it as JSON. */
export class BadRequest extends Error {
  constructor(
    message: string,
    readonly issues: Array<{ path: string; message: string }>,
  ) {
    super(message)
  }
}

/** Registers the product routes on `app`. */
export function productRoutes(app: Hono, tb: Tollbooth): void {
  app.post(
    '/v1/synthesize',
    requireApiKey(tb, {
      category: 'tts',
      byok: true,
      cost: fromBodySize(PRICING.ttsCharsPerCredit, 50),
    }),
    async (c) => {
      const b = await body(c, synthesizeBody)
      const apiKey = c.get('apiKey')
      // The key to call the provider with: the caller's own, or ours (then it is charged).
      await apiKey.providerKey(b.provider)
      apiKey.report({
        provider: b.provider,
        cost: Math.max(1, Math.ceil(b.text.length / PRICING.ttsCharsPerCredit)),
      })
      return c.json({
        audio: `data:audio/wav;base64,${btoa(b.text.slice(0, 32))}`,
        characters: b.text.length,
        provider: b.provider,
        voiceId: b.voiceId,
      })
    },
  )

  app.post(
    '/v1/transcribe',
    requireApiKey(tb, { category: 'stt', byok: true, cost: 600 / PRICING.sttSecondsPerCredit }),
    async (c) => {
      const b = await body(c, transcribeBody)
      const apiKey = c.get('apiKey')
      await apiKey.providerKey(b.provider)
      apiKey.report({
        provider: b.provider,
        cost: Math.max(1, Math.ceil(b.durationSeconds / PRICING.sttSecondsPerCredit)),
      })
      const file = new URL(b.audioUrl).pathname.split('/').pop() || 'audio'
      return c.json({ text: `Transcript of ${file}`, durationSeconds: b.durationSeconds })
    },
  )

  app.post(
    '/v1/chat',
    requireApiKey(tb, {
      category: 'llm',
      byok: true,
      // The reply is about as long as the message: hold for both.
      cost: fromBodySize(PRICING.llmCharsPerCredit, 81, 2),
    }),
    async (c) => {
      const b = await body(c, chatBody)
      const apiKey = c.get('apiKey')
      await apiKey.providerKey(b.provider)
      const reply = `You said: ${b.message}`
      const chars = b.message.length + reply.length
      apiKey.report({
        provider: b.provider,
        cost: Math.max(1, Math.ceil(chars / PRICING.llmCharsPerCredit)),
      })
      return c.json({ reply, provider: b.provider })
    },
  )

  app.post(
    '/v1/rag/query',
    requireApiKey(tb, { category: 'rag', byok: ['openai'], cost: 2 }),
    async (c) => {
      const b = await body(c, ragBody)
      const apiKey = c.get('apiKey')
      // Embeddings come from OpenAI: the caller's own OpenAI key makes the query free.
      await apiKey.providerKey('openai')
      apiKey.report({ provider: 'openai' })
      const words = new Set(b.query.toLowerCase().match(/[a-z0-9]+/g) ?? [])
      const results = DOCUMENTS.map((d) => ({
        id: d.id,
        text: d.text,
        score: d.text
          .toLowerCase()
          .split(' ')
          .filter((w) => words.has(w)).length,
      }))
        .filter((d) => d.score > 0)
        .sort((a, b) => b.score - a.score || a.id.localeCompare(b.id))
        .slice(0, b.topK)
      return c.json({ query: b.query, results })
    },
  )

  // Listing agents is free, but still needs a key (and counts against its rate limit).
  app.get('/v1/agents', requireApiKey(tb, { cost: 0 }), (c) =>
    c.json({
      data: [
        { id: 'agent_support', name: 'Support agent', voiceId: 'default' },
        { id: 'agent_sales', name: 'Sales agent', voiceId: 'warm' },
      ],
    }),
  )
}
