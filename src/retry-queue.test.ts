/**
 * @module retry-queue.test
 *
 * The settle queue and a cancel whose admission was never sent: a rejection that says so
 * (`notSent`, on the error or in its `cause` chain) leaves nothing to cancel, so the cancel is
 * not applied and frees its room at once; any other outcome applies it. An entry takes a place
 * in the bound only once its first attempt has ended and left it to apply.
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
    expect(q.stats()).toEqual({ pending: 0, waiting: 0, retried: 0, dropped: 0 })
    expect(reported).toEqual([])
  })

  it('takes no place in the bound while its first attempt is under way', async () => {
    // Room for 2; 20 cancels whose admissions have not ended (the core timed out first).
    const { q, settles, reported } = queue(2)
    const firsts: Array<{ resolve: () => void; reject: (err: Error) => void }> = []
    for (let i = 0; i < 20; i++)
      q.add(
        cancel(),
        new Promise<void>((resolve, reject) => firsts.push({ resolve, reject })),
        true,
      )
    expect(q.stats()).toEqual({ pending: 20, waiting: 20, retried: 0, dropped: 0 })
    // 17 turn out never sent: nothing to cancel, nothing dropped.
    for (const f of firsts.slice(0, 17)) f.reject(unsentError())
    await new Promise((r) => setTimeout(r, 0))
    expect(q.stats()).toEqual({ pending: 3, waiting: 3, retried: 0, dropped: 0 })
    // 3 may have run (one succeeded, two failed otherwise): 2 take the room, 1 is dropped.
    firsts[17]!.resolve()
    firsts[18]!.reject(new Error('Connection terminated unexpectedly'))
    firsts[19]!.reject(new Error('Connection terminated unexpectedly'))
    expect(await q.drain(1000)).toBe(true)
    expect(q.stats()).toEqual({ pending: 0, waiting: 0, retried: 2, dropped: 1 })
    expect(settles()).toBe(2)
    expect(reported).toHaveLength(1)
    expect(String(reported[0])).toMatch(/settle retry queue full \(2\): 1 operation/)
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
      // The first takes the room, the 2 others are dropped: the queue is full.
      for (let i = 0; i < 3; i++)
        q.add(cancel(), Promise.reject(new Error('timeout exceeded when trying to connect')), true)
      q.add([], Promise.reject(new Error('nothing to retry')), false)
      fail(unsentError())
      await new Promise((r) => setTimeout(r, 20))
      expect(q.stats()).toEqual({ pending: 0, waiting: 0, retried: 1, dropped: 2 })
      expect(reported).toHaveLength(2)
      // Before: 4 unhandled rejections, each the end of a Node process by default.
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
