/**
 * @module test/limits/quotas
 *
 * Per-key rolling quotas through the public pipeline: total, daily, weekly, monthly, the
 * seed's message and status option, and the all-or-none admission across limits.
 */

import { describe, expect, it } from 'vitest'
import type { Denial } from '../../src/index.js'
import { admitted, body, burst, DAY, HOUR, MINUTE, req, setup } from './setup.js'

describe('rolling quotas', () => {
  it('refuses the request past a daily quota: 429 "Rate limit exceeded: quota daily", Retry-After', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { daily: 3 } } })
    const ds = await burst(tb, key, 4)
    expect(admitted(ds)).toBe(3)
    const d = ds[3] as Denial
    expect(d.status).toBe(429)
    expect(body(d)).toEqual({ error: 'Rate limit exceeded: quota daily', code: 'quota_exceeded' })
    // The 12:00 bucket leaves the 24 h window at 13:00 tomorrow.
    expect(d.headers['Retry-After']).toBe(String(25 * 3600))
    expect(d.headers['X-RateLimit-Limit']).toBe('3')
    expect(d.headers['X-RateLimit-Remaining']).toBe('0')
  })

  it('answers a reached quota with 401 when quotaStatus is 401, as seed 002 does', async () => {
    const { tb } = setup({ quotaStatus: 401 })
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { total: 1 } } })
    await tb.authenticate(req(key))
    const d = (await tb.authenticate(req(key))) as Denial
    expect(d.status).toBe(401)
    expect(body(d).error).toBe('Rate limit exceeded: quota total')
  })

  it('lets a route choose the quota status', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { total: 1 } } })
    const route = tb.route({ quotaStatus: 403 })
    expect((await tb.authenticate(req(key), route)).allowed).toBe(true)
    expect(((await tb.authenticate(req(key), route)) as Denial).status).toBe(403)
    expect(((await tb.authenticate(req(key))) as Denial).status).toBe(429)
  })

  it('counts a daily quota over a rolling 24 h, not a calendar day', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { daily: 2 } } })
    clock.set(Date.UTC(2026, 2, 10, 23, 30))
    expect(admitted(await burst(tb, key, 2))).toBe(2)
    clock.set(Date.UTC(2026, 2, 11, 0, 30))
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    clock.set(Date.UTC(2026, 2, 11, 23, 59))
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    // Exactly 24 h plus the bucket of the first request later, both fit again.
    clock.set(Date.UTC(2026, 2, 12, 0))
    expect(admitted(await burst(tb, key, 3))).toBe(2)
  })

  it('names the weekly and monthly quotas when they refuse', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { daily: 10, weekly: 3, monthly: 5 } },
    })
    expect(admitted(await burst(tb, key, 3))).toBe(3)
    expect(body(await tb.authenticate(req(key))).error).toBe('Rate limit exceeded: quota weekly')
    clock.advance(8 * DAY)
    expect(admitted(await burst(tb, key, 2))).toBe(2)
    expect(body(await tb.authenticate(req(key))).error).toBe('Rate limit exceeded: quota monthly')
  })

  it('blocks a key for good once its total quota is reached: no Retry-After, years later', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { total: 2 } } })
    expect(admitted(await burst(tb, key, 5))).toBe(2)
    clock.advance(3 * 365 * DAY)
    const d = (await tb.authenticate(req(key))) as Denial
    expect(body(d).error).toBe('Rate limit exceeded: quota total')
    expect(d.headers['Retry-After']).toBeUndefined()
  })

  it('uses up no daily quota with a request refused by the per-minute limit', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { daily: 5 }, rateLimits: [{ limit: 2, windowMs: MINUTE }] },
    })
    // 2 admitted, 8 refused by the rate limit, each minute: 5 of the daily quota are reached
    // only at the third minute.
    expect(admitted(await burst(tb, key, 10))).toBe(2)
    clock.advance(MINUTE)
    expect(admitted(await burst(tb, key, 10))).toBe(2)
    clock.advance(MINUTE)
    const third = await burst(tb, key, 10)
    expect(admitted(third)).toBe(1)
    expect(body(third[1]!).error).toBe('Rate limit exceeded: quota daily')
  })

  it('uses up no rate limit with a request refused by its quota', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { total: 1 }, rateLimits: [{ limit: 1, windowMs: HOUR }] },
    })
    await tb.authenticate(req(key))
    clock.advance(HOUR)
    // Raising the quota: the refused requests in between must not have used the hourly limit.
    for (let i = 0; i < 3; i++) expect((await tb.authenticate(req(key))).allowed).toBe(false)
    const list = await tb.keys.list('acct_1')
    await tb.keys.update(list.data[0]!.id, {
      limits: { quotas: { total: 2 }, rateLimits: [{ limit: 1, windowMs: HOUR }] },
    })
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })

  it('answers with the limit that keeps refusing longest when several refuse at once', async () => {
    const { tb, clock } = setup({
      plans: { pro: { rateLimits: [{ limit: 1, windowMs: 1000 }] } },
      defaultTier: 'pro',
    })
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { daily: 2 } } })
    await tb.authenticate(req(key))
    clock.advance(1000)
    await tb.authenticate(req(key))
    // Both the plan's per-second limit (1 s) and the daily quota (about a day) refuse: a
    // Retry-After of 1 s would only earn another refusal.
    const d = (await tb.authenticate(req(key))) as Denial
    expect(body(d).error).toBe('Rate limit exceeded: quota daily')
    expect(Number(d.headers['Retry-After'])).toBeGreaterThan(DAY / 1000)
    expect(d.headers['X-RateLimit-Limit']).toBe('2')
  })
})
