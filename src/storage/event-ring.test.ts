import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { EventRing } from './event-ring.js'
import type { UsageEvent } from './types.js'

const text = fc.option(fc.string({ maxLength: 6 }), { nil: null })

const event: fc.Arbitrary<UsageEvent> = fc.record({
  id: fc.string({ minLength: 1, maxLength: 6 }),
  requestId: fc.string({ maxLength: 6 }),
  keyId: fc.constantFrom('key_1', 'key_2', 'key_3'),
  accountId: fc.constantFrom('acct_1', 'acct_2'),
  time: fc.integer({ min: 0, max: 1000 }),
  units: fc.double({ min: 0, max: 1e6, noNaN: true }),
  overage: fc.double({ min: 0, max: 10, noNaN: true }),
  tokens: fc.integer({ min: 0, max: 1e9 }),
  category: text,
  keyCategory: text,
  status: fc.integer({ min: 100, max: 599 }),
  durationMs: fc.integer({ min: 0, max: 1e6 }),
  ttfbMs: fc.option(fc.integer({ min: 0, max: 1e6 }), { nil: null }),
  code: text,
  ip: text,
  method: fc.constantFrom('GET', 'POST'),
  path: fc.string({ maxLength: 8 }),
  bypassed: fc.boolean(),
  provider: text,
})

type Op = { kind: 'push'; e: UsageEvent } | { kind: 'retain'; from: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 20, arbitrary: event.map((e) => ({ kind: 'push' as const, e })) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 1000 }).map((from) => ({ kind: 'retain' as const, from })),
  },
)

describe('EventRing', () => {
  it('holds the newest `max` events in order, each field as pushed, and evicts the oldest', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(op, { maxLength: 200, size: 'max' }),
        (max, ops) => {
          const ring = new EventRing(max)
          let model: UsageEvent[] = []
          const seen = new Set<string>(['', 'never'])
          for (let k = 0; k < ops.length; k++) {
            const o = ops[k]!
            if (o.kind === 'push') {
              const pushed = { ...o.e }
              const evicted = ring.push(pushed)
              // The caller's object changed afterwards leaves the stored event as it was.
              pushed.units = -1
              pushed.path = 'changed'
              model.push(o.e)
              seen.add(o.e.id)
              expect(evicted).toBe(model.length > max ? model.shift()!.id : undefined)
            } else {
              ring.retain((i) => ring.timeAt(i) >= o.from)
              model = model.filter((e) => e.time >= o.from)
            }
            expect(ring.size).toBe(model.length)
            // Found by id exactly while held: pushed, evicted, pruned, pushed twice.
            if (k % 4 === 0 || k === ops.length - 1)
              for (const id of seen) expect(ring.has(id)).toBe(model.some((e) => e.id === id))
          }
          for (let i = 0; i < model.length; i++) {
            expect(ring.at(i)).toEqual(model[i])
            expect(ring.keyIdAt(i)).toBe(model[i]!.keyId)
            expect(ring.accountIdAt(i)).toBe(model[i]!.accountId)
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it('reads an event of the current contract without a key category as null', () => {
    const ring = new EventRing(2)
    const e = {
      id: 'e1',
      requestId: 'r1',
      keyId: 'key_1',
      accountId: 'acct_1',
      time: 5,
      units: 1,
      overage: 0,
      tokens: 0,
      category: null,
      status: 200,
      durationMs: 1,
      ttfbMs: 0,
      code: null,
      ip: null,
      method: 'GET',
      path: '/',
      bypassed: false,
      provider: null,
    } as unknown as UsageEvent
    ring.push(e)
    expect(ring.at(0)).toEqual({ ...e, keyCategory: null })
    // A ttfb of 0 is kept as 0, not taken for a missing one.
    expect(ring.at(0).ttfbMs).toBe(0)
  })
})
