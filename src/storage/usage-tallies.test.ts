import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { USAGE_HOUR_MS } from '../metering/usage-buckets.js'
import { type TallyPlace, usageTallies } from './usage-tallies.js'

const T = Date.UTC(2026, 11, 5)

type Op =
  | {
      kind: 'add'
      account: number
      hour: number
      at: number
      pair: number
      sign: 1 | -1
      units: number
      /** The account's key whose place the add goes with (a key's cache entry); -1: none. */
      key: number
    }
  | { kind: 'prune'; hour: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      account: fc.integer({ min: 0, max: 5 }),
      hour: fc.integer({ min: 0, max: 8 }),
      at: fc.integer({ min: 0, max: USAGE_HOUR_MS - 1 }),
      pair: fc.integer({ min: 0, max: 3 }),
      sign: fc.constantFrom(1 as const, 1 as const, -1 as const),
      units: fc.integer({ min: 0, max: 50 }),
      key: fc.integer({ min: -1, max: 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('prune' as const),
      hour: fc.integer({ min: 0, max: 9 }),
    }),
  },
)

const PAIRS = [
  ['chat', 'default'],
  ['chat', 'batch'],
  ['embeddings', 'default'],
  ['a\u0000b', '__proto__'],
] as const

/** The totals as a model: account → "hour pair" → [requests, units]. */
type Model = Map<number, Map<string, [number, number]>>

describe('usageTallies', () => {
  it('keeps the totals of every account, hour and pair through adds, removals and prunes', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400, size: 'max' }), (ops) => {
        const t = usageTallies()
        const model: Model = new Map()
        // Places as keys' cache entries keep them: stale ones (a row pruned, emptied, given to
        // another account) come up as the ops go.
        const places = new Map<string, TallyPlace>()
        const placeOf = (account: number, key: number): TallyPlace | undefined => {
          if (key < 0) return undefined
          const id = `${account}.${key}`
          let p = places.get(id)
          if (p === undefined) {
            p = { tallyRow: -1, tallyGen: 0 }
            places.set(id, p)
          }
          return p
        }
        for (const o of ops) {
          if (o.kind === 'prune') {
            const before = T + o.hour * USAGE_HOUR_MS
            let expected = 0
            for (const hours of model.values())
              for (const [k, v] of hours) {
                const hour = Number(k.split(' ')[0])
                if (hour + USAGE_HOUR_MS <= before) {
                  expected += v[0]
                  hours.delete(k)
                }
              }
            expect(t.prune(before)).toBe(expected)
            continue
          }
          const hour = T + o.hour * USAGE_HOUR_MS
          const [c, k] = PAIRS[o.pair]!
          // A removal (an evicted event) has no key entry to go with.
          const place = o.sign === 1 ? placeOf(o.account, o.key) : undefined
          t.add(`acct_${o.account}`, hour + o.at, c, k, o.sign, o.units, place)
          const hours = model.get(o.account) ?? new Map<string, [number, number]>()
          model.set(o.account, hours)
          const key = `${hour} ${o.pair}`
          const v = hours.get(key)
          if (v === undefined) {
            if (o.sign === 1) hours.set(key, [1, o.units])
          } else {
            v[0] += o.sign
            v[1] += o.sign * o.units
            if (v[0] === 0) hours.delete(key)
          }
        }
        for (let a = 0; a <= 5; a++) {
          // Every hour of the account, and one range inside.
          for (const [from, end] of [
            [T, T + 9 * USAGE_HOUR_MS],
            [T + 2 * USAGE_HOUR_MS, T + 5 * USAGE_HOUR_MS],
          ] as const) {
            const got: string[] = []
            t.each(`acct_${a}`, from, end, (c, k, requests, units) =>
              got.push(`${c}|${k}|${requests}|${units}`),
            )
            const want: string[] = []
            for (const [key, [requests, units]] of model.get(a) ?? []) {
              const [hour, pair] = key.split(' ').map(Number) as [number, number]
              if (hour < from || hour >= end) continue
              const [c, k] = PAIRS[pair]!
              want.push(`${c}|${k}|${requests}|${units}`)
            }
            expect(got.sort()).toEqual(want.sort())
          }
        }
      }),
      { numRuns: 300 },
    )
  })

  it('trusts a place only while its row is still the one it named', () => {
    const t = usageTallies()
    const a: TallyPlace = { tallyRow: -1, tallyGen: 0 }
    t.add('acct_a', T, 'chat', 'default', 1, 5, a)
    expect(a.tallyRow).toBeGreaterThanOrEqual(0)
    // The hour goes; its row is given to another account's event of a later hour.
    expect(t.prune(T + USAGE_HOUR_MS)).toBe(1)
    const b: TallyPlace = { tallyRow: -1, tallyGen: 0 }
    t.add('acct_b', T + USAGE_HOUR_MS, 'chat', 'default', 1, 7, b)
    expect(b.tallyRow).toBe(a.tallyRow)
    // acct_a's stale place names that row, of the same hour and pair: not its own any more.
    t.add('acct_a', T + USAGE_HOUR_MS, 'chat', 'default', 1, 11, a)
    const totals = (account: string) => {
      const out: number[] = []
      t.each(account, T, T + 2 * USAGE_HOUR_MS, (_c, _k, r, u) => out.push(r, u))
      return out
    }
    expect(totals('acct_b')).toEqual([1, 7])
    expect(totals('acct_a')).toEqual([1, 11])
    expect(a.tallyRow).not.toBe(b.tallyRow)
  })

  it('grows past its first block of rows and reuses the rows it frees', () => {
    const t = usageTallies()
    for (let i = 0; i < 5000; i++) t.add(`acct_${i}`, T, 'chat', 'default', 1, i)
    expect(t.prune(T + USAGE_HOUR_MS)).toBe(5000)
    for (let i = 0; i < 5000; i++) t.add(`acct_${i}`, T + USAGE_HOUR_MS, 'chat', 'default', 1, 2)
    const seen: number[] = []
    t.each('acct_4999', T, T + 2 * USAGE_HOUR_MS, (_c, _k, r, u) => seen.push(r, u))
    expect(seen).toEqual([1, 2])
  })
})
