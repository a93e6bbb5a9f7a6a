/**
 * The inference example driven by the official SDKs, `openai` and `@anthropic-ai/sdk`, with
 * `baseURL` pointed at the example on 127.0.0.1: answers parse into the SDK's types, a wrong
 * key raises `AuthenticationError`, a rate-limited key `RateLimitError` after the SDK has
 * waited the `Retry-After` the server sent and tried again, and the account is charged the
 * tokens the answer reports.
 *
 * The tollbooth clock is a manual one, so the window does not move while the SDK waits its
 * real second: its retry is refused again, and the error reaches the caller.
 */

import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterEach, describe, expect, it } from 'vitest'
import { countTokens } from '../../examples/inference-api/app.js'
import { type InferenceFixture, startInference, USER } from './inference-fixture.js'

let fx: InferenceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

/** Real fetch, counting the requests the SDK makes and when. */
function countingFetch() {
  const calls: number[] = []
  const f: typeof fetch = (input, init) => {
    calls.push(Date.now())
    return fetch(input, init)
  }
  return { fetch: f, calls }
}

/** A started example with $10 of credit and a credit key. */
async function withKey() {
  fx = await startInference()
  await fx.topUp(10)
  const key = await fx.creditKey()
  return { ...fx, key }
}

/** A key allowed one request a second, already used once. */
async function spentKey(f: InferenceFixture) {
  await f.topUp(10)
  const { key } = await f.tb.keys.create({
    accountId: USER,
    name: 'tiny',
    limits: { rateLimits: [{ limit: 1, windowMs: 1000 }] },
  })
  expect((await f.chat(key)).status).toBe(200)
  return key
}

describe('inference-api example with the openai SDK', () => {
  it('completes a chat and is charged the tokens it reports', async () => {
    const { key, served, settles, tb } = await withKey()
    const openai = new OpenAI({ apiKey: key, baseURL: `${served.url}/v1`, maxRetries: 0 })
    const res = await openai.chat.completions.create({
      model: 'echo-1',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hello from the SDK' },
      ],
    })
    expect(res.choices[0]!.message.content).toBe('Echo: Hello from the SDK')
    expect(res.choices[0]!.finish_reason).toBe('stop')
    const prompt = countTokens('You are terse.') + countTokens('Hello from the SDK') + 2 * 3
    expect(res.usage).toEqual({
      prompt_tokens: prompt,
      completion_tokens: countTokens('Echo: Hello from the SDK'),
      total_tokens: prompt + 6,
    })
    // The raw response carries the usage headers.
    const raw = await openai.chat.completions
      .create({ model: 'echo-1', messages: [{ role: 'user', content: 'again' }], max_tokens: 1 })
      .withResponse()
    expect(raw.data.choices[0]!.finish_reason).toBe('length')
    expect(raw.data.usage!.completion_tokens).toBe(1)
    expect(raw.response.headers.get('x-usage-bypassed')).toBe('false')

    await settles.idle()
    const usage = await tb.usage.get(USER)
    const charged = res.usage!.total_tokens + raw.data.usage!.total_tokens
    expect(usage.credits.used).toBe(charged)
    expect(usage.breakdown).toEqual({ chat: charged })
    expect((await openai.models.list()).data.map((m) => m.id)).toEqual(['echo-1', 'echo-1-mini'])
  })

  it('streams a completion with usage', async () => {
    const { key, served, settles, tb } = await withKey()
    const openai = new OpenAI({ apiKey: key, baseURL: `${served.url}/v1`, maxRetries: 0 })
    const stream = await openai.chat.completions.create({
      model: 'echo-1',
      messages: [{ role: 'user', content: 'stream me please' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    let text = ''
    let total = 0
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      if (chunk.usage) total = chunk.usage.total_tokens
    }
    expect(text).toBe('Echo: stream me please')
    expect(total).toBe(countTokens('stream me please') + 3 + countTokens(text))
    await settles.idle()
    expect((await tb.usage.get(USER)).credits.used).toBe(total)
  })

  it('raises AuthenticationError for a wrong key, NotFoundError for an unknown model', async () => {
    const { key, served } = await withKey()
    const wrong = new OpenAI({ apiKey: 'sk_wrong', baseURL: `${served.url}/v1`, maxRetries: 0 })
    const err = await wrong.chat.completions
      .create({ model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(err).toMatchObject({ status: 401, code: 'invalid_api_key' })
    expect((err as Error).message).toContain('Invalid API Key')
    const openai = new OpenAI({ apiKey: key, baseURL: `${served.url}/v1`, maxRetries: 0 })
    const missing = await openai.chat.completions
      .create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError)
    expect(missing).toMatchObject({ code: 'model_not_found', param: 'model' })
  })

  it('raises RateLimitError after honouring Retry-After', async () => {
    fx = await startInference()
    const key = await spentKey(fx)
    const counting = countingFetch()
    const openai = new OpenAI({
      apiKey: key,
      baseURL: `${fx.served.url}/v1`,
      maxRetries: 1,
      fetch: counting.fetch,
    })
    const err = await openai.chat.completions
      .create({ model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.RateLimitError)
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).headers.get('retry-after')).toBe('1')
    expect(counting.calls).toHaveLength(2)
    expect(counting.calls[1]! - counting.calls[0]!).toBeGreaterThanOrEqual(950)
  })
})

describe('inference-api example with the @anthropic-ai/sdk SDK', () => {
  it('creates a message (key in x-api-key) and is charged the tokens it reports', async () => {
    const { key, served, settles, tb } = await withKey()
    const anthropic = new Anthropic({ apiKey: key, baseURL: served.url, maxRetries: 0 })
    const msg = await anthropic.messages.create({
      model: 'echo-1',
      max_tokens: 100,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'Hello Claude-compatible API' }],
    })
    expect(msg.content).toEqual([{ type: 'text', text: 'Echo: Hello Claude-compatible API' }])
    expect(msg.stop_reason).toBe('end_turn')
    const input = countTokens('Be brief.') + countTokens('Hello Claude-compatible API') + 6
    expect(msg.usage).toMatchObject({ input_tokens: input, output_tokens: 7 })

    const stream = anthropic.messages.stream({
      model: 'echo-1',
      max_tokens: 3,
      messages: [{ role: 'user', content: 'one two three four' }],
    })
    const final = await stream.finalMessage()
    expect(final.content).toEqual([{ type: 'text', text: 'Echo: one' }])
    expect(final.stop_reason).toBe('max_tokens')
    expect(final.usage.output_tokens).toBe(3)

    await settles.idle()
    const charged = input + 7 + final.usage.input_tokens + 3
    const usage = await tb.usage.get(USER)
    expect(usage.credits.used).toBe(charged)
    expect(usage.breakdown).toEqual({ messages: charged })
  })

  it('raises AuthenticationError for a wrong key and RateLimitError after Retry-After', async () => {
    fx = await startInference()
    const wrong = new Anthropic({ apiKey: 'sk_wrong', baseURL: fx.served.url, maxRetries: 0 })
    const err = await wrong.messages
      .create({ model: 'echo-1', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError)
    expect((err as Error).message).toContain('Invalid API Key')

    const key = await spentKey(fx)
    const counting = countingFetch()
    const anthropic = new Anthropic({
      apiKey: key,
      baseURL: fx.served.url,
      maxRetries: 1,
      fetch: counting.fetch,
    })
    const limited = await anthropic.messages
      .create({ model: 'echo-1', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    expect(limited).toBeInstanceOf(Anthropic.RateLimitError)
    expect(counting.calls).toHaveLength(2)
    expect(counting.calls[1]! - counting.calls[0]!).toBeGreaterThanOrEqual(950)
  })
})
