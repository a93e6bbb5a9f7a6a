/**
 * @module test/limits/memory-per-account
 *
 * Measures what the counters cost per account over time and per request with an
 * `Idempotency-Key`, on the memory store (V8 heap) and on Redis (`MEMORY USAGE`). Not a test:
 *
 *   node --expose-gc --import tsx test/limits/memory-per-account.ts [accounts] [months] [what]
 *
 * `what`: `expiry` (default), `no-expiry`, `idempotency` or `redis` (one per process).
 *
 * - Credits: every account makes one metered request a month (its credit counter reserved and
 *   released as admission and settle do); the heap is read after the last month, idle
 *   counters swept. Without the period's `keepUntil` (as before) it grows by one counter per
 *   account per month; with it, one counter per account stays.
 * - Idempotency: 50,000 settled requests, each with its own 36-character `Idempotency-Key`.
 */

import { Redis } from 'ioredis'
import { redisCounters } from '../../adapters/redis/counters.js'
import { defineCommands } from '../../adapters/redis/store.js'
import { createTollbooth, manualClock, memoryStorage, periodOf } from '../../src/internal.js'
import { CREDIT_KEEP_MS, creditKey } from '../../src/metering/accounts.js'
import { syncCounters } from '../../src/storage/state-counters.js'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')
const ACCOUNTS = Number(process.argv[2] ?? 10_000)
const MONTHS = Number(process.argv[3] ?? 24)
const T0 = Date.UTC(2026, 0, 10, 12)
const SECRET = 'memory-per-account-secret-memory-per-account'

function heap(): number {
  for (let i = 0; i < 3; i++) gc!()
  // The V8 heap and array buffers: the memory store's counter rows are off the heap.
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

const request = (key: string, headers: Record<string, string> = {}) => ({
  headers: { authorization: `Bearer ${key}`, ...headers },
  ip: null,
  method: 'POST',
  path: '/',
})

/**
 * The credit counters as admission and settle write them (one hold per account and period,
 * reserved then released with its charge), `keep` saying whether they carry the period's
 * keepUntil, as they do now, or not, as before.
 */
function credits(keep: boolean) {
  const storage = memoryStorage()
  const c = storage.counters
  const base = heap()
  const perMonth: number[] = []
  for (let m = 0; m < MONTHS; m++) {
    const now = Date.UTC(2026, m, 10, 12)
    const period = periodOf(now)
    for (let a = 0; a < ACCOUNTS; a++) {
      const key = creditKey(`acct_${a}`, period)
      const keepUntil = keep ? period.end + CREDIT_KEEP_MS : undefined
      const check = {
        type: 'hold',
        key,
        name: 'credits',
        limit: 1000,
        amount: 1,
        holdId: 'r',
        ttlMs: 300_000,
      } as const
      syncCounters(c)!.consume([keepUntil === undefined ? check : { ...check, keepUntil }], now)
      syncCounters(c)!.settle(
        [
          {
            type: 'release',
            key,
            holdId: 'r',
            charge: 1,
            ...(keepUntil === undefined ? {} : { keepUntil }),
          },
        ],
        now,
      )
    }
    c.sweep(now)
    perMonth.push(c.size / ACCOUNTS)
  }
  const bytes = (heap() - base) / ACCOUNTS
  // Read after the heap, so the store is still alive when it is measured.
  if (c.size === 0) throw new Error('no counters')
  return { bytes, perMonth }
}

async function idempotency(n: number) {
  const clock = manualClock(T0)
  const storage = memoryStorage({ maxEvents: 1000 })
  const tb = createTollbooth({ secret: SECRET, clock, storage, failedAuth: false })
  const { key } = await tb.keys.create({ accountId: 'acct_idem' })
  // Each key made as the request comes, so only what the store keeps of it stays on the heap.
  const run = async (count: number) => {
    for (let k = 0; k < count; k++) {
      const d = await tb.authenticate(request(key, { 'idempotency-key': crypto.randomUUID() }))
      if (!d.allowed) throw new Error('refused')
      await tb.settle(d, { status: 200 })
      clock.advance(1)
    }
    await tb.flush()
  }
  // Warmed up first (caches, the usage ring full), so the difference is the counters'.
  await run(2000)
  const before = heap()
  const sizeBefore = storage.counters.size
  await run(n)
  const bytes = (heap() - before) / n
  const counters = storage.counters.size - sizeBefore
  await tb.close()
  return { bytes, counters }
}

/** Redis bytes of one idempotency counter and one credit counter (MEMORY USAGE). */
async function redisBytes() {
  const client = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
  })
  try {
    await client.connect()
  } catch {
    return null
  }
  const prefix = `tbmem:${Math.random().toString(36).slice(2, 8)}:`
  const clock = manualClock(Date.now())
  const memory = memoryStorage()
  const counters = redisCounters({ client: defineCommands(client), prefix }, 60_000)
  const tb = createTollbooth({
    secret: SECRET,
    clock,
    storage: { ...memory, counters },
    plans: { p: { monthlyCredits: 1000 } },
    defaultTier: 'p',
    failedAuth: false,
  })
  const route = tb.route({ cost: 1 })
  const { key } = await tb.keys.create({ accountId: 'acct_redis_mem' })
  const d = await tb.authenticate(request(key, { 'idempotency-key': crypto.randomUUID() }), route)
  if (!d.allowed) throw new Error('refused')
  await tb.settle(d, { status: 200 })
  await tb.flush()
  const out: Record<string, number> = {}
  for (const k of await client.keys(`${prefix}*`)) {
    const kind = k.includes(':credits:')
      ? 'credits'
      : k.includes(':i:') || k.includes(':idem:')
        ? 'idempotency'
        : 'other'
    out[kind] = Number(await client.memory('USAGE', k))
    await client.del(k)
  }
  await tb.close()
  client.disconnect()
  return out
}

// One measurement per process, so that no store of another is still on the heap.
const what = process.argv[4] ?? 'expiry'
const before = what === 'no-expiry' ? credits(false) : null
const after = what === 'expiry' ? credits(true) : null
const i = what === 'idempotency' ? await idempotency(50_000) : null
const r = what === 'redis' ? await redisBytes() : null
console.log(
  JSON.stringify(
    {
      accounts: ACCOUNTS,
      months: MONTHS,
      what,
      heapBytesPerAccount: before || after ? Math.round((before ?? after)!.bytes) : undefined,
      counterPerAccount: before || after ? (before ?? after)!.perMonth.at(-1) : undefined,
      idempotencyHeapBytesPerRequest: i ? Math.round(i.bytes) : undefined,
      idempotencyCounters: i?.counters,
      redisBytes: r ?? undefined,
    },
    null,
    2,
  ),
)
