/**
 * @module examples/inference-api/anthropic-routes
 *
 * The Anthropic-compatible route, enough for the official `@anthropic-ai/sdk` pointed at this
 * server (`new Anthropic({ baseURL: 'http://localhost:3000', apiKey: 'sk_…' })`, which sends
 * the key in `x-api-key`): `POST /v1/messages`, plain or `stream: true` as server-sent
 * events. Metered like the OpenAI route: the prompt's tokens plus `max_tokens` held, the
 * reported tokens charged and counted against tpm. Errors are in Anthropic's shape (see
 * `errors.ts`).
 */

import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { TollboothRequest } from '../../src/index.js'
import { ApiError, dialectErrors } from './errors.js'
import { complete, countPrompt, MODELS, pieces, textOf } from './model.js'

const content = z.union([z.string(), z.array(z.looseObject({ type: z.string() }))])
const body = z.looseObject({
  model: z.string().min(1).max(200),
  max_tokens: z.number().int().positive(),
  messages: z
    .array(z.looseObject({ role: z.enum(['user', 'assistant']), content }))
    .min(1)
    .max(1000),
  system: content.optional(),
  stream: z.boolean().optional(),
})

function parse(value: unknown): z.output<typeof body> {
  const r = body.safeParse(value)
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  const path = issue.path.join('.')
  throw new ApiError(400, path ? `${path}: ${issue.message}` : issue.message, 'invalid_request')
}

const sse = (event: string, data: object) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const turnsOf = (b: z.output<typeof body>) => [
  ...(b.system !== undefined ? [{ role: 'system', content: textOf(b.system) }] : []),
  ...b.messages.map((m) => ({ role: m.role, content: textOf(m.content) })),
]

/** The most tokens (and credits) a request can use: its prompt plus its `max_tokens`. */
export function messagesEstimate(r: TollboothRequest): number {
  const b = body.safeParse(r.body)
  return b.success ? countPrompt(turnsOf(b.data)) + b.data.max_tokens : 0
}

/** Registers the route in its own context (for the error shape); mount with prefix `/v1`. */
export function anthropicRoutes() {
  return async function anthropic(v1: FastifyInstance) {
    dialectErrors(v1, 'anthropic')

    v1.post(
      '/messages',
      {
        config: {
          tollbooth: { cost: messagesEstimate, tokens: messagesEstimate, category: 'messages' },
        },
      },
      async (request, reply) => {
        const b = parse(request.body)
        if (!(MODELS as readonly string[]).includes(b.model))
          throw new ApiError(404, `model: ${b.model}`, 'not_found')
        const out = complete(turnsOf(b), b.max_tokens)
        const tokens = out.promptTokens + out.completionTokens
        request.apiKey.report({ tokens, cost: tokens })
        const id = `msg_${request.apiKey.requestId}`
        const stop = out.finish === 'length' ? 'max_tokens' : 'end_turn'
        const usage = { input_tokens: out.promptTokens, output_tokens: out.completionTokens }
        const message = {
          id,
          type: 'message',
          role: 'assistant',
          model: b.model,
          content: [{ type: 'text', text: out.text }],
          stop_reason: stop,
          stop_sequence: null,
          usage,
        }
        if (!b.stream) return message
        const events = [
          sse('message_start', {
            type: 'message_start',
            message: {
              ...message,
              content: [],
              stop_reason: null,
              usage: { ...usage, output_tokens: 0 },
            },
          }),
          sse('content_block_start', {
            type: 'content_block_start',
            index: 0,
            content_block: { type: 'text', text: '' },
          }),
          ...pieces(out.text).map((text) =>
            sse('content_block_delta', {
              type: 'content_block_delta',
              index: 0,
              delta: { type: 'text_delta', text },
            }),
          ),
          sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
          sse('message_delta', {
            type: 'message_delta',
            delta: { stop_reason: stop, stop_sequence: null },
            usage: { output_tokens: out.completionTokens },
          }),
          sse('message_stop', { type: 'message_stop' }),
        ]
        return reply
          .type('text/event-stream; charset=utf-8')
          .header('cache-control', 'no-cache')
          .send(events.join(''))
      },
    )
  }
}
