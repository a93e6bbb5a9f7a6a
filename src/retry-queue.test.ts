/**
 * @module retry-queue.test
 *
 * The settle queue and a cancel whose admission was never sent: a rejection that says so
 * (`notSent`, on the error or in its `cause` chain) leaves nothing to cancel, so the cancel is
 * not applied and frees its room at once; any other outcome applies it.
 */

import { describe, expect, it } from 'vitest'
import { StorageUnavailableError } from './errors.js'
import { memoryStorage } from './index.js'
import { createSettleQueue, notSent } from './retry-queue.js'
import type { SettleOp } from './storage/types.js'

const unsentError = () =>
  Object.assign(new Error('the client is not connected; nothing was sent'), { notSent: true })

const cancel = (): SettleOp[] => [
  { type: 'cancel', key: '{a}:a:1', ttlMs: 60_000, at: 0, checks: [], holdId: '1' },
]

/** A queue on the memory store's counters, and how many settles reached them. */
const queue = (max = 10) => {
  const { counters } = memoryStorage()
  let settles = 0
  const counted = {
    ...counters,
    settle: (ops: ReadonlyArray<SettleOp>, now: number) => {
      settles++
      return counters.settle(ops, now)
    },
  }
  const reported: unknown[] = []
  const q = createSettleQueue({
    counters: counted,
    now: () => 0,
    report: (e) => reported.push(e),
    max,
  })
  return { q, settles: () => settles, reported }
}

describe('settle queue: a cancel of a call never sent', () => {
  it('reads notSent on the error and down its cause chain', () => {
    expect(notSent(unsentError())).toBe(true)
    expect(
      notSent(new StorageUnavailableError('Storage unavailable', { cause: unsentError() })),
    ).toBe(true)
    expect(notSent(new Error('Connection is closed.'))).toBe(false)
    expect(notSent(Object.assign(new Error('x'), { notSent: 'yes' }))).toBe(false)
    expect(notSent(undefined)).toBe(false)
  })

  it('is not applied, and frees its room at once', async () => {
    const { q, settles, reported } = queue(1)
    for (let i = 0; i < 5; i++) {
      q.add(cancel(), Promise.reject(unsentError()), true)
      // Its room is back once its first attempt has ended.
      await Promise.resolve()
      await Promise.resolve()
    }
    expect(await q.drain(1000)).toBe(true)
    expect(settles()).toBe(0)
    expect(q.stats()).toEqual({ pending: 0, retried: 0, dropped: 0 })
    expect(reported).toEqual([])
  })

  it('is applied when its call failed otherwise or succeeded (it may have run)', async () => {
    const { q, settles } = queue()
    q.add(cancel(), Promise.reject(new Error('Connection is closed.')), true)
    q.add(cancel(), Promise.resolve(), true)
    expect(await q.drain(1000)).toBe(true)
    expect(settles()).toBe(2)
    expect(q.stats()).toMatchObject({ pending: 0, retried: 2 })
  })

  it('a settle whose first attempt was never sent is retried (it never ran)', async () => {
    const { q, settles } = queue()
    q.add(cancel(), Promise.reject(unsentError()), false)
    expect(await q.drain(1000)).toBe(true)
    expect(settles()).toBe(1)
  })

  it('handles the first attempt of an entry dropped from a full queue (and of an empty one)', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const { q, reported } = queue(1)
      let fail: (err: Error) => void = () => {}
      q.add(cancel(), new Promise((_, reject) => (fail = reject)), true)
      // Dropped: the queue is full; their first attempts fail later.
      for (let i = 0; i < 3; i++)
        q.add(cancel(), Promise.reject(new Error('timeout exceeded when trying to connect')), true)
      q.add([], Promise.reject(new Error('nothing to retry')), false)
      fail(unsentError())
      await new Promise((r) => setTimeout(r, 20))
      expect(q.stats()).toEqual({ pending: 0, retried: 0, dropped: 3 })
      expect(reported).toHaveLength(3)
      // Before: 4 unhandled rejections, each the end of a Node process by default.
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
