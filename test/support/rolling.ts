/**
 * @module test/support/rolling
 *
 * What the rolling-deploy suites (SQLite, PostgreSQL) check of a store of this version while
 * another process of a later version migrates it past what this one knows: a later migration
 * that keeps this version's statements working (a column added) changes nothing for it
 * (`expectKeepsServing`); one that breaks them fails its calls as the storage being
 * unavailable, naming both schema versions (`expectFailsAsNewer`), not with a bare driver error.
 */

import { expect } from 'vitest'
import { isTollboothError, type Storage, type UsageEvent } from '../../src/index.js'
import { usageEvent } from './core.js'

const HOUR = 3_600_000

/** The hour the suites' events are in: from 40 h after the epoch. */
export const EVENT_HOUR = 40 * HOUR

/** Usage event `i` (`req_<i>`) of `key_1` on `acct_1`, category `tts`, `i` ms into the hour. */
export const rollingEvent = (i: number): UsageEvent =>
  usageEvent(i, {
    id: `req_${i}`,
    time: EVENT_HOUR + i,
    category: 'tts',
    ip: null,
    path: '/',
  })

/**
 * Records event 1, lets `migrateLater` add a column to the usage events (as a later version's
 * migration would), records event 2: both are summed.
 */
export async function expectKeepsServing(
  storage: Storage,
  migrateLater: (sql: string) => unknown,
): Promise<void> {
  await storage.usage.record([rollingEvent(1)])
  await migrateLater('ALTER TABLE usage_events ADD COLUMN region text')
  await storage.usage.record([rollingEvent(2)])
  const sum = await storage.usage.summarize('acct_1', EVENT_HOUR, EVENT_HOUR + HOUR)
  expect(sum.requests).toBe(2)
}

/**
 * `call` fails with `storage_unavailable`, naming the schema's migration `later` and the last
 * one this version knows, `known`.
 */
export async function expectFailsAsNewer(
  call: Promise<unknown>,
  { later, known }: { later: number; known: number },
): Promise<void> {
  const err = await call.then(
    () => null,
    (e: unknown) => e,
  )
  expect(isTollboothError(err) && err.code, String(err)).toBe('storage_unavailable')
  expect(String((err as Error).message)).toMatch(
    new RegExp(`migration ${later}; this version knows up to ${known}`),
  )
}
