import { describe, expect, it } from 'vitest'
import { counterSlots } from './counter-slots.js'
import { memoryStorage } from './memory.js'

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

describe('memory keys: lastUsedAt', () => {
  it('keeps the latest touch, null until the first, through updates and copies', async () => {
    const { keys } = memoryStorage()
    const record = {
      id: 'key_a',
      hash: 'h'.repeat(64),
      start: 'sk_live_aaaa',
      name: 'a',
      accountId: 'acct_a',
      kind: 'consumption' as const,
      category: null,
      scopes: [],
      metadata: {},
      active: true,
      createdAt: T,
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
      limits: {},
    }
    await keys.insert(record)
    expect((await keys.get('key_a'))!.lastUsedAt).toBeNull()
    await keys.touch([{ id: 'key_a', lastUsedAt: T + 5 }])
    await keys.touch([{ id: 'key_a', lastUsedAt: T + 2 }])
    expect((await keys.getByHash('h'.repeat(64)))!.lastUsedAt).toBe(T + 5)
    expect((await keys.list('acct_a', { limit: 10 }))!.data[0]!.lastUsedAt).toBe(T + 5)
    expect((await keys.update('key_a', { name: 'b' }))!.lastUsedAt).toBe(T + 5)
    // A copy handed out does not change the stored record.
    const copy = (await keys.get('key_a'))!
    copy.lastUsedAt = 0
    expect((await keys.get('key_a'))!.lastUsedAt).toBe(T + 5)
  })
})
