import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { CounterState, StoredCounter } from '../limits/counters.js'
import { counterSlots } from './counter-slots.js'

const T = Date.UTC(2026, 11, 4, 12)
const state = () => ({ level: 1, at: T })

describe('counterSlots: the expiry queue', () => {
  // Rows are dropped a minute after their counter expired (DROP_AFTER_MS).
  const LATER = 60_000

  it('drops each counter a minute after its time came, whatever order they were queued in', () => {
    const slots = counterSlots()
    slots.write('late', { state: state(), expiresAt: T + 60_000 }, -1)
    // Queued after the first: earlier by a second, and by a year (a clock set back).
    slots.write('soon', { state: state(), expiresAt: T + 1000 }, -1)
    slots.write('year-ago', { state: state(), expiresAt: T - 365 * 86_400_000 }, -1)
    slots.write('never', { state: state(), expiresAt: null }, -1)
    const sweep = (now: number) => {
      slots.credit(100)
      slots.sweepDue(now)
    }
    sweep(T)
    expect(slots.get('year-ago')).toBeUndefined()
    expect(slots.get('soon')).toBeDefined()
    // Expired, kept for a minute: the same key finds its row again.
    sweep(T + 1000)
    expect(slots.get('soon')).toBeDefined()
    sweep(T + 1000 + LATER - 1)
    expect(slots.get('soon')).toBeDefined()
    sweep(T + 1000 + LATER)
    expect(slots.get('soon')).toBeUndefined()
    expect(slots.get('late')).toBeDefined()
    // Written again with a later expiry: kept past the first one.
    slots.write('late', { state: state(), expiresAt: T + 120_000 }, slots.find('late'))
    sweep(T + 60_000 + LATER)
    expect(slots.get('late')).toBeDefined()
    sweep(T + 120_000 + LATER)
    expect(slots.get('late')).toBeUndefined()
    expect(slots.get('never')).toBeDefined()
    expect(slots.size).toBe(1)
  })

  it('keeps the row of a counter written again within the minute', () => {
    const slots = counterSlots()
    slots.write('a', { state: state(), expiresAt: T + 10 }, -1)
    const row = slots.find('a')
    slots.credit(100)
    slots.sweepDue(T + 30_000)
    slots.write('a', { state: state(), expiresAt: T + 30_010 }, slots.find('a'))
    expect(slots.find('a')).toBe(row)
    slots.credit(100)
    slots.sweepDue(T + 60_010)
    expect(slots.find('a')).toBe(row)
    slots.credit(100)
    slots.sweepDue(T + 30_010 + LATER)
    expect(slots.find('a')).toBe(-1)
  })

  it('a row freed and taken by another key is swept by its new expiry only', () => {
    const slots = counterSlots()
    slots.write('a', { state: state(), expiresAt: T + 1000 }, -1)
    slots.write('a', null, slots.find('a'))
    // Takes a's row, queued in the bucket a's stale entry is in, and in a later one.
    slots.write('b', { state: state(), expiresAt: T + 5000 }, -1)
    slots.credit(100)
    slots.sweepDue(T + 1000 + LATER)
    expect(slots.get('b')).toEqual({ state: state(), expiresAt: T + 5000 })
    slots.credit(100)
    slots.sweepDue(T + 5000 + LATER)
    expect(slots.get('b')).toBeUndefined()
    expect(slots.size).toBe(0)
  })
})

// Every state the counting rules write, with its marks, and states of other shapes.
const num = fc.oneof(fc.integer({ min: -1e6, max: 1e15 }), fc.double({ noNaN: true }))
const marks = fc.record(
  { rebuilt: fc.constant(true as const), keepUntil: fc.integer({ min: 0, max: 1e13 }) },
  { requiredKeys: [] },
)
const gcraState = fc
  .tuple(fc.record({ level: num, at: num }), marks)
  .map(([s, m]) => ({ ...s, ...(m.rebuilt ? { rebuilt: true } : {}) }))
const windowState = fc
  .tuple(
    fc.array(fc.tuple(fc.integer({ min: 0, max: 2e9 }), fc.integer({ min: 0, max: 1e6 })), {
      maxLength: 6,
    }),
    marks,
  )
  .map(([buckets, m]) => ({
    idx: buckets.map((b) => b[0]),
    n: buckets.map((b) => b[1]),
    ...(m.rebuilt ? { rebuilt: true } : {}),
  }))
const holdState = fc
  .tuple(num, fc.array(fc.tuple(fc.string(), num, num), { maxLength: 3 }), marks)
  .map(([used, holds, m]) => ({ used, holds, ...m }))
const otherState = fc.oneof(
  fc.constant({ mark: 'c' }),
  fc.constant({ mark: 'x' }),
  fc.constant({ claim: 1 }),
)
const anyState: fc.Arbitrary<CounterState> = fc.oneof(
  gcraState,
  windowState,
  holdState,
  otherState,
) as fc.Arbitrary<CounterState>

type Op = { key: number; value: StoredCounter | null }
const op: fc.Arbitrary<Op> = fc.record({
  key: fc.integer({ min: 0, max: 40 }),
  value: fc.option(
    fc.record({
      state: anyState,
      expiresAt: fc.option(fc.integer({ min: 0, max: 1e13 }), { nil: null }),
    }),
    { nil: null, freq: 5 },
  ),
})

describe('counterSlots: rows', () => {
  it('reads back every value written, figure for figure, through deletes and reused rows', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300, size: 'max' }), (ops) => {
        const slots = counterSlots()
        const model = new Map<string, StoredCounter>()
        for (const { key, value } of ops) {
          const k = `counter:${key}`
          // A structured copy: what the store keeps must not depend on the caller's object.
          slots.write(k, value && structuredClone(value), slots.find(k))
          if (value === null) model.delete(k)
          else model.set(k, value)
          expect(slots.size).toBe(model.size)
        }
        for (let key = 0; key <= 40; key++) {
          const k = `counter:${key}`
          expect(slots.get(k)).toEqual(model.get(k))
        }
      }),
      { numRuns: 300 },
    )
  })

  it('writes through remembered places (row and stamp), stale ones included, as through find', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300, size: 'max' }), (ops) => {
        const slots = counterSlots()
        const model = new Map<string, StoredCounter>()
        // Each key's place as its last write that made or kept its counter left it: a delete
        // leaves it stale (its row then free, or taken by another key, or by this key again).
        const places = new Map<string, { row: number; stamp: number; fresh: boolean }>()
        for (const { key, value } of ops) {
          const k = `counter:${key}`
          const p = places.get(k) ?? { row: -1, stamp: 0, fresh: false }
          // Owned exactly while its counter lives.
          expect(slots.owns(p.row, p.stamp)).toBe(p.fresh)
          const row = slots.write(k, value && structuredClone(value), p.row, p.stamp)
          expect(row).toBe(slots.find(k))
          if (value === null) {
            model.delete(k)
            places.set(k, { ...p, fresh: false })
          } else {
            model.set(k, value)
            places.set(k, { row, stamp: slots.stamp(row), fresh: true })
          }
        }
        for (let key = 0; key <= 40; key++) {
          const k = `counter:${key}`
          expect(slots.get(k)).toEqual(model.get(k))
        }
      }),
      { numRuns: 300 },
    )
  })

  it('a stamp names one counter: never 0 on a row held, never shared by two stores', () => {
    const a = counterSlots()
    const b = counterSlots()
    const ra = a.write('x', { state: state(), expiresAt: null }, -1)
    const rb = b.write('y', { state: state(), expiresAt: null }, -1)
    // The same row in two stores, each its own counter.
    expect(ra).toBe(rb)
    expect(a.stamp(ra)).toBeGreaterThan(0)
    expect(b.stamp(rb)).not.toBe(a.stamp(ra))
    expect(b.owns(rb, a.stamp(ra))).toBe(false)
    // Dropped: its row names no counter; taken by another key: a stamp of its own.
    const old = a.stamp(ra)
    a.write('x', null, ra, old)
    expect(a.stamp(ra)).toBe(0)
    expect(a.owns(ra, old)).toBe(false)
    expect(a.owns(ra, 0)).toBe(false)
    expect(a.write('z', { state: state(), expiresAt: null }, -1)).toBe(ra)
    expect(a.owns(ra, old)).toBe(false)
    expect(a.owns(-1, 0)).toBe(false)
  })

  it('a value read is the caller’s: changing it changes nothing stored but a hold list', () => {
    const slots = counterSlots()
    slots.write('w', { state: { idx: [1, 2, 3], n: [4, 5, 6] }, expiresAt: null }, -1)
    const w = slots.get('w')!
    ;(w.state.idx as number[])[0] = 99
    ;(w.state.n as number[]).push(7)
    expect(slots.get('w')!.state).toEqual({ idx: [1, 2, 3], n: [4, 5, 6] })
  })

  it('grows past its first block of rows and reuses the rows it frees', () => {
    const slots = counterSlots()
    for (let i = 0; i < 5000; i++)
      slots.write(`k${i}`, { state: { level: i, at: T }, expiresAt: T + i }, -1)
    const bytes = slots.externalBytes
    expect(bytes).toBeGreaterThanOrEqual(5000 * 64)
    expect(slots.get('k4321')).toEqual({ state: { level: 4321, at: T }, expiresAt: T + 4321 })
    expect(slots.sweepAll(T + 2500)).toBe(2501)
    for (let i = 0; i < 2501; i++)
      slots.write(`j${i}`, { state: { level: -i, at: T }, expiresAt: null }, -1)
    expect(slots.externalBytes).toBe(bytes)
    expect(slots.size).toBe(5000)
    expect(slots.get('j2500')).toEqual({ state: { level: -2500, at: T }, expiresAt: null })
    expect(slots.get('k2501')).toEqual({ state: { level: 2501, at: T }, expiresAt: T + 2501 })
  })
})
