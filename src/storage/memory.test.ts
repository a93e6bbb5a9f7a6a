import { describe, expect, it } from 'vitest'
import { memoryStorage } from './memory.js'
import type { UsageEvent } from './types.js'

const HOUR = 3_600_000
const event = (i: number, time: number, over: Partial<UsageEvent> = {}): UsageEvent => ({
  id: `req_${i}`,
  requestId: `req_${i}`,
  keyId: 'key_1',
  accountId: 'acct_1',
  time,
  units: 2,
  overage: 0,
  tokens: 0,
  category: 'tts',
  keyCategory: null,
  status: 200,
  durationMs: 1,
  ttfbMs: null,
  code: null,
  ip: null,
  method: 'GET',
  path: '/x',
  bypassed: false,
  provider: null,
  ...over,
})

describe('memoryStorage usage: bounded events', () => {
  it('keeps the newest maxEvents for logs and still summarizes every event by the hour', async () => {
    const { usage } = memoryStorage({ maxEvents: 3 })
    const t0 = 10 * HOUR
    await usage.record([
      event(1, t0 + 1),
      event(2, t0 + 2, { category: null, units: 1 }),
      event(3, t0 + HOUR + 5),
      event(4, t0 + HOUR + 6, { accountId: 'acct_2', keyId: 'key_2' }),
      event(5, t0 + 2 * HOUR),
    ])
    const logs = await usage.logs('key_1', { limit: 10 })
    expect(logs.data.map((e) => e.id)).toEqual(['req_5', 'req_3'])
    expect(await usage.summarize('acct_1', t0, t0 + 3 * HOUR)).toEqual({
      requests: 4,
      units: 7,
      byCategory: { tts: { requests: 3, units: 6 }, uncategorized: { requests: 1, units: 1 } },
      byKeyCategory: { uncategorized: { requests: 4, units: 7 } },
    })
    // The evicted events count in their hour, not to the millisecond.
    expect((await usage.summarize('acct_1', t0 + HOUR, t0 + 3 * HOUR)).requests).toBe(2)
    expect((await usage.summarize('acct_1', t0, t0 + HOUR)).requests).toBe(2)
    expect((await usage.summarize('acct_2', t0, t0 + 3 * HOUR)).requests).toBe(1)
    // Pruning drops whole evicted hours too, and counts them.
    expect(await usage.prune(t0 + HOUR)).toBe(2)
    expect((await usage.summarize('acct_1', 0, t0 + 3 * HOUR)).requests).toBe(2)
  })

  it('evicts oldest first after the ring wrapped and after a prune, and ignores a kept id', async () => {
    const { usage } = memoryStorage({ maxEvents: 4 })
    const t0 = 10 * HOUR
    for (let i = 1; i <= 10; i++) await usage.record([event(i, t0 + i)])
    const ids = async () => (await usage.logs('key_1', { limit: 10 })).data.map((e) => e.id)
    expect(await ids()).toEqual(['req_10', 'req_9', 'req_8', 'req_7'])
    // A retried event still kept is not counted twice.
    await usage.record([event(9, t0 + 9)])
    expect((await usage.summarize('acct_1', t0, t0 + HOUR)).requests).toBe(10)
    // Prune the two oldest kept events; the next two recorded evict nothing.
    expect(await usage.prune(t0 + 9)).toBe(2)
    await usage.record([event(11, t0 + 11), event(12, t0 + 12)])
    expect(await ids()).toEqual(['req_12', 'req_11', 'req_10', 'req_9'])
    // Full again: the oldest kept (req_9) goes first.
    await usage.record([event(13, t0 + 13)])
    expect(await ids()).toEqual(['req_13', 'req_12', 'req_11', 'req_10'])
    expect((await usage.summarize('acct_1', t0, t0 + HOUR)).requests).toBe(11)
  })

  it('refuses a bad maxEvents, naming it', () => {
    expect(() => memoryStorage({ maxEvents: 0 })).toThrow(/options\.maxEvents/)
    expect(() => memoryStorage({ maxEvent: 5 } as never)).toThrow(
      /options\.maxEvent is not an option/,
    )
  })
})

describe('memoryStorage: cheap to make', () => {
  it('allocates no failed-auth LRU until an address fails (100 storages under 50 MB)', async () => {
    const size = () => {
      const m = process.memoryUsage()
      return m.heapUsed + m.arrayBuffers
    }
    const before = size()
    const kept = Array.from({ length: 100 }, () => memoryStorage())
    // Each used to allocate its LRU's slots for 100,000 entries at once: about 2.4 MB.
    expect(size() - before).toBeLessThan(50 * 1024 * 1024)
    const rule = { limit: 2, windowMs: 60_000, blockMs: 60_000 }
    const s = kept[0]!.ipBlocks!
    expect(await s.fail('10.0.0.1', 1, 0, rule)).toBeNull()
    expect(await s.fail('10.0.0.1', 1, 1, rule)).toBe(60_001)
    expect(await s.lift('10.0.0.1', 2)).toBe(true)
    expect(await kept[1]!.ipBlocks!.lift('10.0.0.1', 2)).toBe(false)
  })
})

describe('memoryStorage copies', () => {
  it('hands out deep copies of records: own __proto__ keys kept as data, Dates kept, nothing shared', async () => {
    const { accounts } = memoryStorage()
    const metadata = JSON.parse('{"__proto__":{"x":1},"nested":{"a":[1,{"b":2}]}}')
    metadata.when = new Date(5)
    const stored = await accounts.ensure({
      id: 'acct_1',
      tier: null,
      balance: 0,
      carryover: 0,
      periodStart: 0,
      tierExpiresAt: null,
      billingCustomerId: null,
      metadata,
    })
    const read = (await accounts.get('acct_1'))!
    for (const a of [stored, read]) {
      expect(Object.hasOwn(a.metadata, '__proto__')).toBe(true)
      expect(Object.getPrototypeOf(a.metadata)).toBe(Object.prototype)
      expect(a.metadata).toEqual(metadata)
      expect((a.metadata as { when: Date }).when).toBeInstanceOf(Date)
    }
    // Changing what was given or what was read changes nothing stored.
    metadata.nested.a[1].b = 3
    ;(read.metadata as { nested: { a: unknown[] } }).nested.a.push(4)
    expect((await accounts.get('acct_1'))!.metadata).toMatchObject({ nested: { a: [1, { b: 2 }] } })
  })
})
