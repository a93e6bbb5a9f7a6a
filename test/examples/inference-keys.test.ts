/**
 * The inference API example (`examples/inference-api`, Fastify) against the curl flows of
 * `004_8209d5d9c76b9400.txt` for its keys: `/api/keys*` with a session token and with a
 * management key, credit keys and their shared balance, pool (subscription) keys with their
 * time blocks, concurrency and expiry, over real HTTP on a manual clock.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { CREDITS_PER_USD } from '../../examples/inference-api/app.js'
import { type Admission, NotFoundError, type TollboothOptions } from '../../src/index.js'
import { DAY, ISO } from './http.js'
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

describe('inference-api example: 004 management', () => {
  it('replays the curl lines with a session token and with a management key', async () => {
    const { api, session, topUp, chat, tb, settles } = await start()
    // GET /api/keys
    expect((await api('GET', '/api/keys', { token: session })).body).toEqual({
      success: true,
      data: [],
    })
    // POST /api/keys/credit needs a credit balance > 0.
    const broke = await api('POST', '/api/keys/credit', {
      token: session,
      json: { name: 'client_42' },
    })
    expect([broke.status, broke.body]).toEqual([
      402,
      {
        success: false,
        error: 'Insufficient credit balance: top up first',
        code: 'insufficient_credits',
      },
    ])
    expect((await topUp(10)).body.data).toMatchObject({ balance: 10 })
    // curl -X POST /api/keys/credit -d '{"name": "client_42"}'
    const credit = await api('POST', '/api/keys/credit', {
      token: session,
      json: { name: 'client_42' },
    })
    expect(credit.status).toBe(201)
    expect(credit.body).toEqual({
      success: true,
      data: {
        id: expect.stringMatching(/^key_/),
        name: 'client_42',
        keyType: 'credit',
        apiKey: expect.stringMatching(/^sk_/),
        isActive: true,
        createdAt: new Date(T0).toISOString(),
      },
    })
    const sk = credit.body.data.apiKey as string

    // POST /api/keys/management {"name": "mgmt_key_01"}
    const created = await api('POST', '/api/keys/management', {
      token: session,
      json: { name: 'mgmt_key_01' },
    })
    expect(created.status).toBe(201)
    const mk = created.body.data.apiKey as string
    expect(created.body.data).toEqual({
      id: expect.stringMatching(/^key_/),
      name: 'mgmt_key_01',
      keyPrefix: mk.slice(0, 7),
      apiKey: expect.stringMatching(/^mk_/),
    })

    // The management key authenticates any /api/* route.
    const list = await api('GET', '/api/keys', { token: mk })
    expect(list.body).toEqual({
      success: true,
      data: [
        {
          id: credit.body.data.id,
          name: 'client_42',
          apiKey: `${sk.slice(0, 12)}...`,
          isActive: true,
          keyPlan: 'credits',
          keyType: 'credit',
          category: 'production',
          maxBudget: null,
          rpmLimit: 60,
          tpmLimit: null,
          quotas: null,
          expiresAt: null,
          createdAt: new Date(T0).toISOString(),
          lastUsedAt: null,
        },
      ],
    })
    expect(list.text).not.toContain(sk)
    const billing = await api('GET', '/api/billing/status', { token: mk })
    expect(billing.body).toMatchObject({ success: true, data: { balance: 10 } })
    const auto = await api('POST', '/api/keys/credit', {
      token: mk,
      json: { name: 'auto-created' },
    })
    expect(auto.status).toBe(201)

    // Management keys cannot be used for inference, nor consumption keys for management.
    const mkInference = await chat(mk)
    expect([mkInference.status, mkInference.body.error.message]).toEqual([
      403,
      'Management keys cannot be used on this route; use a consumption key',
    ])
    const skManagement = await api('GET', '/api/keys', { token: sk })
    expect([skManagement.status, skManagement.body.success]).toEqual([403, false])

    // Inference with the credit key, charged from the shared balance.
    const done = await chat(sk, 'Hello there')
    expect(done.status).toBe(200)
    expect(done.body.usage).toEqual({ prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })
    await settles.idle()
    const after = await api('GET', '/api/billing/status', { token: session })
    expect(after.body.data.credits).toEqual({
      used: 9,
      limit: 10 * CREDITS_PER_USD,
      remaining: 10 * CREDITS_PER_USD - 9,
    })
    await tb.flush() // lastUsedAt is written in batches
    const mgmtList = await api('GET', '/api/keys/management', { token: session })
    expect(mgmtList.body.data).toEqual([
      {
        id: created.body.data.id,
        name: 'mgmt_key_01',
        keyPrefix: mk.slice(0, 7),
        isActive: true,
        lastUsedAt: expect.stringMatching(ISO),
        createdAt: new Date(T0).toISOString(),
      },
    ])

    // PUT /api/keys/:id {"isActive": false}: refused at once; true: back.
    const id = credit.body.data.id as string
    const off = await api('PUT', `/api/keys/${id}`, { token: session, json: { isActive: false } })
    expect(off.body).toMatchObject({ success: true, data: { id, isActive: false } })
    const inactive = await chat(sk)
    expect([inactive.status, inactive.body.error]).toEqual([
      401,
      {
        message: 'Inactive API Key',
        type: 'invalid_request_error',
        param: null,
        code: 'inactive_api_key',
      },
    ])
    await api('PUT', `/api/keys/${id}`, { token: session, json: { isActive: true, name: 'prod' } })
    expect((await chat(sk)).status).toBe(200)
    const badPut = await api('PUT', `/api/keys/${id}`, { token: session, json: { active: false } })
    expect([badPut.status, badPut.body.success, badPut.body.code]).toEqual([
      400,
      false,
      'invalid_request',
    ])

    // DELETE /api/keys/:id -> { success, data: { deleted: true } }; a used key goes too.
    const del = await api('DELETE', `/api/keys/${id}`, { token: session })
    expect(del.body).toEqual({ success: true, data: { deleted: true } })
    expect((await chat(sk)).body.error.message).toBe('Invalid API Key')
    await expect(tb.keys.get(id)).rejects.toBeInstanceOf(NotFoundError)
    await api('DELETE', `/api/keys/${auto.body.data.id}`, { token: mk })
    await expect(tb.keys.get(auto.body.data.id)).rejects.toBeInstanceOf(NotFoundError)
    expect((await api('GET', '/api/keys', { token: session })).body.data).toEqual([])

    // Another user's key is not found; DELETE /api/keys/management/:id revokes the key.
    await tb.accounts.addCredits('user_2', 1_000)
    const theirs = await tb.keys.create({ accountId: 'user_2', name: 'theirs' })
    const other = await api('PUT', `/api/keys/${theirs.record.id}`, {
      token: session,
      json: { name: 'mine' },
    })
    expect([other.status, other.body.code]).toEqual([404, 'not_found'])
    const gone = await api('DELETE', `/api/keys/management/${created.body.data.id}`, {
      token: session,
    })
    expect(gone.body).toEqual({ success: true, data: { deleted: true } })
    expect((await api('GET', '/api/keys', { token: mk })).status).toBe(401)
    expect((await api('GET', '/api/keys')).status).toBe(401)
  })
})

describe('inference-api example: 004 pool keys', () => {
  it('answers 404 for a pool named like a member of Object.prototype, and subscribes to nothing', async () => {
    // Issue 20, item 14: `POOLS['constructor']` is `Object`, which passed the existence check;
    // the subscription got no time blocks and its key worked around the clock.
    const { api, session } = await start()
    for (const id of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const r = await api('POST', `/api/pools/${id}/subscribe`, {
        token: session,
        json: { days: 1 },
      })
      expect([r.status, r.body.success], id).toEqual([404, false])
      expect(r.body.error).toMatch(/^Pool not found/)
    }
    const key = await api('POST', '/api/keys/subscription', { token: session })
    expect([key.status, key.body.success]).toEqual([404, false])
  })

  it('mints keys for a subscription: time blocks, one request at a time, expiry', async () => {
    const { api, session, chat, clock, tb, settles } = await start()
    const none = await api('POST', '/api/keys/subscription', { token: session })
    expect([none.status, none.body.success]).toEqual([404, false])
    expect(none.body.error).toMatch(/POST \/api\/pools\/:id\/subscribe/)

    // Reserve the 08:00-16:00 block for 2 days, then POST /api/keys/subscription.
    const sub = await api('POST', '/api/pools/pool-day/subscribe', {
      token: session,
      json: { days: 2 },
    })
    expect(sub.status).toBe(201)
    expect(sub.body.data.blocks[0]).toEqual({
      start: '2026-01-20T08:00:00.000Z',
      end: '2026-01-20T16:00:00.000Z',
    })
    const wrong = await api('POST', '/api/keys/subscription', {
      token: session,
      json: { subscriptionId: 'sub_nope' },
    })
    expect(wrong.status).toBe(404)
    const minted = await api('POST', '/api/keys/subscription', {
      token: session,
      json: { subscriptionId: sub.body.data.id },
    })
    expect(minted.status).toBe(201)
    expect(minted.body).toEqual({
      success: true,
      data: {
        id: expect.stringMatching(/^key_/),
        apiKey: expect.stringMatching(/^sk_/),
        isActive: true,
      },
    })
    const pool = minted.body.data.apiKey as string

    // Unlimited during the block, and the user's credit balance (zero) is not touched.
    const ok = await chat(pool, words(50))
    expect(ok.status).toBe(200)
    expect(ok.headers.get('x-usage-limit')).toBe('unlimited')
    await settles.idle()
    expect((await tb.accounts.get(USER)).credits.used).toBe(0)

    // One request in flight per key: one held elsewhere makes the next wait (429).
    const held = (await tb.authenticate(
      { headers: { authorization: `Bearer ${pool}` }, ip: '10.0.0.9', method: 'POST', path: '/x' },
      tb.route({}),
    )) as Admission
    expect(held.allowed).toBe(true)
    const busy = await chat(pool)
    expect([busy.status, busy.body.error.message]).toEqual([
      429,
      'Too many concurrent requests: at most 1 in flight for this key',
    ])
    await tb.settle(held, { status: 200 })
    expect((await chat(pool)).status).toBe(200)

    // Outside the reserved block: 403; inside the next day's: served.
    clock.set(Date.UTC(2026, 0, 20, 17))
    const outside = await chat(pool)
    expect([outside.status, outside.body.error.message]).toEqual([
      403,
      'This key can only be used during its reserved time blocks',
    ])
    clock.set(Date.UTC(2026, 0, 21, 9))
    expect((await chat(pool)).status).toBe(200)

    // The key expires with its subscription (2 days after it began).
    clock.set(T0 + 2 * DAY)
    const expired = await chat(pool)
    expect([expired.status, expired.body.error.message]).toEqual([401, 'Expired API Key'])
    const list = await api('GET', '/api/keys', { token: session })
    expect(list.body.data).toEqual([
      expect.objectContaining({
        keyPlan: 'pool',
        keyType: 'subscription',
        isActive: false,
        subscriptionId: sub.body.data.id,
        subscriptionStatus: 'expired',
        subscriptionExpiresAt: new Date(T0 + 2 * DAY).toISOString(),
      }),
    ])
  })
})
