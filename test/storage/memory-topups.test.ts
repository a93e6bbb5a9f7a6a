/**
 * @module test/storage/memory-topups
 *
 * The memory store drops a top-up's idempotency record once it expires, whatever was kept
 * before it. Its records were one list in the order kept, dropped from the front while expired:
 * a billing grant's record (kept 35 days) at the front held back every 24-hour record behind it
 * for 35 days.
 */

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { expect, test } from 'vitest'
import { blankAccount } from '../../src/metering/accounts.js'
import { memoryStorage } from '../../src/storage/memory.js'

const DAY_MS = 86_400_000
const N = 20_000

test("a 24-hour record is dropped once expired, behind a grant's 35-day one too", async () => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heap = () => {
    gc()
    gc()
    return process.memoryUsage().heapUsed
  }
  const { accounts } = memoryStorage()
  const ids = Array.from({ length: 100 }, (_, i) => `acct_${i}`)
  for (const id of ids) await accounts.ensure(blankAccount(id, 0))
  const keys = Array.from({ length: N }, (_, i) => `order-${i}-${'k'.repeat(40)}`)
  const t0 = 1_000_000
  // A grant first, then N keyed top-ups of a day, spread over the accounts.
  await accounts.topUp('acct_0', {
    key: 'grant g_1',
    amount: 1,
    now: t0,
    expiresAt: t0 + 35 * DAY_MS,
  })
  const before = heap()
  for (let i = 0; i < N; i++)
    await accounts.topUp(ids[i % ids.length]!, {
      key: keys[i]!,
      amount: 1,
      now: t0 + 1,
      expiresAt: t0 + 1 + DAY_MS,
    })
  const kept = heap() - before
  // A day and an hour later, one top-up on an account of its own.
  await accounts.ensure(blankAccount('acct_late', 0))
  const now = t0 + DAY_MS + 3_600_000
  await accounts.topUp('acct_late', { key: 'late', amount: 1, now, expiresAt: now + DAY_MS })
  const left = heap() - before
  console.log(`records of ${N} top-ups: ${kept} heap bytes kept, ${left} left after their expiry`)
  expect(kept).toBeGreaterThan(N * 40)
  expect(left).toBeLessThan(kept / 10)
  // The grant's record is still live: the same grant is not credited again.
  const again = await accounts.topUp('acct_0', {
    key: 'grant g_1',
    amount: 1,
    now,
    expiresAt: now + DAY_MS,
  })
  expect(again?.applied).toBe(false)
  // An expired record counts as none: its key credits again.
  expect(
    (await accounts.topUp('acct_1', { key: keys[1]!, amount: 1, now, expiresAt: now + DAY_MS }))
      ?.applied,
  ).toBe(true)
})
