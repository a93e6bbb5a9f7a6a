/**
 * @module test/money/rollover-one-write
 *
 * A month's close is one write, on every store alike: the period moved on, the closed
 * month's figures and its use beyond the plan taken from the prepaid balance land together
 * or not at all. Before, the close was a compare-and-set and then a separate `addBalance`:
 * a call that timed out (or a process that died) between the two left the month closed and
 * its overage never taken (balance 60 where 10 was due), and a top-up on another instance
 * between them recorded the next month's end balance before the overage came out of it.
 */

import { describe, expect, test } from 'vitest'
import { createTollbooth, type Storage, StorageUnavailableError } from '../../src/internal.js'
import { fourStores } from '../support/stores.js'
import { FEB, HOUR, january, overPlan } from './january.js'

const MAR = Date.UTC(2026, 2, 1)

const stores = await fourStores('money-rollover-write')

/**
 * Every account write of `storage` lands, and the first one that moves the period on then
 * fails as a call whose answer never came back (a timeout after the server applied it).
 */
function answerLostAfterClose(storage: Storage): { lost: () => number } {
  const accounts = storage.accounts
  const update = accounts.update.bind(accounts)
  let lost = 0
  accounts.update = async (id, patch, ifPeriodStart) => {
    const r = await update(id, patch, ifPeriodStart)
    if (r !== null && patch.periodStart !== undefined && lost === 0) {
      lost++
      throw new StorageUnavailableError('Storage call timed out')
    }
    return r
  }
  const addBalance = accounts.addBalance.bind(accounts)
  accounts.addBalance = async (id, amount) => {
    const r = await addBalance(id, amount)
    if (amount < 0 && lost === 0) {
      lost++
      throw new StorageUnavailableError('Storage call timed out')
    }
    return r
  }
  return { lost: () => lost }
}

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`the close of a month on ${name}`, () => {
    test('a close whose answer is lost still took the overage (balance 10, not 60)', async () => {
      const storage = await make!()
      const { tb, clock } = await january(storage, 60)
      try {
        const fault = answerLostAfterClose(storage)
        clock.set(FEB + 2 * HOUR)
        await expect(tb.accounts.get('acct_1')).rejects.toBeInstanceOf(StorageUnavailableError)
        expect(fault.lost()).toBe(1)
        const after = await tb.accounts.get('acct_1')
        expect(after.balance).toBe(10)
        expect(await tb.storage.accounts.get('acct_1')).toMatchObject({
          balance: 10,
          periodStart: FEB,
        })
        const jan = await tb.usage.get('acct_1', { month: '2026-01' })
        expect(jan.credits).toMatchObject({ used: 150, balance: 60 })
      } finally {
        await tb.close()
      }
    })

    test('a top-up while another instance closes January: February ends with 10 + the top-up', async () => {
      const storage = await make!()
      const { tb, clock } = await january(storage, 60)
      // A second instance on the same store, its close paused between its writes if it has two.
      const other = createTollbooth(overPlan(storage, clock))
      try {
        // Nothing read in February: the first read is in March's first hour, so January is
        // closed for good and February (not yet) is worked out at each read.
        clock.set(MAR + 10 * 60_000)
        const accounts = storage.accounts
        const addBalance = accounts.addBalance.bind(accounts)
        let release!: () => void
        const paused = new Promise<void>((r) => {
          release = r
        })
        let reached!: () => void
        const atPause = new Promise<void>((r) => {
          reached = r
        })
        let first = true
        accounts.addBalance = async (id, amount) => {
          if (amount < 0 && first) {
            first = false
            reached()
            await paused
          }
          return addBalance(id, amount)
        }
        const closing = other.accounts.get('acct_1')
        // Either the close is paused between its writes, or it was one write and is done.
        await Promise.race([atPause, closing])
        await tb.accounts.addCredits('acct_1', 100)
        release()
        await closing
        const feb = await tb.usage.get('acct_1', { month: '2026-02' })
        expect(feb.credits).toMatchObject({ used: 0, balance: 10 })
        expect((await tb.accounts.get('acct_1')).balance).toBe(110)
      } finally {
        await other.close()
        await tb.close()
      }
    })
  })
