/**
 * @module test/limits/memory-per-key
 *
 * Measures the memory store's bytes per active key carrying 4 limits (a daily and a monthly
 * quota, a per-minute rate limit, a concurrency cap), three ways: the counters alone, the
 * key record, and a whole tollbooth (record + counters + the key cache entry). Not a test:
 *
 *   node --expose-gc --import tsx test/limits/memory-per-key.ts [keys=50000]
 */

import { createTollbooth, manualClock, memoryStorage } from '../../src/internal.js'
import { compileKeyLimits, instantiate } from '../../src/limits/admission.js'
import type { KeyRecord } from '../../src/storage/types.js'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')
const N = Number(process.argv[2] ?? 50_000)
const T0 = Date.UTC(2026, 2, 10, 12)
const limits = {
  quotas: { daily: 1000, monthly: 20_000 },
  rateLimits: [{ limit: 60, windowMs: 60_000 }],
  concurrency: 2,
}

/** Bytes held: the V8 heap and array buffers (the memory store's counter rows are off it). */
function heap(): number {
  for (let i = 0; i < 3; i++) gc!()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

async function countersOnly(): Promise<{ bytes: number; perKey: number }> {
  const storage = memoryStorage()
  const templates = Array.from({ length: N }, (_, i) =>
    compileKeyLimits({ id: `key_${i}`, accountId: `acct_${i}`, limits } as KeyRecord),
  )
  const before = heap()
  const TTL = { leaseTtlMs: 60_000, reservationTtlMs: 60_000 }
  for (let i = 0; i < N; i++) {
    // Every key active at once: each request admitted, then settled (its slot released).
    const request = { internalId: `req_${i}`, estimate: 0, tokens: 0 }
    const checks = templates[i]!.map((t) => instantiate(t, request, TTL))
    await storage.counters.consume(checks, T0)
    await storage.counters.settle(
      [{ type: 'release', key: checks[3]!.key, holdId: `req_${i}`, charge: 0 }],
      T0,
    )
  }
  const after = heap()
  // `templates` read after the heap is: a local no longer used is dead to V8, and its
  // collection between the two readings would be counted off the counters (it was: the
  // figure read 504 bytes, then -8 once the counters' arrays were cut to their length).
  if (templates.length !== N) throw new Error('templates lost')
  if (storage.counters.size < 3 * N * 0.9) throw new Error('counters were swept while active')
  return { bytes: (after - before) / N, perKey: storage.counters.size / N }
}

async function wholeTollbooth(): Promise<{ record: number; active: number }> {
  const clock = manualClock(T0)
  const tb = createTollbooth({
    secret: 'memory-per-key-secret-memory-per-key-secret',
    clock,
    cache: { ttlMs: 3_600_000, negativeTtlMs: 5_000, max: N },
    failedAuth: false,
  })
  const keys: string[] = []
  const base = heap()
  for (let i = 0; i < N; i++)
    keys.push((await tb.keys.create({ accountId: `acct_${i}`, limits })).key)
  const created = heap()
  for (const key of keys) {
    const d = await tb.authenticate({
      headers: { authorization: `Bearer ${key}` },
      ip: null,
      method: 'GET',
      path: '/',
    })
    if (!d.allowed) throw new Error('refused')
    await tb.settle(d, { status: 200 })
  }
  await tb.flush()
  const active = heap()
  await tb.close()
  return { record: (created - base) / N, active: (active - created) / N }
}

const counters = await countersOnly()
const whole = await wholeTollbooth()
console.log(`keys: ${N}, limits per key: 4 (daily, monthly, 60 rpm, concurrency 2)`)
console.log(
  `counters alone (memory store): ${counters.bytes.toFixed(0)} bytes per active key ` +
    `(${counters.perKey.toFixed(2)} counters per key held)`,
)
console.log(`key record + plaintext kept by the test: ${whole.record.toFixed(0)} bytes per key`)
console.log(
  `first request of each key (counters, cache entry, usage event): ${whole.active.toFixed(0)} bytes per key`,
)
