/**
 * @module test/limits/setup
 *
 * A tollbooth on the memory store and a manual clock, and a request builder, for the limit
 * suites. Everything goes through the public API.
 */

import {
  createTollbooth,
  type Decision,
  type Denial,
  manualClock,
  memoryStorage,
  type TollboothOptions,
  type TollboothRequest,
} from '../../src/internal.js'

export const SECRET = 'limits-suite-secret-limits-suite-secret'
/** 2026-03-10 12:00:00 UTC, on an hour boundary. */
export const T0 = Date.UTC(2026, 2, 10, 12)
export const MINUTE = 60_000
export const HOUR = 3_600_000
export const DAY = 86_400_000

export function setup(options: Omit<TollboothOptions, 'secret'> = {}) {
  const clock = manualClock(T0)
  const storage = memoryStorage()
  const tb = createTollbooth({ secret: SECRET, clock, storage, ...options })
  return { tb, clock, storage }
}

export function req(key: string, ip = '198.51.100.7'): TollboothRequest {
  return { headers: { authorization: `Bearer ${key}` }, ip, method: 'POST', path: '/v1/speak' }
}

export function body(d: Decision): { error: string; code: string } {
  return JSON.parse((d as Denial).body)
}

/** Authenticates `n` requests one after another; returns the decisions. */
export async function burst(
  tb: ReturnType<typeof setup>['tb'],
  key: string,
  n: number,
  route?: Parameters<ReturnType<typeof setup>['tb']['authenticate']>[1],
): Promise<Decision[]> {
  const out: Decision[] = []
  for (let i = 0; i < n; i++) out.push(await tb.authenticate(req(key), route))
  return out
}

export const admitted = (ds: Decision[]) => ds.filter((d) => d.allowed).length
