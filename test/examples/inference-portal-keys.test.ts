/**
 * Keys made in the developer portal follow the rules of keys made through the dashboard API
 * (`004_8209d5d9c76b9400.txt`): a credit key needs a balance > 0 and gets 60 rpm unless it
 * has its own; one rule (`consumptionKeyRule`, run by `tb.keys`) serves both paths.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { browserClient } from '../portal/servers.js'
import { repeat } from './http.js'
import { type InferenceFixture, startInference } from './inference-fixture.js'

let fx: InferenceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

describe('inference-api example: portal-made keys follow the API rules (004)', () => {
  it('refuses a portal credit key without a balance, and gives it 60 rpm with one', async () => {
    fx = await startInference()
    const { served, session, topUp, chat, api } = fx
    const browser = browserClient(served.url)
    expect((await browser.signIn(session)).status).toBe(200)

    // No balance: 402 from the portal as from POST /api/keys/credit.
    const broke = await browser.call('POST', '/api/keys', { json: { name: 'portal-key' } })
    expect([broke.status, broke.body]).toEqual([
      402,
      { error: 'Insufficient credit balance: top up first', code: 'insufficient_credits' },
    ])
    const viaApi = await api('POST', '/api/keys/credit', {
      token: session,
      json: { name: 'api-key' },
    })
    expect([viaApi.status, viaApi.body.error]).toEqual([
      402,
      'Insufficient credit balance: top up first',
    ])
    expect((await api('GET', '/api/keys', { token: session })).body.data).toEqual([])

    await topUp(10)
    const made = await browser.call('POST', '/api/keys', { json: { name: 'portal-key' } })
    expect(made.status).toBe(201)
    const key = made.body.key as string
    const listed = (await api('GET', '/api/keys', { token: session })).body.data
    expect(listed).toEqual([
      expect.objectContaining({
        id: made.body.id,
        name: 'portal-key',
        keyPlan: 'credits',
        keyType: 'credit',
        category: 'production',
        rpmLimit: 60,
      }),
    ])
    // The dashboard filters by category, in the portal as in the API (`002`).
    const prod = await browser.call('GET', '/api/keys?category=production')
    expect(prod.body.data.map((k: { id: string }) => k.id)).toEqual([made.body.id])
    expect((await browser.call('GET', '/api/keys?category=staging')).body.data).toEqual([])
    const apiProd = await api('GET', '/api/keys?category=production', { token: session })
    expect(apiProd.body.data.map((k: { id: string }) => k.id)).toEqual([made.body.id])
    const apiStaging = await api('GET', '/api/keys?category=staging', { token: session })
    expect(apiStaging.body.data).toEqual([])

    // Ten a second (the plan's per-second cap): the key's own 60 rpm runs out first.
    const answers = []
    for (let s = 0; s < 10; s++) {
      answers.push(...(await repeat(10, () => chat(key))))
      if (answers.at(-1)!.status !== 200) break
      fx.clock.advance(1_000)
    }
    const refused = answers.findIndex((r) => r.status !== 200)
    expect(refused).toBeGreaterThanOrEqual(60)
    expect([answers[refused]!.status, answers[refused]!.body.error.message]).toEqual([
      429,
      'Rate limit exceeded: per-minute rate limit of this key',
    ])
    expect(answers[refused]!.headers.get('x-ratelimit-limit')).toBe('60')

    // Its log carries the alias and the key's category, and filters by the request's.
    const logs = await api('GET', `/api/keys/${made.body.id}/logs?limit=2&category=chat`, {
      token: session,
    })
    expect(logs.status).toBe(200)
    expect(logs.body.data.logs).toHaveLength(2)
    for (const e of logs.body.data.logs)
      expect(e).toMatchObject({ alias: 'portal-key', keyCategory: 'production', category: 'chat' })
    const none = await api('GET', `/api/keys/${made.body.id}/logs?category=messages`, {
      token: session,
    })
    expect(none.body.data.logs).toEqual([])

    // The portal's usage, by the request's category or by the key's (`002`: "analytics").
    const ok = answers.filter((r) => r.status === 200).length
    const byRoute = await browser.call('GET', '/api/usage')
    expect(byRoute.body).toMatchObject({ groupBy: 'category', requests: { chat: ok } })
    const byKey = await browser.call('GET', '/api/usage?groupBy=keyCategory')
    expect(byKey.body).toMatchObject({
      groupBy: 'keyCategory',
      requests: { production: ok },
      requestCount: ok,
    })
    const staging = await browser.call('GET', '/api/usage?keyCategory=staging')
    expect([staging.body.requestCount, staging.body.breakdown]).toEqual([0, {}])
    const days = await browser.call('GET', '/api/usage/daily?groupBy=keyCategory')
    expect(days.body.categories).toEqual(['production'])
  })
})
