/**
 * The objects a request reads its methods and fields from stay in V8's fast mode: an object
 * literal with a getter is made as a dictionary (a hash table), and every property read from it
 * in optimized code is then a call to the generic load IC instead of an inlined load: about
 * 2,900 instructions of a 36,500-instruction request (bench/NOTES.md, session 29). Their
 * getters are defined apart (`withAccessors`), and still read as getters.
 */

import { setFlagsFromString } from 'node:v8'
import { describe, expect, it } from 'vitest'
import { createMeterOutbox } from '../../src/billing/meter-outbox.js'
import { createTollbooth } from '../../src/index.js'
import { createOutbox } from '../../src/metering/outbox.js'
import { counterSlots } from '../../src/storage/counter-slots.js'
import { memoryStorage } from '../../src/storage/memory.js'

setFlagsFromString('--allow-natives-syntax')
const fast = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean

describe('objects on the request path keep fast properties', () => {
  it('the counter rows, the memory store and its counters', () => {
    for (let i = 0; i < 3; i++) {
      const slots = counterSlots()
      expect(fast(slots)).toBe(true)
      expect(slots.size).toBe(0)
      slots.write('k', { expiresAt: 1e15, state: { level: 1, at: 0 } }, -1)
      expect(slots.size).toBe(1)
      expect(slots.externalBytes).toBeGreaterThan(0)
      const storage = memoryStorage()
      expect(fast(storage.counters)).toBe(true)
      expect(storage.counters.size).toBe(0)
      expect(storage.counters.sweep(0)).toBe(0)
    }
  })

  it("the pipeline's context and its usage out-box", async () => {
    const ids = new Set<string>()
    for (let i = 0; i < 3; i++) {
      const tb = createTollbooth({ secret: 'fast-objects-secret-fast-objects-secret-0' })
      const ctx = (tb.keys as unknown as { ctx: { instanceId: string; outbox: object } }).ctx
      expect(fast(ctx)).toBe(true)
      expect(ctx.instanceId).toMatch(/^[0-9A-Za-z]{6}$/)
      expect(ctx.instanceId).toBe(ctx.instanceId)
      ids.add(ctx.instanceId)
      expect(fast(ctx.outbox)).toBe(true)
      await tb.close()
    }
    expect(ids.size).toBe(3)
    // Every instance, not the first only (a getter defined on each would be another function).
    for (let i = 0; i < 3; i++) {
      const outbox = createOutbox(
        memoryStorage(),
        { maxBatch: 10, flushIntervalMs: 1000 },
        () => {},
      )
      expect(fast(outbox)).toBe(true)
      expect(outbox.pending).toBe(0)
      await outbox.close()
    }
  })

  it("the billing meter's out-box", async () => {
    const tb = createTollbooth({ secret: 'fast-objects-secret-fast-objects-secret-0' })
    for (let i = 0; i < 3; i++) {
      const meter = createMeterOutbox(tb, { send: async () => 'delivered', retryable: () => false })
      expect(fast(meter)).toBe(true)
      expect(meter.pending).toBe(0)
      expect(meter.lastFlush).toBeNull()
      await meter.close()
    }
    await tb.close()
  })
})
