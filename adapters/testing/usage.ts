/**
 * @module tollbooth/testing/usage
 *
 * Conformance tests of `UsageStore`: idempotent recording, period totals by category, request
 * logs newest first with a cursor, and pruning.
 */

import { describe, expect, it } from 'vitest'
import type { UsageEvent } from '../../src/index.js'
import { type GetStorage, keyId, makeEvent, newAccountId } from './fixtures.js'

/** Times below this are used only by the prune test, so a shared storage still counts right. */
const ANCIENT = 1_000_000

export function usageStoreTests(get: GetStorage): void {
  describe('usage', () => {
    it('records events idempotently by id', async () => {
      const accountId = newAccountId()
      const e = makeEvent({ accountId, units: 3 })
      await get().usage.record([e, e])
      await get().usage.record([{ ...e, units: 100 }])
      const s = await get().usage.summarize(accountId, e.time, e.time + 1)
      expect(s).toEqual({ requests: 1, units: 3, byCategory: { tts: { requests: 1, units: 3 } } })
      const logs = await get().usage.logs(e.keyId, { limit: 10 })
      expect(logs.data).toEqual([e])
      await get().usage.record([])
    })

    it('summarizes [from, to) by category, leaving other accounts out', async () => {
      const accountId = newAccountId()
      const from = 1_767_225_600_000
      const to = from + 1000
      await get().usage.record([
        makeEvent({ accountId, time: from, units: 2, category: 'tts' }),
        makeEvent({ accountId, time: from + 500, units: 0.5, category: 'tts' }),
        makeEvent({ accountId, time: to - 1, units: 4, category: 'stt' }),
        makeEvent({ accountId, time: from + 7, units: 1, category: null }),
        makeEvent({ accountId, time: from - 1, units: 50, category: 'tts' }),
        makeEvent({ accountId, time: to, units: 60, category: 'tts' }),
        makeEvent({ time: from + 3, units: 70, category: 'tts' }),
      ])
      expect(await get().usage.summarize(accountId, from, to)).toEqual({
        requests: 4,
        units: 7.5,
        byCategory: {
          tts: { requests: 2, units: 2.5 },
          stt: { requests: 1, units: 4 },
          uncategorized: { requests: 1, units: 1 },
        },
      })
      expect(await get().usage.summarize(newAccountId(), from, to)).toEqual({
        requests: 0,
        units: 0,
        byCategory: {},
      })
    })

    it('pages a key log newest first by time then id, with a cursor', async () => {
      const key = keyId(7)
      const accountId = newAccountId()
      const events: UsageEvent[] = []
      for (let i = 0; i < 25; i++) {
        // Groups of equal times make the id the tie-breaker.
        events.push(makeEvent({ keyId: key, accountId, time: 1_767_225_600_000 + (i % 8) * 10 }))
      }
      await get().usage.record(events.slice(0, 13))
      await get().usage.record(events.slice(13))
      await get().usage.record([makeEvent({ keyId: keyId(8), accountId })])
      const want = events
        .slice()
        .sort((a, b) => b.time - a.time || (b.id < a.id ? -1 : 1))
        .map((e) => e.id)
      const got: string[] = []
      const sizes: number[] = []
      let cursor: string | null = null
      for (let n = 0; n < 10; n++) {
        const page = await get().usage.logs(key, { limit: 10, cursor })
        got.push(...page.data.map((e) => e.id))
        sizes.push(page.data.length)
        cursor = page.nextCursor
        if (cursor === null) break
      }
      expect(sizes).toEqual([10, 10, 5])
      expect(got).toEqual(want)
      const first = await get().usage.logs(key, { limit: 1 })
      expect(first.data[0]).toEqual(events.find((e) => e.id === want[0]))
      expect(await get().usage.logs(keyId(9), { limit: 5 })).toEqual({ data: [], nextCursor: null })
    })

    it('prunes events older than a time and reports how many', async () => {
      const key = keyId(10)
      const accountId = newAccountId()
      const old = [1000, 2000, 3000].map((time) => makeEvent({ keyId: key, accountId, time }))
      const kept = [ANCIENT - 1, ANCIENT + 5].map((time) =>
        makeEvent({ keyId: key, accountId, time }),
      )
      await get().usage.record([...old, ...kept])
      expect(await get().usage.prune(3001)).toBe(3)
      expect(await get().usage.prune(3001)).toBe(0)
      const logs = await get().usage.logs(key, { limit: 10 })
      expect(logs.data.map((e) => e.time)).toEqual([ANCIENT + 5, ANCIENT - 1])
      expect((await get().usage.summarize(accountId, 0, ANCIENT + 10)).requests).toBe(2)
      expect(await get().usage.prune(ANCIENT)).toBe(1)
      expect((await get().usage.logs(key, { limit: 10 })).data).toEqual([kept[1]])
    })
  })
}
