/**
 * @module test/property/admission
 *
 * The whole admission step through the public API on an injected clock, against the
 * brute-force models: a key with a daily quota and a per-minute rate limit, on an account
 * whose plan has a per-second limit, under random traffic. What is proved: a request is
 * admitted exactly when every model admits it, every admitted request is counted by every
 * limit and a refused one by none (all or none), and a refusal names the limit that keeps
 * refusing longest, with its exact wait as Retry-After, a time at which the request passes.
 */

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createTollbooth, type Denial, manualClock, memoryStorage } from '../../src/internal.js'
import { GcraModel, WindowModel } from './models.js'

const HOUR = 3_600_000
const T0 = Date.UTC(2026, 2, 10, 12)

describe('admission against the models', () => {
  it('admits exactly when every limit allows, counting all or none', async () => {
    // One instance for every run (building one costs more than a run); each run has its own
    // account, so its own counters.
    const clock = manualClock(T0)
    const tb = createTollbooth({
      secret: 'admission-property-secret-admission-property',
      clock,
      storage: memoryStorage(),
      plans: {
        s1: { rateLimits: [{ limit: 1, windowMs: 1000 }] },
        s2: { rateLimits: [{ limit: 2, windowMs: 1000 }] },
        s3: { rateLimits: [{ limit: 3, windowMs: 1000 }] },
        s5: { rateLimits: [{ limit: 5, windowMs: 1000 }] },
      },
    })
    let run = 0
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          daily: fc.integer({ min: 1, max: 30 }),
          perMinute: fc.integer({ min: 1, max: 10 }),
          perSecond: fc.constantFrom(1, 2, 3, 5),
          steps: fc.array(
            fc.oneof(
              fc.constant(0),
              fc.integer({ min: 0, max: 2000 }),
              fc.integer({ min: 0, max: 60_000 }),
              fc.integer({ min: 0, max: 3 * HOUR }),
            ),
            { minLength: 1, maxLength: 60 },
          ),
        }),
        async ({ daily, perMinute, perSecond, steps }) => {
          clock.set(T0)
          const accountId = `acct_${run++}`
          await tb.accounts.setTier(accountId, `s${perSecond}`)
          const { key } = await tb.keys.create({
            accountId,
            limits: { quotas: { daily }, rateLimits: [{ limit: perMinute, windowMs: 60_000 }] },
          })
          const quota = new WindowModel(daily, 24 * HOUR, HOUR)
          const minute = new GcraModel(perMinute, 60_000)
          const second = new GcraModel(perSecond, 1000)
          const request = {
            headers: { authorization: `Bearer ${key}` },
            ip: null,
            method: 'GET',
            path: '/',
          }
          for (const dt of steps) {
            clock.advance(dt)
            const now = clock.now()
            const fits = {
              second: second.fits(now, 1),
              quota: quota.fits(now, 1),
              minute: minute.fits(now, 1),
            }
            const d = await tb.authenticate(request)
            expect(d.allowed).toBe(fits.second && fits.quota && fits.minute)
            if (d.allowed) {
              second.add(now, 1)
              quota.add(now, 1)
              minute.add(now, 1)
              continue
            }
            const denial = d as Denial
            // The refusal names the limit that refuses longest, the first in admission order
            // (plan, quota, key rate) on a tie.
            const waits: Array<[number, string]> = [
              [second.wait(now, 1), 'exceeded the per-second rate limit on your subscription'],
              [quota.wait(now, 1), 'Rate limit exceeded: quota daily'],
              [minute.wait(now, 1), 'Rate limit exceeded: per-minute rate limit of this key'],
            ]
            const longest = waits.reduce((a, b) => (b[0] > a[0] ? b : a))
            expect(JSON.parse(denial.body).error).toBe(longest[1])
            // Retry-After (whole seconds, rounded up) is a time at which every model admits.
            const wait = Number(denial.headers['Retry-After']) * 1000
            expect(wait).toBe(Math.max(1000, Math.ceil(longest[0] / 1000) * 1000))
            expect(second.fits(now + wait, 1) && quota.fits(now + wait, 1)).toBe(true)
            expect(minute.fits(now + wait, 1)).toBe(true)
          }
        },
      ),
      { numRuns: 150 },
    )
    await tb.close()
  })
})
