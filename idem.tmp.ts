import { memoryStorage } from './src/index.js'
const gc = (globalThis as any).gc
const heap = () => { for (let i = 0; i < 3; i++) gc(); return process.memoryUsage().heapUsed }
const N = 100_000
const T0 = Date.UTC(2026, 2, 10, 12)
const s = memoryStorage()
const keys = Array.from({ length: N }, (_, i) => `{acct_${i % 1000}}:idem:key_01JD0000000000000000${String(i).padStart(6, '0')}:${crypto.randomUUID()}`)
const before = heap()
for (let i = 0; i < N; i++)
  s.counters.consumeSync!([{ type: 'window', key: keys[i]!, name: 'idempotency', limit: 1, windowMs: 86_400_000, bucketMs: 3_600_000, cost: 1 }], T0 + i)
const after = heap()
console.log('size', (s.counters as any).size, 'memory bytes per idempotency counter', ((after - before) / N).toFixed(0), 'key length', keys[0]!.length)
