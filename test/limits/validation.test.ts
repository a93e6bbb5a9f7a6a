/**
 * @module test/limits/validation
 *
 * Limits given at `keys.create` and `keys.update` are validated: a bad one is a 400
 * `InvalidRequestError` naming the field, and nothing is stored.
 */

import { describe, expect, it } from 'vitest'
import { InvalidRequestError, isTollboothError } from '../../src/index.js'
import { setup } from './setup.js'

const bad: Array<[string, unknown, string]> = [
  ['a zero quota', { quotas: { daily: 0 } }, 'limits.quotas.daily'],
  ['a negative quota', { quotas: { total: -5 } }, 'limits.quotas.total'],
  ['a fractional quota', { quotas: { weekly: 1.5 } }, 'limits.quotas.weekly'],
  ['a quota given as a string', { quotas: { monthly: '10' } }, 'limits.quotas.monthly'],
  ['an infinite quota', { quotas: { daily: Infinity } }, 'limits.quotas.daily'],
  ['an unknown window name', { quotas: { hourly: 10 } }, 'limits.quotas'],
  [
    'a rate limit of 0',
    { rateLimits: [{ limit: 0, windowMs: 1000 }] },
    'limits.rateLimits.0.limit',
  ],
  ['a window of 0 ms', { rateLimits: [{ limit: 5, windowMs: 0 }] }, 'limits.rateLimits.0.windowMs'],
  [
    'a fractional window',
    {
      rateLimits: [
        { limit: 5, windowMs: 1000 },
        { limit: 5, windowMs: 0.5 },
      ],
    },
    'limits.rateLimits.1.windowMs',
  ],
  [
    'an unknown unit',
    { rateLimits: [{ limit: 5, windowMs: 1000, unit: 'bytes' }] },
    'limits.rateLimits.0.unit',
  ],
  ['a rate limit without a window', { rateLimits: [{ limit: 5 }] }, 'limits.rateLimits.0.windowMs'],
  ['a concurrency of 0', { concurrency: 0 }, 'limits.concurrency'],
  ['a fractional concurrency', { concurrency: 2.5 }, 'limits.concurrency'],
  ['a negative budget', { budget: -1 }, 'limits.budget'],
  [
    'a time block ending before it starts',
    { timeBlocks: [{ start: 2000, end: 1000 }] },
    'limits.timeBlocks.0.end',
  ],
  [
    'a time block ending when it starts',
    {
      timeBlocks: [
        { start: 1000, end: 2000 },
        { start: 5000, end: 5000 },
      ],
    },
    'limits.timeBlocks.1.end',
  ],
  ['an unknown limit', { rpm: 60 }, 'limits'],
]

function expectInvalid(err: unknown, field: string) {
  expect(isTollboothError(err)).toBe(true)
  expect(err).toBeInstanceOf(InvalidRequestError)
  const e = err as InvalidRequestError
  expect(e.status).toBe(400)
  expect(e.code).toBe('invalid_request')
  expect(e.issues.map((i) => i.path)).toContain(field)
  expect(e.message).toContain(field)
}

describe('limits validation', () => {
  for (const [what, limits, field] of bad) {
    it(`refuses to create a key with ${what}, naming ${field}, and stores nothing`, async () => {
      const { tb } = setup()
      await tb.keys.create({ accountId: 'acct_1', name: 'existing' })
      const before = await tb.keys.list('acct_1')
      const err = await tb.keys
        .create({ accountId: 'acct_1', name: 'new', limits: limits as never })
        .catch((e: unknown) => e)
      expectInvalid(err, field)
      expect(await tb.keys.list('acct_1')).toEqual(before)
    })

    it(`refuses to update a key with ${what}, naming ${field}, and changes nothing`, async () => {
      const { tb } = setup()
      const { key, record } = await tb.keys.create({
        accountId: 'acct_1',
        limits: { quotas: { total: 2 } },
      })
      const err = await tb.keys
        .update(record.id, { limits: limits as never })
        .catch((e: unknown) => e)
      expectInvalid(err, field)
      expect(await tb.keys.get(record.id)).toEqual(record)
      // The stored limits still apply.
      const req = {
        headers: { authorization: `Bearer ${key}` },
        ip: null,
        method: 'GET',
        path: '/',
      }
      const ds = [
        await tb.authenticate(req),
        await tb.authenticate(req),
        await tb.authenticate(req),
      ]
      expect(ds.map((d) => d.allowed)).toEqual([true, true, false])
    })
  }

  it('accepts and applies every valid limit', async () => {
    const { tb } = setup()
    const limits = {
      quotas: { total: 10, daily: 5, weekly: 7, monthly: 9 },
      rateLimits: [
        { limit: 60, windowMs: 60_000 },
        { limit: 1000, windowMs: 60_000, unit: 'tokens' as const },
      ],
      concurrency: 1,
      budget: 12.5,
      timeBlocks: [{ start: 0, end: 8.64e15 }],
    }
    const { record } = await tb.keys.create({ accountId: 'acct_1', limits })
    expect(record.limits).toEqual(limits)
    expect((await tb.keys.update(record.id, { limits: { quotas: { daily: 1 } } })).limits).toEqual({
      quotas: { daily: 1 },
    })
  })
})
