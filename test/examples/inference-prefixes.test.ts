/**
 * Several consumption prefixes in one instance (`004_8209d5d9c76b9400.txt`): credit keys
 * `sk_live_…` and pool keys `sk_pool_…`, each parsed and checksummed (a typo is refused with
 * no lookup), and a rotated key keeps its prefix.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createTollbooth, isWellFormedKey } from '../../src/internal.js'
import { type InferenceFixture, startInference } from './inference-fixture.js'

let fx: InferenceFixture | undefined
afterEach(async () => {
  await fx?.close()
  fx = undefined
})

/** `key` with one random character changed: the checksum no longer matches. */
const typo = (key: string, at: number) =>
  key.slice(0, at) + (key[at] === 'a' ? 'b' : 'a') + key.slice(at + 1)

describe('inference-api example: a prefix per type of consumption key (004)', () => {
  it('mints sk_live_ credit keys and sk_pool_ pool keys, both usable and checksummed', async () => {
    fx = await startInference()
    const { api, session, topUp, creditKey, chat, tb } = fx
    await topUp(10)
    const credit = await creditKey()
    expect(credit).toMatch(/^sk_live_[A-Za-z0-9]{33}$/)
    expect(isWellFormedKey(credit, 'sk_live_')).toBe(true)
    const sub = await api('POST', '/api/pools/pool-day/subscribe', {
      token: session,
      json: { days: 2 },
    })
    expect(sub.status).toBe(201)
    const minted = await api('POST', '/api/keys/subscription', { token: session })
    const pool = minted.body.data.apiKey as string
    expect(pool).toMatch(/^sk_pool_[A-Za-z0-9]{33}$/)
    expect(isWellFormedKey(pool, 'sk_pool_')).toBe(true)

    expect((await chat(credit)).status).toBe(200)
    expect((await chat(pool)).status).toBe(200)
    // A typo in either is refused by its checksum: 401, and no key is looked up.
    for (const key of [credit, pool]) {
      const r = await chat(typo(key, 12))
      expect([r.status, r.body.error.message]).toEqual([401, 'Invalid API Key'])
    }
    // The other prefix with the same random part fails the checksum too.
    const swapped = `sk_pool_${credit.slice('sk_live_'.length)}`
    expect((await chat(swapped)).status).toBe(401)

    // The list shows each key's own prefix; a rotated key keeps it.
    const listed = (await api('GET', '/api/keys', { token: session })).body.data
    expect(listed.map((k: { apiKey: string }) => k.apiKey.slice(0, 8)).sort()).toEqual([
      'sk_live_',
      'sk_pool_',
    ])
    const poolId = minted.body.data.id as string
    const rotated = await tb.keys.rotate(poolId)
    expect(rotated.key).toMatch(/^sk_pool_/)
  })

  it('refuses prefixes that overlap, and a prefix the instance does not issue', async () => {
    expect(() =>
      createTollbooth({
        secret: 'x'.repeat(32),
        prefixes: { consumption: ['sk_', 'sk_pool_'], management: 'mk_' },
      }),
    ).toThrow(/prefixes must not start with one another/)
    const tb = createTollbooth({
      secret: 'x'.repeat(32),
      prefixes: { consumption: ['sk_live_', 'sk_pool_'], management: 'mk_' },
    })
    await expect(tb.keys.create({ accountId: 'a', prefix: 'sk_test_' })).rejects.toMatchObject({
      status: 400,
      issues: [{ path: 'prefix', message: 'must be one of sk_live_, sk_pool_' }],
    })
    expect((await tb.keys.create({ accountId: 'a' })).key).toMatch(/^sk_live_/)
    expect((await tb.keys.create({ accountId: 'a', prefix: 'sk_pool_' })).key).toMatch(/^sk_pool_/)
    await tb.close()
  })
})
