/**
 * The inference API example (`examples/inference-api`, Fastify) against the limits of
 * `004_8209d5d9c76b9400.txt` (rpm, tpm counted from reported tokens, per-key budget, shared
 * balance) and the rules of `002_2f2523503321cfc2.txt` (rolling quotas answering 401, plan
 * limits 429, aliases, expiry, request logs, exact error strings, IP blocking), over real HTTP
 * on a manual clock.
 */

import { afterEach, describe, expect, it } from 'vitest'
import type { TollboothOptions } from '../../src/index.js'
import { DAY, repeat } from './http.js'
import { type InferenceFixture, startInference, T0, USER, words } from './inference-fixture.js'

let fx: InferenceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

async function start(options: { failedAuth?: TollboothOptions['failedAuth'] } = {}) {
  fx = await startInference(options)
  return fx
}

const HOUR = 3_600_000

describe('inference-api example: 004 credit keys', () => {
  it('limits a key per minute (rpm) and per minute in tokens (tpm)', async () => {
    const { topUp, creditKey, chat, clock } = await start()
    await topUp(10)
    const slow = await creditKey({ rpm: 5 })
    const burst = await repeat(6, () => chat(slow))
    expect(burst.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429])
    expect(burst[5]!.body.error).toMatchObject({
      message: 'Rate limit exceeded: per-minute rate limit of this key',
      code: 'rate_limited',
    })
    expect(burst[5]!.headers.get('retry-after')).toBe('12')

    // tpm 120: a request that may use 105 tokens (a 53-token prompt, max_tokens 52) fits once;
    // its reservation leaves no room for the next until 90 tokens have drained.
    clock.advance(60_000)
    const tpm = await creditKey({ tpm: 120 })
    const tokens = await repeat(3, () => chat(tpm, words(50), { max_tokens: 52 }))
    expect(tokens.map((r) => r.status)).toEqual([200, 429, 429])
    expect(tokens[0]!.body.usage.total_tokens).toBe(105)
    expect(tokens[2]!.body.error.message).toBe(
      'Rate limit exceeded: per-minute-tokens rate limit of this key',
    )
    expect(Number(tokens[2]!.headers.get('retry-after'))).toBeGreaterThan(0)
  })

  it('caps each credit key at its maxBudget', async () => {
    const { api, session, topUp, creditKey, chat } = await start()
    await topUp(3)
    // maxBudget $0.002 = 200 credits: 105 are held and charged, then 105 more cannot be held.
    const capped = await creditKey({ name: 'capped', maxBudget: 0.002 })
    const capRun = await repeat(2, () => chat(capped, words(50), { max_tokens: 52 }))
    expect(capRun.map((r) => r.status)).toEqual([200, 402])
    expect(capRun[1]!.body.error).toMatchObject({
      message: 'Insufficient credits: key budget exhausted',
      type: 'insufficient_quota',
    })
    const listed = await api('GET', '/api/keys', { token: session })
    expect(listed.body.data[0]).toMatchObject({ name: 'capped', maxBudget: 0.002 })
    // Another key of the account is not held back by it.
    expect(
      (await chat(await creditKey({ name: 'free' }), words(50), { max_tokens: 52 })).status,
    ).toBe(200)
  })

  it('shares the account balance across its credit keys', async () => {
    const { tb, creditKey, chat } = await start()
    await tb.accounts.addCredits(USER, 300)
    const a = await creditKey({ name: 'a' })
    const b = await creditKey({ name: 'b' })
    const fifty = { max_tokens: 52 }
    expect((await chat(a, words(50), fifty)).status).toBe(200)
    expect((await chat(b, words(50), fifty)).status).toBe(200)
    // 210 of 300 used: the 105 credits a request holds no longer fit, for either key.
    const broke = await chat(a, words(50), fifty)
    expect([broke.status, broke.body.error.message]).toEqual([402, 'Insufficient credits'])
    // 'hi' with the default max_tokens (256) may use 260: it does not fit either.
    expect((await chat(b, 'hi')).status).toBe(402)
  })

  it('answers a reached rolling quota with 401 and plan-wide limits with 429 (002)', async () => {
    const { topUp, creditKey, chat, clock } = await start()
    await topUp(10)
    const key = await creditKey({ quotas: { daily: 2 } })
    const day = await repeat(3, () => chat(key))
    expect(day.map((r) => r.status)).toEqual([200, 200, 401])
    expect(day[2]!.body.error.message).toBe('Rate limit exceeded: quota daily')
    clock.advance(DAY + HOUR)
    expect((await chat(key)).status).toBe(200)

    // The plan allows 10 requests a second across all of the account's keys.
    clock.advance(60_000)
    const k1 = await creditKey({ name: 'k1', rpm: 100 })
    const k2 = await creditKey({ name: 'k2', rpm: 100 })
    const second = [...(await repeat(5, () => chat(k1))), ...(await repeat(6, () => chat(k2)))]
    expect(second.slice(0, 10).every((r) => r.status === 200)).toBe(true)
    expect(second[10]!.status).toBe(429)
    expect(second[10]!.body.error.message).toBe(
      'exceeded the per-second rate limit on your subscription',
    )
    expect(second[10]!.headers.get('retry-after')).toBe('1')
  })

  it('answers the plan per-minute cap with its own message (002): 10 a second, 120 a minute', async () => {
    const { topUp, creditKey, chat, clock } = await start()
    await topUp(10)
    const key = await creditKey({ rpm: 10_000 })
    // 10 a second, each second: the per-second cap always lets the next ten through, the
    // per-minute one runs out.
    const answers = []
    for (let s = 0; s < 30; s++) {
      answers.push(...(await repeat(10, () => chat(key))))
      if (answers.at(-1)!.status !== 200) break
      clock.advance(1_000)
    }
    const refused = answers.findIndex((r) => r.status !== 200)
    expect(refused).toBeGreaterThanOrEqual(120)
    const r = answers[refused]!
    expect([r.status, r.body.error.message]).toEqual([
      429,
      'exceeded the per-minute rate limit on your subscription',
    ])
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(r.headers.get('x-ratelimit-limit')).toBe('120')
    // Half a second later the minute has room for one more (120 a minute: one per 500 ms).
    clock.advance(500)
    expect((await chat(key)).status).toBe(200)
  })
})

describe('inference-api example: 002 logs, errors and IP blocking', () => {
  it('logs every request of a key: endpoint, status, duration, IP, credits', async () => {
    const { api, session, topUp, creditKey, chat, settles } = await start()
    await topUp(10)
    const key = await creditKey()
    const id = (await api('GET', '/api/keys', { token: session })).body.data[0].id
    expect((await chat(key, 'Hello there')).status).toBe(200)
    const bad = await api('POST', '/v1/chat/completions', {
      token: key,
      json: { model: 'echo-1', messages: [] },
    })
    expect([bad.status, bad.body.error.param]).toEqual([400, 'messages'])
    const unknown = await chat(key, 'hi', { model: 'gpt-5' })
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'model_not_found'])
    await settles.idle()
    const logs = await api('GET', `/api/keys/${id}/logs`, { token: session })
    expect(logs.body.data.logs).toEqual([
      expect.objectContaining({ endpoint: 'POST /v1/chat/completions', status: 404, credits: 0 }),
      expect.objectContaining({ status: 400, credits: 0, ip: '127.0.0.1' }),
      {
        time: new Date(T0).toISOString(),
        alias: 'client_1',
        keyCategory: 'production',
        category: 'chat',
        endpoint: 'POST /v1/chat/completions',
        status: 200,
        // Measured by the Fastify adapter on the test's manual clock, which stands still.
        ttfbMs: 0,
        durationMs: 0,
        code: null,
        ip: '127.0.0.1',
        credits: 9,
        tokens: 9,
      },
    ])
    const page = await api('GET', `/api/keys/${id}/logs?limit=1`, { token: session })
    expect(page.body.data.logs).toHaveLength(1)
    expect(page.body.data.nextCursor).toEqual(expect.any(String))
  })

  it('keeps aliases unique and stops a credit key at its expiry', async () => {
    const { api, session, topUp, creditKey, chat, clock } = await start()
    await topUp(10)
    const key = await creditKey({
      name: 'ci',
      category: 'staging',
      expiresAt: new Date(T0 + DAY).toISOString(),
    })
    const twin = await api('POST', '/api/keys/credit', { token: session, json: { name: 'ci' } })
    expect([twin.status, twin.body]).toEqual([
      409,
      { success: false, error: 'A key named "ci" already exists', code: 'conflict' },
    ])
    const other = await creditKey({ name: 'other' })
    const keys = (await api('GET', '/api/keys', { token: session })).body.data
    const otherId = keys.find((k: { name: string }) => k.name === 'other').id
    const rename = await api('PUT', `/api/keys/${otherId}`, {
      token: session,
      json: { name: 'ci' },
    })
    expect([rename.status, rename.body.code]).toEqual([409, 'conflict'])
    // The rule lives in tb.keys (one check at a time per account), not in a look-before-create.
    const race = await Promise.all(
      [1, 2, 3, 4].map(() =>
        api('POST', '/api/keys/credit', { token: session, json: { name: 'racer' } }),
      ),
    )
    expect(race.map((r) => r.status).sort()).toEqual([201, 409, 409, 409])
    expect((await chat(key)).status).toBe(200)
    clock.advance(DAY)
    const expired = await chat(key)
    expect([expired.status, expired.body.error]).toEqual([
      401,
      {
        message: 'Expired API Key',
        type: 'invalid_request_error',
        param: null,
        code: 'expired_api_key',
      },
    ])
    expect((await chat(other)).status).toBe(200)
    const list = (await api('GET', '/api/keys', { token: session })).body.data
    expect(list.find((k: { name: string }) => k.name === 'ci')).toMatchObject({
      category: 'staging',
      isActive: false,
      expiresAt: new Date(T0 + DAY).toISOString(),
    })
  })

  it('answers in the Anthropic shape on /v1/messages', async () => {
    const { api, topUp, creditKey } = await start()
    await topUp(10)
    const key = await creditKey()
    const wrong = await api('POST', '/v1/messages', {
      headers: { 'x-api-key': 'sk_not_a_real_key' },
      json: { model: 'echo-1', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] },
    })
    expect([wrong.status, wrong.body]).toEqual([
      401,
      { type: 'error', error: { type: 'authentication_error', message: 'Invalid API Key' } },
    ])
    const bad = await api('POST', '/v1/messages', {
      headers: { 'x-api-key': key },
      json: { model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] },
    })
    expect([bad.status, bad.body.error.type]).toEqual([400, 'invalid_request_error'])
    expect(bad.body.error.message).toMatch(/^max_tokens:/)
  })

  it('blocks an IP after repeated failed authentication (403 IP temporarily blocked)', async () => {
    const { chat, topUp, creditKey, clock } = await start({
      failedAuth: { limit: 3, windowMs: 60_000, blockMs: 60_000 },
    })
    await topUp(10)
    const key = await creditKey()
    const attempts = await repeat(3, () => chat('sk_guessed_key_0000000000000000000'))
    expect(attempts.map((r) => r.status)).toEqual([401, 401, 403])
    expect(attempts[2]!.body.error.message).toBe('IP temporarily blocked')
    // Even a valid key is refused from that IP until the block ends.
    expect((await chat(key)).status).toBe(403)
    clock.advance(60_001)
    expect((await chat(key)).status).toBe(200)
  })
})

// Last in the file: request ids (which order events of the same instant) run on one counter.
describe('inference-api example: estimates bound the charge', () => {
  it('never serves beyond the balance: two 400k-token prompts on a $5 key (issue 20 item 5)', async () => {
    const { tb, topUp, creditKey, chat } = await start()
    await topUp(5)
    const key = await creditKey({ name: 'big' })
    // 400,000 one-token characters: the estimate is the prompt (400,003 with the turn's
    // overhead) plus the default max_tokens (256), held before the model runs.
    const prompt = '!'.repeat(400_000)
    const both = await Promise.all([chat(key, prompt), chat(key, prompt)])
    expect(both.map((r) => r.status).sort()).toEqual([200, 402])
    const ok = both.find((r) => r.status === 200)!
    expect(ok.body.usage.total_tokens).toBe(400_259)
    await fx!.settles.idle()
    const credits = (await tb.accounts.get(USER)).credits
    expect(credits).toEqual({ used: 400_259, limit: 500_000, remaining: 99_741 })
    // A third cannot be held either: the balance is never exceeded.
    expect((await chat(key, prompt)).status).toBe(402)
  })
})
