/**
 * @module test/limits/concurrency
 *
 * Per-key concurrency through the public pipeline: the slot is taken at admission, freed at
 * settle whatever the status (also 500 and 499), and by its lease TTL if never settled; and,
 * under random interleavings of starts, settles and time, never more than the cap in flight.
 */

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Decision, Denial } from '../../src/index.js'
import { body, MINUTE, req, setup } from './setup.js'

describe('concurrency', () => {
  it('refuses a second request in flight with 429 while the first runs', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
    const d = (await tb.authenticate(req(key))) as Denial
    expect(d.status).toBe(429)
    expect(body(d)).toEqual({
      error: 'Too many concurrent requests: at most 1 in flight for this key',
      code: 'concurrency_limited',
    })
    expect(d.headers['Retry-After']).toBe('1')
  })

  for (const status of [200, 404, 500, 499]) {
    it(`frees the slot at settle of a ${status}`, async () => {
      const { tb } = setup()
      const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      const first = await tb.authenticate(req(key))
      await tb.settle(first, { status })
      expect((await tb.authenticate(req(key))).allowed).toBe(true)
    })
  }

  it('frees a slot that is never settled when its lease TTL passes', async () => {
    const { tb, clock } = setup({ leaseTtlMs: 30_000 })
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
    clock.advance(29_999)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    clock.advance(1)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })

  it('frees nothing when a denial or an already settled request is settled again', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 2 } })
    const a = await tb.authenticate(req(key))
    const b = await tb.authenticate(req(key))
    const refused = await tb.authenticate(req(key))
    await tb.settle(refused, { status: 429 })
    await tb.settle(a, { status: 200 })
    await tb.settle(a, { status: 200 })
    // b still holds its slot: one free, not two.
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
    expect((await tb.authenticate(req(key))).allowed).toBe(false)
    await tb.settle(b, { status: 200 })
  })

  it('never has more than the cap in flight, whatever the order of starts, settles and time', async () => {
    const op = fc.oneof(
      fc.constant({ kind: 'start' as const }),
      fc.record({
        kind: fc.constant('settle' as const),
        pick: fc.nat(),
        status: fc.constantFrom(200, 500, 499),
      }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 20_000 }) }),
    )
    // One instance for every run (building one costs more than a run), a new key per run.
    const { tb, clock } = setup({ leaseTtlMs: MINUTE })
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(op, { maxLength: 60 }),
        async (cap, ops) => {
          const { key } = await tb.keys.create({
            accountId: 'acct_1',
            limits: { concurrency: cap },
          })
          // The model: the start times of requests in flight (not settled, lease not expired).
          let inFlight: Array<{ d: Decision; at: number }> = []
          for (const o of ops) {
            inFlight = inFlight.filter((x) => x.at + MINUTE > clock.now())
            if (o.kind === 'start') {
              const d = await tb.authenticate(req(key))
              expect(d.allowed).toBe(inFlight.length < cap)
              if (d.allowed) inFlight.push({ d, at: clock.now() })
            } else if (o.kind === 'settle' && inFlight.length > 0) {
              const [x] = inFlight.splice(o.pick % inFlight.length, 1)
              await tb.settle(x!.d, { status: o.status })
            } else if (o.kind === 'wait') clock.advance(o.ms)
            expect(inFlight.length).toBeLessThanOrEqual(cap)
          }
        },
      ),
      { numRuns: 100 },
    )
  })
})
