import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { KeyMemo } from './key-memo.js'

/**
 * Keys as a request may present them: short ones that collide, hostile characters (NUL, lone
 * surrogates, Latin-1, `__proto__`), and lengths around the 63 characters a row holds.
 */
const key = fc.oneof(
  fc.constantFrom(
    'a',
    'b',
    'ab',
    'ba',
    '__proto__',
    'constructor',
    '\0',
    'a\0',
    '\ud800',
    'é',
    'sk_é',
  ),
  fc.string({ unit: fc.constantFrom('a', 'b', '_', '\0', '\ud800', '\u00e9'), maxLength: 4 }),
  fc
    .integer({ min: 60, max: 66 })
    .chain((n) => fc.constantFrom('x', 'y').map((c) => 'k'.repeat(n - 1) + c)),
)

type Op =
  | { kind: 'set'; key: string; value: number }
  | { kind: 'delete'; key: string }
  | { kind: 'clear' }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('set' as const), key, value: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
)

/** What the memo keeps: ASCII keys of at most 63 characters. */
const kept = (k: string) => k.length <= 63 && [...k].every((c) => c.charCodeAt(0) <= 0x7f)

function check(hash?: (seed: number, key: string) => number) {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.array(op, { maxLength: 200 }), (max, ops) => {
      const memo = new KeyMemo<number>(max, hash)
      const model = new Map<string, number>()
      const seen = new Set<string>()
      for (const o of ops) {
        if (o.kind === 'set') {
          seen.add(o.key)
          if (kept(o.key)) {
            // Full: emptied before a new key, as the Map it replaces was.
            if (!model.has(o.key) && model.size >= max) model.clear()
            model.set(o.key, o.value)
          }
          memo.set(o.key, o.value)
        } else if (o.kind === 'delete') {
          model.delete(o.key)
          memo.delete(o.key)
        } else {
          model.clear()
          memo.clear()
        }
        expect(memo.size).toBe(model.size)
        for (const k of seen) expect(memo.get(k)).toBe(model.get(k))
      }
    }),
    { numRuns: 300 },
  )
}

describe('KeyMemo', () => {
  it('answers as a Map of the keys it keeps, emptied when full', () => check())

  it('tells apart keys whose hashes are equal (every key collides)', () => check(() => 7))

  it('keeps no key longer than 63 characters or with a character outside ASCII', () => {
    const memo = new KeyMemo<number>(10)
    memo.set('k'.repeat(64), 1)
    memo.set('sk_\u00e9', 2)
    memo.set('sk_\ud800', 3)
    expect(memo.size).toBe(0)
    memo.set('k'.repeat(63), 4)
    expect(memo.get('k'.repeat(63))).toBe(4)
    // A presented key of the same characters past the row's end is another key.
    expect(memo.get('k'.repeat(64))).toBeUndefined()
  })
})
