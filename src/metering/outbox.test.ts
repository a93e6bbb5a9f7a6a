/**
 * @module metering/outbox.test
 *
 * The out-box: settle() writes nothing durable itself; events are written in batches (on
 * flush, on size, on close), a failed write is retried without double counting, and old
 * events are pruned by a flush at most once an hour of clock time.
 */

import { describe, expect, it } from 'vitest'
import { admitted, req, setup } from '../../test/metering/helpers.js'
import { manualClock } from '../clock.js'
import { memoryStorage } from '../storage/memory.js'
import type { Storage, UsageEvent } from '../storage/types.js'
import { createOutbox, PRUNE_EVERY_MS } from './outbox.js'

const HOUR = 3_600_000
const T = Date.UTC(2026, 0, 10)

function event(id: string, time: number): UsageEvent {
  return {
    id,
    requestId: id,
    keyId: 'key_1',
    accountId: 'acct_1',
    time,
    units: 1,
    overage: 0,
    tokens: 0,
    category: 'tts',
    keyCategory: null,
    status: 200,
    durationMs: 3,
    ttfbMs: null,
    code: null,
    ip: '127.0.0.1',
    method: 'POST',
    path: '/v1/synthesize',
    bypassed: false,
    provider: null,
  }
}

const stored = async (storage: Storage) =>
  (await storage.usage.logs('key_1', { limit: 100 })).data.map((e) => e.id).sort()

describe('out-box', () => {
  it('writes nothing until a flush, then everything once', async () => {
    const storage = memoryStorage()
    const box = createOutbox(storage, { flushIntervalMs: 60_000, maxBatch: 100 }, () => {})
    box.push(event('a', T))
    box.push(event('b', T))
    box.push(event('a', T)) // the same event twice is stored once
    expect(box.pending).toBe(3)
    expect(await stored(storage)).toEqual([])
    await box.flush()
    expect(box.pending).toBe(0)
    expect(await stored(storage)).toEqual(['a', 'b'])
    await box.close()
  })

  it('flushes on its own when maxBatch events wait', async () => {
    const storage = memoryStorage()
    const box = createOutbox(storage, { flushIntervalMs: 60_000, maxBatch: 3 }, () => {})
    box.push(event('a', T))
    box.push(event('b', T))
    expect(await stored(storage)).toEqual([])
    box.push(event('c', T))
    await new Promise((r) => setImmediate(r))
    expect(await stored(storage)).toEqual(['a', 'b', 'c'])
    await box.close()
  })

  it('keeps a batch whose write failed and writes it at the next flush, once', async () => {
    const storage = memoryStorage()
    const record = storage.usage.record.bind(storage.usage)
    let down = true
    // The memory store with an outage injected: its own `record`, refused while `down`.
    storage.usage.record = (events) =>
      down ? Promise.reject(new Error('connection refused')) : record(events)
    const box = createOutbox(storage, { flushIntervalMs: 60_000, maxBatch: 100 }, () => {})
    box.push(event('a', T))
    box.touch('key_1', T)
    await expect(box.flush()).rejects.toThrow('connection refused')
    expect(box.pending).toBe(1)
    box.push(event('b', T))
    down = false
    await box.flush()
    await box.flush()
    expect(await stored(storage)).toEqual(['a', 'b'])
    expect(box.pending).toBe(0)
  })

  it("hands the memory store each event's tally place, and a replaced record gets the batch", async () => {
    const storage = memoryStorage()
    const box = createOutbox(storage, { flushIntervalMs: 60_000, maxBatch: 100 }, () => {})
    const place = { tallyRow: -1, tallyGen: 0 }
    box.push(event('a', T), place)
    await box.flush()
    // The store counted it and said where: the next event of the hour goes there directly.
    expect(place.tallyRow).toBeGreaterThanOrEqual(0)
    const row = place.tallyRow
    box.push(event('b', T + 1), place)
    box.push(event('c', T + 2))
    await box.flush()
    expect(place.tallyRow).toBe(row)
    const summary = await storage.usage.summarize('acct_1', T, T + HOUR)
    expect(summary.requests).toBe(3)
    // `record` replaced after the out-box was made (a wrapper, an outage): it is called.
    const seen: string[] = []
    storage.usage.record = async (events) => {
      seen.push(...events.map((e) => e.id))
    }
    box.push(event('d', T + 3), place)
    await box.flush()
    expect(seen).toEqual(['d'])
    expect((await storage.usage.summarize('acct_1', T, T + HOUR)).requests).toBe(3)
    await box.close()
  })

  it('close() writes what is left', async () => {
    const { tb, key, keyId } = await setup({ usage: { flushIntervalMs: 600_000, maxBatch: 500 } })
    await tb.settle(admitted(await tb.authenticate(req(key), tb.route({ cost: 1 }))), {
      status: 200,
    })
    expect((await tb.storage.usage.logs(keyId, { limit: 10 })).data).toHaveLength(0)
    await tb.close()
    expect((await tb.storage.usage.logs(keyId, { limit: 10 })).data).toHaveLength(1)
    expect((await tb.storage.keys.get(keyId))?.lastUsedAt).not.toBeNull()
  })
})

describe('out-box retention', () => {
  it('prunes events older than retentionMs, at most once an hour of clock time', async () => {
    const storage = memoryStorage()
    const clock = manualClock(T)
    const opts = {
      flushIntervalMs: 60_000,
      maxBatch: 100,
      retentionMs: 30 * 60_000,
      now: clock.now,
    }
    const box = createOutbox(storage, opts, () => {})
    box.push(event('old', T))
    await box.flush() // prunes at once (nothing old yet), then not again for an hour
    clock.advance(31 * 60_000) // 'old' is past retention, but the last prune is recent
    box.push(event('new', clock.now()))
    await box.flush()
    expect(await stored(storage)).toEqual(['new', 'old'])
    clock.set(T + PRUNE_EVERY_MS)
    await box.flush() // nothing queued: the flush still prunes when an hour has passed
    expect(await stored(storage)).toEqual(['new'])
    clock.advance(HOUR - 1) // 'new' is now past retention too, but the last prune is recent
    await box.flush()
    expect(await stored(storage)).toEqual(['new'])
    clock.advance(1)
    await box.flush()
    expect(await stored(storage)).toEqual([])
  })

  it('tb prunes request logs by options.usage.retentionMs, driven by its clock', async () => {
    const s = await setup({ usage: { flushIntervalMs: 1_000, maxBatch: 500, retentionMs: HOUR } })
    const route = s.tb.route({ cost: 1 })
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    await s.tb.flush()
    s.clock.advance(HOUR + 1)
    await s.tb.settle(admitted(await s.tb.authenticate(req(s.key), route)), { status: 200 })
    const { data } = await s.tb.usage.logs(s.keyId)
    expect(data).toHaveLength(1)
    expect(data[0]?.time).toBe(s.clock.now())
  })

  it('close() writes the events without starting a prune (a long one would hold the shutdown)', async () => {
    const storage = memoryStorage()
    const clock = manualClock(T)
    let prunes = 0
    const prune = storage.usage.prune.bind(storage.usage)
    storage.usage.prune = (before) => {
      prunes++
      return prune(before)
    }
    const box = createOutbox(
      storage,
      { flushIntervalMs: 60_000, maxBatch: 100, retentionMs: HOUR, now: clock.now },
      () => {},
    )
    box.push(event('a', T))
    await box.flush()
    expect(prunes).toBe(1)
    clock.advance(2 * HOUR)
    box.push(event('b', clock.now()))
    await box.close()
    expect(await stored(storage)).toEqual(['a', 'b'])
    expect(prunes).toBe(1)
  })

  it('without retentionMs nothing is pruned, and a failing prune only reports', async () => {
    const storage = memoryStorage()
    const errors: unknown[] = []
    const clock = manualClock(T)
    const keep = createOutbox(
      storage,
      { flushIntervalMs: 60_000, maxBatch: 100, now: clock.now },
      () => {},
    )
    keep.push(event('a', T))
    await keep.flush()
    clock.advance(1000 * HOUR)
    await keep.flush()
    expect(await stored(storage)).toEqual(['a'])

    storage.usage.prune = () => Promise.reject(new Error('prune failed'))
    const box = createOutbox(
      storage,
      { flushIntervalMs: 60_000, maxBatch: 100, retentionMs: HOUR, now: clock.now },
      (e) => errors.push(e),
    )
    box.push(event('b', clock.now()))
    await box.flush()
    expect(errors).toHaveLength(1)
    expect(await stored(storage)).toEqual(['a', 'b'])
  })
})
