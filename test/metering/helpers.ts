/**
 * @module test/metering/helpers
 *
 * Shared setup for the metering, credits and BYOK suites: a tollbooth on the memory store
 * with a manual clock, a key, and requests shaped like the ones adapters hand to the core.
 */

import { expect } from 'vitest'
import {
  Admission,
  createTollbooth,
  type Decision,
  type Denial,
  type ManualClock,
  manualClock,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/internal.js'
import type { TollboothRequest } from '../../src/request.js'

export const SECRET = 'metering-suite-secret-0123456789abcdefgh'
export const OTHER_SECRET = 'another-secret-entirely-9876543210zyxwvu'
/** Mid-January 2026, noon UTC: far from a period boundary. */
export const T0 = Date.UTC(2026, 0, 15, 12, 0, 0)

export interface Setup {
  tb: Tollbooth
  clock: ManualClock
  /** A consumption key of `acct_1`. */
  key: string
  keyId: string
}

/** A tollbooth at T0 (unless `start` says otherwise) with one consumption key of `acct_1`. */
export async function setup(
  options: Partial<TollboothOptions> = {},
  start = T0,
  keyInput: Record<string, unknown> = {},
): Promise<Setup> {
  const clock = manualClock(start)
  const tb = createTollbooth({ secret: SECRET, clock, ...options })
  const { key, record } = await tb.keys.create({ accountId: 'acct_1', name: 'k', ...keyInput })
  return { tb, clock, key, keyId: record.id }
}

/** A request as the issue describes it: POST /v1/synthesize from 127.0.0.1. */
export function req(key: string, headers: Record<string, string> = {}): TollboothRequest {
  return {
    headers: { authorization: `Bearer ${key}`, ...headers },
    ip: '127.0.0.1',
    method: 'POST',
    path: '/v1/synthesize',
  }
}

/** Asserts the decision admitted the request and narrows it. */
export function admitted(d: Decision): Admission {
  if (!d.allowed) throw new Error(`expected an admission, got ${d.status} ${d.message}`)
  expect(d).toBeInstanceOf(Admission)
  return d as Admission
}

/** Asserts the decision refused the request and narrows it. */
export function denied(d: Decision): Denial {
  if (d.allowed) throw new Error('expected a denial, got an admission')
  return d
}

/** Every usage event stored for a key, newest first (flushes first). */
export async function events(tb: Tollbooth, keyId: string) {
  await tb.flush()
  return (await tb.storage.usage.logs(keyId, { limit: 100 })).data
}
