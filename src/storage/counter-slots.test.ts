import { describe, expect, it } from 'vitest'
import { counterSlots } from './counter-slots.js'

const T = Date.UTC(2026, 11, 4, 12)
const state = () => ({ level: 1, at: T })

describe('counterSlots: the expiry queue', () => {
  it('drops each counter once its time came, whatever order they were queued in', () => {
    const slots = counterSlots()
    slots.write('late', { state: state(), expiresAt: T + 60_000 }, undefined)
    // Queued after the first: earlier by a second, and by a year (a clock set back).
    slots.write('soon', { state: state(), expiresAt: T + 1000 }, undefined)
    slots.write('year-ago', { state: state(), expiresAt: T - 365 * 86_400_000 }, undefined)
    slots.write('never', { state: state(), expiresAt: null }, undefined)
    const sweep = (now: number) => {
      slots.credit(100)
      slots.sweepDue(now)
    }
    sweep(T)
    expect(slots.get('year-ago')).toBeUndefined()
    expect(slots.get('soon')).toBeDefined()
    sweep(T + 1000)
    expect(slots.get('soon')).toBeUndefined()
    expect(slots.get('late')).toBeDefined()
    // Written again with a later expiry: kept past the first one.
    slots.write('late', { state: state(), expiresAt: T + 120_000 }, slots.get('late'))
    sweep(T + 60_000)
    expect(slots.get('late')).toBeDefined()
    sweep(T + 120_000)
    expect(slots.get('late')).toBeUndefined()
    expect(slots.get('never')).toBeDefined()
    expect(slots.size).toBe(1)
  })
})
