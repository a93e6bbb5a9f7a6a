/**
 * Seed 004's "DELETE /api/keys/:id permanently deletes a consumption key and revokes it",
 * for a key that was used too: every route answers 404 for it, it is refused at once and gone
 * from the list, and what it spent stays in the account's usage.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { type InferenceFixture, startInference } from './inference-fixture.js'

let fx: InferenceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

describe('inference-api example: deleted means deleted (004)', () => {
  it('deletes a used credit key: 404 on every route, refused, history kept for billing', async () => {
    fx = await startInference()
    const { api, session, topUp, chat, settles } = fx
    await topUp(10)
    const created = await api('POST', '/api/keys/credit', {
      token: session,
      json: { name: 'client_42' },
    })
    const { id, apiKey: sk } = created.body.data as { id: string; apiKey: string }
    expect((await chat(sk, 'Hello there')).status).toBe(200)
    await settles.idle()
    const used = (await api('GET', '/api/billing/status', { token: session })).body.data.credits
    expect(used.used).toBe(9)

    const del = await api('DELETE', `/api/keys/${id}`, { token: session })
    expect([del.status, del.body]).toEqual([200, { success: true, data: { deleted: true } }])

    expect((await chat(sk)).body.error.message).toBe('Invalid API Key')
    for (const [method, path, json] of [
      ['PUT', `/api/keys/${id}`, { isActive: true }],
      ['PUT', `/api/keys/${id}`, { name: 'back' }],
      ['GET', `/api/keys/${id}/logs`, undefined],
      ['DELETE', `/api/keys/${id}`, undefined],
    ] as const) {
      const r = await api(method, path, { token: session, ...(json ? { json } : {}) })
      expect([method, path, r.status, r.body.code]).toEqual([method, path, 404, 'not_found'])
    }
    expect((await chat(sk)).status).toBe(401)
    expect((await api('GET', '/api/keys', { token: session })).body.data).toEqual([])
    // The history stays: the account's usage still counts what the key spent.
    const after = (await api('GET', '/api/billing/status', { token: session })).body.data.credits
    expect(after.used).toBe(9)
    // The alias is free again.
    const again = await api('POST', '/api/keys/credit', {
      token: session,
      json: { name: 'client_42' },
    })
    expect(again.status).toBe(201)
  })

  it('deletes a used management key for good', async () => {
    fx = await startInference()
    const { api, session } = fx
    const created = await api('POST', '/api/keys/management', {
      token: session,
      json: { name: 'mgmt_key_01' },
    })
    const { id, apiKey: mk } = created.body.data as { id: string; apiKey: string }
    expect((await api('GET', '/api/keys', { token: mk })).status).toBe(200)
    const del = await api('DELETE', `/api/keys/management/${id}`, { token: session })
    expect(del.body).toEqual({ success: true, data: { deleted: true } })
    expect((await api('GET', '/api/keys', { token: mk })).status).toBe(401)
    expect((await api('GET', '/api/keys/management', { token: session })).body.data).toEqual([])
    expect((await api('DELETE', `/api/keys/management/${id}`, { token: session })).status).toBe(404)
  })
})
