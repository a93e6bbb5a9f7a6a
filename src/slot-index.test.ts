import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hashText, KeyedIndex, SlotIndex } from './slot-index.js'

type Op = { kind: 'add'; h: number } | { kind: 'remove'; pick: number } | { kind: 'grow' }

/** Hashes from a small range, so slots share hashes and home positions all the time. */
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.integer({ min: -4, max: 11 }).map((h) => ({ kind: 'add' as const, h })),
  },
  { weight: 4, arbitrary: fc.nat(1000).map((pick) => ({ kind: 'remove' as const, pick })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'grow' as const }) },
)

/** The slots indexed under `h`, in the order the index answers them. */
function slotsUnder(ix: SlotIndex, h: number): number[] {
  const out: number[] = []
  for (let at = ix.first(h); at >= 0; at = ix.next(h, at)) out.push(ix.slotAt(at))
  return out
}

describe('SlotIndex', () => {
  it('answers, for every hash, exactly the slots indexed under it, through adds, removals and growth', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300, size: 'max' }), (ops) => {
        let capacity = 4
        const ix = new SlotIndex(capacity)
        const model = new Map<number, number>()
        const free: number[] = [0, 1, 2, 3]
        for (const o of ops) {
          if (o.kind === 'add') {
            const slot = free.pop()
            if (slot === undefined) continue
            ix.add(slot, o.h)
            model.set(slot, o.h)
          } else if (o.kind === 'remove') {
            if (model.size === 0) continue
            const slot = [...model.keys()][o.pick % model.size]!
            ix.remove(slot)
            model.delete(slot)
            free.push(slot)
          } else if (capacity < 64) {
            ix.grow(capacity * 2)
            for (let s = capacity; s < capacity * 2; s++) free.push(s)
            capacity *= 2
          }
          for (let h = -4; h <= 11; h++) {
            const want = [...model].filter(([, x]) => x === h).map(([s]) => s)
            expect(slotsUnder(ix, h).sort((a, b) => a - b)).toEqual(want.sort((a, b) => a - b))
          }
        }
        ix.clear()
        for (let h = -4; h <= 11; h++) expect(slotsUnder(ix, h)).toEqual([])
      }),
      { numRuns: 200 },
    )
  })

  it('hashes by seed and code unit', () => {
    expect(hashText(1, 'key')).toBe(hashText(1, 'key'))
    expect(hashText(1, 'key')).not.toBe(hashText(2, 'key'))
    expect(hashText(1, '\ud800')).not.toBe(hashText(1, '\udc00'))
    // From a position on: the tail and the length.
    expect(hashText(1, 'abcd', 2)).toBe(hashText(1, 'xycd', 2))
    expect(hashText(1, 'abcd', 2)).not.toBe(hashText(1, 'bcd', 1))
  })
})

describe('KeyedIndex', () => {
  const text = fc.oneof(
    fc.constantFrom('', 'a', 'ab', '__proto__', 'constructor', '\0', '\ud800', 'é'),
    fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\0', '\udc00'), maxLength: 5 }),
  )
  type KOp = { add: boolean; key: string }
  const kop: fc.Arbitrary<KOp> = fc.record({ add: fc.boolean(), key: text })

  for (const tail of [0, 2])
    it(`answers as a Map of each value's own key (tail ${tail})`, () => {
      fc.assert(
        fc.property(fc.array(kop, { maxLength: 200 }), (ops) => {
          const ix = new KeyedIndex<{ k: string }>((v) => v.k, tail)
          const model = new Map<string, { k: string }>()
          const seen = new Set<string>()
          for (const o of ops) {
            seen.add(o.key)
            if (o.add) {
              if (model.has(o.key)) continue
              const v = { k: o.key }
              ix.add(v)
              model.set(o.key, v)
            } else expect(ix.delete(o.key)).toBe(model.delete(o.key))
            expect(ix.size).toBe(model.size)
            for (const k of seen) {
              expect(ix.get(k)).toBe(model.get(k))
              expect(ix.has(k)).toBe(model.has(k))
            }
          }
        }),
        { numRuns: 200 },
      )
    })
})
