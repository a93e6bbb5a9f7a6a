/**
 * @module test/support/usage-upgrade
 *
 * For tollbooth's own tests (not exported): what a store must answer after its usage tables
 * were upgraded to usage by key category. The caller wrote, as the previous version did, 200
 * events of `key_1` on `acct_1` 36 s apart from `t0` (an hour boundary), every other one of
 * category `tts`, each of 1 unit, with their hourly totals. This records three new events of
 * `key_2` (5 units each, two by a `production` key) in the same hours and checks the totals on
 * and off hour boundaries, a key-category filter, the old events' logs, and that pruning takes
 * the old events out of the migrated totals.
 */

import { expect } from 'vitest'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import type { Storage } from '../../src/index.js'

const HOUR = 3_600_000

export async function expectUpgradedUsage(storage: Storage, t0: number): Promise<void> {
  const at = (i: number, keyCategory: string | null) =>
    makeEvent({
      accountId: 'acct_1',
      keyId: 'key_2',
      time: t0 + i * 1000,
      units: 5,
      category: 'tts',
      keyCategory,
    })
  await storage.usage.record([at(1, 'production'), at(2, 'production'), at(3, null)])
  expect(await storage.usage.summarize('acct_1', t0, t0 + 2 * HOUR)).toEqual({
    requests: 203,
    units: 215,
    byCategory: {
      tts: { requests: 103, units: 115 },
      uncategorized: { requests: 100, units: 100 },
    },
    byKeyCategory: {
      production: { requests: 2, units: 10 },
      uncategorized: { requests: 201, units: 205 },
    },
  })
  // Off hour boundaries the old events are read themselves (req_0 at t0 left out).
  expect(await storage.usage.summarize('acct_1', t0 + 1, t0 + 2 * HOUR)).toEqual({
    requests: 202,
    units: 214,
    byCategory: {
      tts: { requests: 102, units: 114 },
      uncategorized: { requests: 100, units: 100 },
    },
    byKeyCategory: {
      production: { requests: 2, units: 10 },
      uncategorized: { requests: 200, units: 204 },
    },
  })
  expect(
    await storage.usage.summarize('acct_1', t0, t0 + 2 * HOUR, { keyCategory: 'uncategorized' }),
  ).toMatchObject({ requests: 201, units: 205 })
  const old = await storage.usage.logs('key_1', { limit: 1 })
  expect(old.data[0]).toMatchObject({ id: 'req_199', keyCategory: null })
  const logged = await storage.usage.logs('key_2', { limit: 3 })
  expect(logged.data.map((e) => e.keyCategory)).toEqual([null, 'production', 'production'])
  // Pruning the old events takes them out of the migrated totals.
  expect(await storage.usage.prune(t0 + 2 * HOUR)).toBe(203)
  expect((await storage.usage.summarize('acct_1', 0, t0 + 2 * HOUR)).requests).toBe(0)
}
