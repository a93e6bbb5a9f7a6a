/**
 * @module test/limits/rate-limits
 *
 * Per-key and per-plan rate limits (GCRA) and token-rate limits through the public pipeline:
 * refusals, exact Retry-After, the rate-limit header families, and which limit's figures a
 * successful response carries.
 */

import { describe, expect, it } from 'vitest'
import type { Admission, Denial } from '../../src/index.js'
import { admitted, body, burst, HOUR, MINUTE, req, setup } from './setup.js'

const pro = { pro: { rateLimits: [{ limit: 3, windowMs: MINUTE }] } }

describe('rate limits', () => {
  it('admits 60 of a 60 rpm key at once, then refuses with Retry-After 1', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 60, windowMs: MINUTE }] },
    })
    const ds = await burst(tb, key, 61)
    expect(admitted(ds)).toBe(60)
    const d = ds[60] as Denial
    expect(d.status).toBe(429)
    expect(body(d)).toEqual({
      error: 'Rate limit exceeded: per-minute rate limit of this key',
      code: 'rate_limited',
    })
    expect(d.headers).toMatchObject({
      'Retry-After': '1',
      'X-RateLimit-Limit': '60',
      'X-RateLimit-Remaining': '0',
      'X-RateLimit-Reset': '60',
    })
    clock.advance(999)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    clock.advance(1)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })

  it('gives the exact Retry-After of GCRA: 20 s for 3 per minute', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 3, windowMs: MINUTE }] },
    })
    await burst(tb, key, 3)
    clock.advance(5_000)
    const d = (await tb.authenticate(req(key))) as Denial
    expect(d.headers['Retry-After']).toBe('15')
    clock.advance(14_999)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    clock.advance(1)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })

  it('limits a plan across all of an account keys: "exceeded the per-minute rate limit on your subscription"', async () => {
    const { tb } = setup({ plans: pro, defaultTier: 'pro', quotaStatus: 401 })
    const a = await tb.keys.create({ accountId: 'acct_1' })
    const b = await tb.keys.create({ accountId: 'acct_1' })
    const other = await tb.keys.create({ accountId: 'acct_2' })
    expect(admitted(await burst(tb, a.key, 2))).toBe(2)
    expect(admitted(await burst(tb, b.key, 2))).toBe(1)
    const d = (await tb.authenticate(req(a.key))) as Denial
    // A plan limit is a 429 whatever the quota status.
    expect(d.status).toBe(429)
    expect(body(d).error).toBe('exceeded the per-minute rate limit on your subscription')
    expect(d.headers['Retry-After']).toBe('20')
    expect((await tb.authenticate(req(other.key))).allowed).toBe(true)
  })

  it('applies the plan of the account tier, set after the keys were made', async () => {
    const { tb } = setup({
      plans: { ...pro, free: { rateLimits: [{ limit: 1, windowMs: HOUR }] } },
    })
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    expect(admitted(await burst(tb, key, 5))).toBe(5)
    await tb.accounts.setTier('acct_1', 'free')
    expect(admitted(await burst(tb, key, 5))).toBe(1)
    expect(body(await tb.authenticate(req(key))).error).toBe(
      'exceeded the per-hour rate limit on your subscription',
    )
  })

  it('sends the IETF RateLimit-Policy and RateLimit fields when asked', async () => {
    const { tb } = setup({ headers: { ietf: true } })
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 2, windowMs: MINUTE }] },
    })
    const [first, , third] = await burst(tb, key, 3)
    expect((first as Admission).headers).toMatchObject({
      'RateLimit-Policy': '"per-minute";q=2;w=60',
      RateLimit: '"per-minute";r=1;t=30',
      'X-RateLimit-Remaining': '1',
    })
    expect((third as Denial).headers).toMatchObject({
      'RateLimit-Policy': '"per-minute";q=2;w=60',
      RateLimit: '"per-minute";r=0;t=60',
      'Retry-After': '30',
    })
  })

  it('sends no IETF fields by default, and none of the family on a route that turns it off', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 2, windowMs: MINUTE }] },
    })
    const d = (await tb.authenticate(req(key))) as Admission
    expect(d.headers['RateLimit']).toBeUndefined()
    expect(d.headers['X-RateLimit-Limit']).toBe('2')
    const off = tb.route({ headers: { rateLimit: false } })
    expect((await tb.authenticate(req(key), off)).headers['X-RateLimit-Limit']).toBeUndefined()
  })

  it('reports on success the limit with the fewest requests left, not the smallest share', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { daily: 100 }, rateLimits: [{ limit: 60, windowMs: MINUTE }] },
    })
    await burst(tb, key, 10)
    clock.advance(MINUTE)
    // per-minute: 59 of 60 left (98 %); daily: 89 of 100 (89 %). A client that read 89 would
    // be refused after 59 in a row: the headers must say 59.
    const d = (await tb.authenticate(req(key))) as Admission
    expect(d.headers['X-RateLimit-Limit']).toBe('60')
    expect(d.headers['X-RateLimit-Remaining']).toBe('59')
    const rest = await burst(tb, key, 60)
    expect(admitted(rest)).toBe(59)
  })

  it('reports the daily quota when it is the one closest to refusing', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { daily: 3 }, rateLimits: [{ limit: 60, windowMs: MINUTE }] },
    })
    const d = (await tb.authenticate(req(key))) as Admission
    expect(d.headers['X-RateLimit-Limit']).toBe('3')
    expect(d.headers['X-RateLimit-Remaining']).toBe('2')
  })
  it('counts every request of a 1e9-per-minute limit, whose emission interval is 60 ns', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 1e9, windowMs: MINUTE }] },
    })
    const ds = (await burst(tb, key, 1000)) as Admission[]
    expect(ds.map((d) => Number(d.headers['X-RateLimit-Remaining']))).toEqual(
      Array.from({ length: 1000 }, (_, i) => 1e9 - 1 - i),
    )
  })
})

describe('token-rate limits', () => {
  it('checks for room at admission and counts the tokens reported at settle', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { rateLimits: [{ limit: 1000, windowMs: MINUTE, unit: 'tokens' }] },
    })
    // Admission counts no token: any number of requests pass while the bucket has room.
    const ds = await burst(tb, key, 3)
    expect(admitted(ds)).toBe(3)
    ;(ds[0] as Admission).report({ tokens: 900 })
    await tb.settle(ds[0]!, { status: 200 })
    await tb.settle(ds[1]!, { status: 200, tokens: 600 })
    await tb.settle(ds[2]!, { status: 200 })
    const d = (await tb.authenticate(req(key))) as Denial
    expect(d.status).toBe(429)
    expect(body(d).error).toBe('Rate limit exceeded: per-minute-tokens rate limit of this key')
    // 1500 tokens used: room for one comes back after 501 tokens drained, 30.06 s.
    expect(d.headers['Retry-After']).toBe('31')
    clock.advance(30_059)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    clock.advance(1)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })

  it('counts tokens across the account under a plan tpm', async () => {
    const { tb } = setup({
      plans: { pro: { rateLimits: [{ limit: 100, windowMs: MINUTE, unit: 'tokens' }] } },
      defaultTier: 'pro',
    })
    const a = await tb.keys.create({ accountId: 'acct_1' })
    const b = await tb.keys.create({ accountId: 'acct_1' })
    const d = await tb.authenticate(req(a.key))
    await tb.settle(d, { status: 200, tokens: 150 })
    const refused = (await tb.authenticate(req(b.key))) as Denial
    expect(body(refused).error).toBe(
      'exceeded the per-minute-tokens rate limit on your subscription',
    )
  })
})
