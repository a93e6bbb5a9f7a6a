/**
 * @module test/support/core
 *
 * Shared helpers for tests that drive the core directly: a tollbooth on a manual clock, a
 * request shaped like the ones adapters hand to the core, and a bounded wait.
 */
import { createTollbooth, manualClock, type TollboothOptions } from '../../src/internal.js'
import type { TollboothRequest } from '../../src/request.js'
import type { Check, UsageEvent } from '../../src/storage/types.js'

export const SECRET = 'test-secret-test-secret-test-secret-42'
export const T0 = Date.UTC(2026, 10, 24, 12, 0, 0)

export function setup(options: Partial<TollboothOptions> = {}) {
  const clock = manualClock(T0)
  const tb = createTollbooth({ secret: SECRET, clock, ...options })
  return { tb, clock }
}

export function request(
  key?: string,
  extra: Partial<Omit<TollboothRequest, 'headers'>> & { headers?: Record<string, string> } = {},
): TollboothRequest {
  const headers: Record<string, string> = {
    ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
    ...extra.headers,
  }
  return { ip: '203.0.113.7', method: 'GET', path: '/v1/thing', ...extra, headers }
}

/**
 * Polls `probe` every 10 ms until it holds and returns the wait in ms; fails after `ms`. For
 * what crosses a process or a connection (a change feed's message), never for time logic.
 */
export async function until(probe: () => Promise<boolean> | boolean, ms = 3000): Promise<number> {
  const start = Date.now()
  while (!(await probe())) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
  return Date.now() - start
}

/** An all-time count of `limit` on `key`, `cost` a call: the batch tests' plain check. */
export const total = (key: string, limit: number, cost = 1): Check => ({
  type: 'window',
  key,
  name: 'total',
  limit,
  windowMs: 0,
  bucketMs: 0,
  cost,
})

/**
 * Usage event number `i` as a store records it: a served GET of one unit on `key_1` of
 * `acct_1` at T0, every optional figure empty; `over` changes any field.
 */
export function usageEvent(i: number, over: Partial<UsageEvent> = {}): UsageEvent {
  return {
    id: `evt_${i}`,
    requestId: `req_${i}`,
    keyId: 'key_1',
    accountId: 'acct_1',
    time: T0,
    units: 1,
    overage: 0,
    tokens: 0,
    category: null,
    keyCategory: null,
    status: 200,
    durationMs: 1,
    ttfbMs: null,
    code: null,
    ip: '127.0.0.1',
    method: 'GET',
    path: '/v1/thing',
    bypassed: false,
    provider: null,
    ...over,
  }
}
