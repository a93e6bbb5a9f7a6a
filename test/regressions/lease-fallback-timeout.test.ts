/**
 * @module test/regressions/lease-fallback-timeout
 *
 * A request whose lease attempt comes back empty because the store failed, then goes to the
 * store itself: it is answered within one storage timeout in all, not one for the lease and
 * another for the store (a PostgreSQL frozen while a lease was being taken answered such a
 * request 503 after 2,005 ms for a timeout of 1,000, `test/fault/postgres.test.ts`).
 */

import { expect, it } from 'vitest'
import { createTollbooth, manualClock, type Storage } from '../../src/internal.js'
import { mapStorage } from '../storage/map-store.js'
import { request, SECRET, T0 } from '../support/core.js'

const TIMEOUT_MS = 1_000

it('a lease attempt that failed, then the store: one storage timeout in all', async () => {
  const inner = mapStorage()
  let failing = false
  // Once failing, every counter call fails after 80 % of the timeout (a store that answers
  // late with an error, as a frozen server behind a deadline does).
  const storage: Storage = {
    ...inner,
    counters: {
      ...inner.counters,
      consume(checks, now, admission) {
        if (!failing) return inner.counters.consume(checks, now, admission)
        return new Promise((_, reject) =>
          setTimeout(() => reject(new Error('store failed')), TIMEOUT_MS * 0.8),
        )
      },
    },
  }
  const clock = manualClock(T0)
  const tb = createTollbooth({
    secret: SECRET,
    clock,
    storage,
    storageTimeoutMs: TIMEOUT_MS,
    onError: () => {},
  })
  const { key } = await tb.keys.create({
    accountId: 'acct_fallback',
    limits: { quotas: { daily: 1_000_000 } },
  })
  // A hot key: its quota is leased.
  for (let i = 0; i < 300; i++) {
    const d = await tb.authenticate(request(key))
    expect(d.allowed).toBe(true)
    await tb.settle(d, { status: 200 })
    clock.advance(2)
  }
  expect(tb.stats().leases?.acquired).toBeGreaterThan(0)
  // Its lease ended: the next request takes a new one, from a store that fails (before: 1,603
  // ms, a timeout for the lease attempt and most of another for the store; now 1,002).
  clock.advance(1_100)
  failing = true
  const started = Date.now()
  const d = await tb.authenticate(request(key))
  const ms = Date.now() - started
  expect(d).toMatchObject({ allowed: false, status: 503 })
  expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS * 0.8)
  expect(ms).toBeLessThan(TIMEOUT_MS + 150)
  failing = false
  await tb.close()
})
