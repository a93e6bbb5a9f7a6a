/**
 * @module test/metering/headers
 *
 * The usage header family of seed 001 (`X-Usage-Current`, `-Limit`, `-Remaining`,
 * `-Bypassed`, `X-Provider-Used`): figures after this request's charge, also when the handler
 * reports the cost at the end, read from `decision.responseHeaders()`.
 */

import { describe, expect, it } from 'vitest'
import { admitted, req, setup, T0 } from './helpers.js'

const opts = { plans: { pro: { monthlyCredits: 100 } }, defaultTier: 'pro' }
const usage = (h: Record<string, string>) => ({
  current: h['X-Usage-Current'],
  limit: h['X-Usage-Limit'],
  remaining: h['X-Usage-Remaining'],
  bypassed: h['X-Usage-Bypassed'],
  provider: h['X-Provider-Used'],
})

describe('usage headers', () => {
  it('show the figures after this request’s fixed cost', async () => {
    const s = await setup(opts)
    const route = s.tb.route({ cost: 3, category: 'tts' })
    const first = admitted(await s.tb.authenticate(req(s.key), route))
    expect(usage(first.responseHeaders())).toEqual({
      current: '3',
      limit: '100',
      remaining: '97',
      bypassed: 'false',
      provider: undefined,
    })
    await s.tb.settle(first, { status: 200 })
    const second = admitted(await s.tb.authenticate(req(s.key), route))
    expect(second.responseHeaders()['X-Usage-Current']).toBe('6')
    expect(second.responseHeaders()['X-Request-Id']).toBe(second.requestId)
  })

  it('show the cost the handler reports at the end, and the provider it names', async () => {
    const s = await setup(opts)
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 10 }))), {
      status: 200,
    })
    const route = s.tb.route({ cost: 1, overrun: { maxOverdraft: 1000 } })
    const d = admitted(await s.tb.authenticate(req(s.key), route))
    expect(d.responseHeaders()['X-Usage-Current']).toBe('11')
    d.report({ cost: 25.5, provider: 'Cartesia' })
    expect(usage(d.responseHeaders())).toEqual({
      current: '35.5',
      limit: '100',
      remaining: '64.5',
      bypassed: 'false',
      provider: 'cartesia',
    })
    d.charge(0.25)
    expect(d.responseHeaders()['X-Usage-Current']).toBe('35.75')
    await s.tb.settle(d, { status: 200 })
    expect((await s.tb.accounts.get('acct_1')).credits.used).toBe(35.75)
  })

  it('a response the route does not bill shows no charge when its status is given', async () => {
    const s = await setup(opts)
    const d = admitted(await s.tb.authenticate(req(s.key), s.tb.route({ cost: 4 })))
    expect(d.responseHeaders(500)['X-Usage-Current']).toBe('0')
    expect(d.responseHeaders(200)['X-Usage-Current']).toBe('4')
    const policy = admitted(
      await s.tb.authenticate(req(s.key), s.tb.route({ cost: 4, chargeWhen: (st) => st !== 204 })),
    )
    expect(policy.responseHeaders(204)['X-Usage-Current']).toBe('4') // the first one's hold
    expect(policy.responseHeaders(404)['X-Usage-Current']).toBe('8')
  })

  it('remaining never goes below zero, and an unlimited plan says so', async () => {
    const over = await setup({
      plans: { o: { monthlyCredits: 2, allowOverage: true } },
      defaultTier: 'o',
    })
    const d = admitted(await over.tb.authenticate(req(over.key), over.tb.route({ cost: 5 })))
    expect(usage(d.responseHeaders())).toMatchObject({ current: '5', limit: '2', remaining: '0' })

    const free = await setup({})
    const u = admitted(await free.tb.authenticate(req(free.key), free.tb.route({ cost: 5 })))
    expect(usage(u.responseHeaders())).toMatchObject({
      current: '5',
      limit: 'unlimited',
      remaining: 'unlimited',
    })
  })

  it('are not sent where credits are not metered or the family is off', async () => {
    const s = await setup(opts)
    const plain = admitted(await s.tb.authenticate(req(s.key), s.tb.route({})))
    expect(plain.responseHeaders()).not.toHaveProperty('X-Usage-Current')
    const off = admitted(
      await s.tb.authenticate(req(s.key), s.tb.route({ cost: 1, headers: { usage: false } })),
    )
    expect(Object.keys(off.responseHeaders()).filter((h) => h.startsWith('X-Usage'))).toEqual([])
    const quiet = await setup({ ...opts, headers: { usage: false } })
    const q = admitted(await quiet.tb.authenticate(req(quiet.key), quiet.tb.route({ cost: 1 })))
    expect(q.responseHeaders()).not.toHaveProperty('X-Usage-Limit')
  })

  it('a denial for credits carries the usage figures as they stand, not those of a charge', async () => {
    const s = await setup({ plans: { z: { monthlyCredits: 0 } }, defaultTier: 'z' })
    const d = await s.tb.authenticate(req(s.key), s.tb.route({ cost: 1 }))
    expect(d.allowed).toBe(false)
    // Seed 001: "Every authenticated response includes usage information".
    expect(d.headers).toMatchObject({
      'X-Usage-Current': '0',
      'X-Usage-Limit': '0',
      'X-Usage-Remaining': '0',
      'X-Usage-Bypassed': 'false',
    })
    expect(d.headers['X-Request-Id']).toBe(d.requestId)
  })

  it('a denial by a rate limit carries the credits as they stand, not with its own estimate', async () => {
    // The credit check passes, the rate limit refuses: nothing is held, so the figures are
    // those before the request (they read 4 used of 100 after three requests of 1, as if held).
    const s = await setup(opts, T0, { limits: { rateLimits: [{ limit: 3, windowMs: 60_000 }] } })
    const route = s.tb.route({ cost: 1 })
    for (let i = 0; i < 3; i++) {
      await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    }
    const d = await s.tb.authenticate(req(s.key), route)
    if (d.allowed) throw new Error('expected the rate limit to refuse')
    expect(d.status).toBe(429)
    expect(usage(d.headers)).toMatchObject({ current: '3', limit: '100', remaining: '97' })
  })
})
