/**
 * @module test/support/fault
 *
 * What the fault tests expect of requests refused while a store is down, frozen or
 * restarting.
 */

import { expect } from 'vitest'

/** What a fault test keeps of one request. */
export interface Refused {
  status: number
  code?: string | undefined
  /** How long the answer took. */
  ms: number
}

/**
 * Every one of `refused` (at least `least` of them) is a 503 `storage_unavailable` answered
 * within the storage timeout plus a second; with `waited`, not before the timeout either (a
 * store that neither answers nor closes: only the timeout ends them).
 */
export function expectUnavailable(
  refused: readonly Refused[],
  timeoutMs: number,
  { least = 1, waited = false }: { least?: number; waited?: boolean } = {},
): void {
  expect(refused.length).toBeGreaterThanOrEqual(least)
  for (const o of refused) {
    expect(o.status).toBe(503)
    expect(o.code).toBe('storage_unavailable')
    if (waited) expect(o.ms).toBeGreaterThanOrEqual(timeoutMs - 5)
    expect(o.ms).toBeLessThan(timeoutMs + 1000)
  }
}
