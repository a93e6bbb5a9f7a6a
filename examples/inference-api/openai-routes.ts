/**
 * @module examples/inference-api/openai-routes
 *
 * The OpenAI-compatible routes, enough for the official `openai` SDK pointed at this server
 * (`new OpenAI({ baseURL: 'http://localhost:3000/v1', apiKey: 'sk_…' })`):
 * `POST /v1/chat/completions` (plain or `stream: true` as server-sent events) and
 * `GET /v1/models`. Each request holds what it can use at most, its prompt's tokens plus its
 * `max_tokens` (as credits, 1 per token, and against the key's tpm) while it runs; the handler
 * reports the tokens it used, which are charged and counted, the rest given back. Errors are
 * in OpenAI's shape (see `errors.ts`).
 */

import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { Tollbooth, TollboothRequest } from '../../src/index.js'
import { ApiError, dialectErrors } from './errors.js'
import { complete, countPrompt, MODELS, pieces, textOf } from './model.js'
import { DEFAULT_MAX_TOKENS } from './plans.js'

const body = z.looseObject({
  model: z.string().min(1).max(200),
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
        content: z.union([z.string(), z.array(z.looseObject({})), z.null()]).optional(),
      }),
    )
    .min(1)
    .max(1000),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
})

/** The body, or a 400 naming the first bad parameter, as OpenAI does. */
function parse(value: unknown): z.output<typeof body> {
  const r = body.safeParse(value)
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  const param = issue.path.join('.') || null
  throw new ApiError(
    400,
    param ? `Invalid value for '${param}': ${issue.message}` : `Invalid body: ${issue.message}`,
    'invalid_value',
    param,
  )
}

const turnsOf = (b: z.output<typeof body>) =>
  b.messages.map((m) => ({ role: m.role, content: textOf(m.content) }))
const maxTokensOf = (b: z.output<typeof body>) =>
  b.max_completion_tokens ?? b.max_tokens ?? DEFAULT_MAX_TOKENS

/**
 * The most tokens (and credits) a request can use: its prompt plus its `max_tokens`. A body
 * the route will refuse (400) holds nothing.
 */
export function chatEstimate(r: TollboothRequest): number {
  const b = body.safeParse(r.body)
  return b.success ? countPrompt(turnsOf(b.data)) + maxTokensOf(b.data) : 0
}

/** Registers the routes in their own context (for the error shape); mount with prefix `/v1`. */
export function openAiRoutes(tb: Tollbooth) {
  const now = () => tb.options.clock?.now() ?? Date.now()

  return async function openAi(v1: FastifyInstance) {
    dialectErrors(v1, 'openai')

    v1.get('/models', { config: { tollbooth: {} } }, async () => ({
      object: 'list',
      data: MODELS.map((id) => ({ id, object: 'model', created: 1767225600, owned_by: 'example' })),
    }))

    v1.post(
      '/chat/completions',
      { config: { tollbooth: { cost: chatEstimate, tokens: chatEstimate, category: 'chat' } } },
      async (request, reply) => {
        const b = parse(request.body)
        if (!(MODELS as readonly string[]).includes(b.model))
          throw new ApiError(
            404,
            `The model '${b.model}' does not exist or you do not have access to it.`,
            'model_not_found',
            'model',
          )
        const out = complete(turnsOf(b), maxTokensOf(b))
        const usage = {
          prompt_tokens: out.promptTokens,
          completion_tokens: out.completionTokens,
          total_tokens: out.promptTokens + out.completionTokens,
        }
        // What is charged and counted against tpm: the tokens this response reports.
        request.apiKey.report({ tokens: usage.total_tokens, cost: usage.total_tokens })
        const head = {
          id: `chatcmpl-${request.apiKey.requestId}`,
          created: Math.floor(now() / 1000),
          model: b.model,
        }
        if (!b.stream) {
          return {
            ...head,
            object: 'chat.completion',
            choices: [
              {
                index: 0,
                message: { role: 'assistant', content: out.text, refusal: null },
                logprobs: null,
                finish_reason: out.finish,
              },
            ],
            usage,
          }
        }
        // The stand-in answers at once, so the whole stream is written in one go.
        const chunk = (delta: object, finish: string | null) => ({
          ...head,
          object: 'chat.completion.chunk',
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        })
        const events: object[] = [chunk({ role: 'assistant', content: '' }, null)]
        for (const p of pieces(out.text)) events.push(chunk({ content: p }, null))
        events.push(chunk({}, out.finish))
        if (b.stream_options?.include_usage)
          events.push({ ...head, object: 'chat.completion.chunk', choices: [], usage })
        const sse = events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')
        return reply
          .type('text/event-stream; charset=utf-8')
          .header('cache-control', 'no-cache')
          .send(`${sse}data: [DONE]\n\n`)
      },
    )
  }
}
