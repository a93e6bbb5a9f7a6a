/**
 * The inference example streaming for real, driven by the official SDKs with `stream: true`:
 * the answer arrives in several chunks, and the account is charged exactly the tokens the
 * stream's final usage chunk reports (OpenAI's `include_usage` chunk, Anthropic's
 * `message_delta`), reported by the handler after its last chunk. A client that abandons the
 * stream is charged the tokens produced until then, settled once with 499.
 */

import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterEach, describe, expect, it } from 'vitest'
import { countTokens } from '../../examples/inference-api/app.js'
import type { Outcome } from '../../src/index.js'
import { type InferenceFixture, startInference, USER } from './inference-fixture.js'

let fx: InferenceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

const PROMPT = 'tell me a long story about streams of tokens arriving one by one'

/** A started example with $10 of credit, a credit key, and the outcomes it settles with. */
async function withKey() {
  fx = await startInference()
  await fx.topUp(10)
  const key = await fx.creditKey()
  const outcomes: Outcome[] = []
  const settle = fx.tb.settle
  fx.tb.settle = (decision, outcome) => {
    outcomes.push(outcome)
    return settle(decision, outcome)
  }
  return { ...fx, key, outcomes }
}

describe('inference-api example streaming with the openai SDK', () => {
  it('charges the tokens of the final usage chunk', async () => {
    const { key, served, settles, tb, outcomes } = await withKey()
    const openai = new OpenAI({ apiKey: key, baseURL: `${served.url}/v1`, maxRetries: 0 })
    const stream = await openai.chat.completions.create({
      model: 'echo-1',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
      stream_options: { include_usage: true },
    })
    let text = ''
    let contentChunks = 0
    let usage: OpenAI.CompletionUsage | undefined
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content
      if (piece) contentChunks++
      text += piece ?? ''
      if (chunk.usage) usage = chunk.usage
    }
    expect(text).toBe(`Echo: ${PROMPT}`)
    expect(contentChunks).toBe(PROMPT.split(' ').length + 1)
    expect(usage).toEqual({
      prompt_tokens: countTokens(PROMPT) + 3,
      completion_tokens: countTokens(text),
      total_tokens: countTokens(PROMPT) + 3 + countTokens(text),
    })
    await settles.idle()
    expect((await tb.usage.get(USER)).credits.used).toBe(usage!.total_tokens)
    expect(outcomes).toMatchObject([{ status: 200, outcome: 'completed' }])
  })

  it('charges an abandoned stream the tokens produced until then, settled once with 499', async () => {
    const { key, served, settles, tb, outcomes } = await withKey()
    const openai = new OpenAI({ apiKey: key, baseURL: `${served.url}/v1`, maxRetries: 0 })
    const stream = await openai.chat.completions.create({
      model: 'echo-1',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    })
    let received = 0
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) received++
      if (received === 3) {
        stream.controller.abort()
        break
      }
    }
    // The handler's report, made when Fastify destroys its stream, settles the request.
    for (let i = 0; i < 200 && outcomes.length === 0; i++)
      await new Promise((r) => setTimeout(r, 5))
    await settles.idle()
    expect(outcomes).toHaveLength(1)
    expect(outcomes[0]).toMatchObject({ status: 499, outcome: 'aborted' })
    const used = (await tb.usage.get(USER)).credits.used
    const prompt = countTokens(PROMPT) + 3
    const whole = prompt + countTokens(`Echo: ${PROMPT}`)
    // The prompt and at least the 3 pieces received ('Echo:' is 2 tokens), not the whole answer.
    expect(used).toBeGreaterThanOrEqual(prompt + 4)
    expect(used).toBeLessThan(whole)
  })
})

describe('inference-api example streaming with the @anthropic-ai/sdk SDK', () => {
  it('charges the tokens of the final message_delta usage', async () => {
    const { key, served, settles, tb, outcomes } = await withKey()
    const anthropic = new Anthropic({ apiKey: key, baseURL: served.url, maxRetries: 0 })
    const stream = await anthropic.messages.create({
      model: 'echo-1',
      max_tokens: 100,
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    })
    let text = ''
    let deltas = 0
    let final: Anthropic.MessageDeltaUsage | undefined
    for await (const event of stream) {
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') {
        deltas++
        text += event.delta.text
      }
      if (event.type === 'message_delta') final = event.usage
    }
    expect(text).toBe(`Echo: ${PROMPT}`)
    expect(deltas).toBe(PROMPT.split(' ').length + 1)
    expect(final).toMatchObject({
      input_tokens: countTokens(PROMPT) + 3,
      output_tokens: countTokens(text),
    })
    await settles.idle()
    expect((await tb.usage.get(USER)).credits.used).toBe(
      final!.input_tokens! + final!.output_tokens,
    )
    expect(outcomes).toMatchObject([{ status: 200, outcome: 'completed' }])
  })
})
