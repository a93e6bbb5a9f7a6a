/**
 * @module tollbooth/testing/usage
 *
 * Conformance tests of `UsageStore`: idempotent recording, period totals by usage category and
 * by key category, filtered by either (admitted requests only, exact after thousands of events
 * over hours and days, with ranges on and off hour boundaries), the request log's fields (time
 * to first byte, a refused request's code, the key's category), logs newest first with a
 * cursor, and pruning that keeps the totals exact.
 */

import { describe, expect, it } from 'vitest'
import type { UsageEvent, UsageFilter, UsageSummary } from '../../src/internal.js'
import { type GetStorage, keyId, makeEvent, newAccountId } from './fixtures.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
/** Times below this (1970-01-11) are used only by the prune tests, so a shared storage counts right. */
const ANCIENT = 10 * DAY

/** The summary of `[from, to)` added up from the events themselves. */
function expected(
  events: UsageEvent[],
  accountId: string,
  from: number,
  to: number,
  filter: UsageFilter = {},
) {
  const out: UsageSummary = { requests: 0, units: 0, byCategory: {}, byKeyCategory: {} }
  for (const e of events) {
    if (e.accountId !== accountId || e.time < from || e.time >= to || e.code !== null) continue
    const cat = e.category ?? 'uncategorized'
    const keyCat = e.keyCategory ?? 'uncategorized'
    if (filter.category !== undefined && filter.category !== cat) continue
    if (filter.keyCategory !== undefined && filter.keyCategory !== keyCat) continue
    out.requests++
    out.units += e.units
    for (const [by, name] of [
      [out.byCategory, cat],
      [out.byKeyCategory, keyCat],
    ] as const) {
      // Own properties only: `__proto__` and `constructor` are categories like any other.
      if (!Object.hasOwn(by, name))
        Object.defineProperty(by, name, {
          value: { requests: 0, units: 0 },
          enumerable: true,
          writable: true,
          configurable: true,
        })
      const c = by[name]!
      c.requests++
      c.units += e.units
    }
  }
  return out
}

/** No requests: what an account without usage in a range summarizes to. */
const NONE: UsageSummary = { requests: 0, units: 0, byCategory: {}, byKeyCategory: {} }

/** A deterministic pseudo-random sequence (the figures are the same on every run). */
function random(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1_103_515_245 + 12_345) % 2_147_483_648
    return x / 2_147_483_648
  }
}

export function usageStoreTests(get: GetStorage): void {
  describe('usage', () => {
    it('records events idempotently by id', async () => {
      const accountId = newAccountId()
      const e = makeEvent({ accountId, units: 3 })
      await get().usage.record([e, e])
      await get().usage.record([{ ...e, units: 100 }])
      const s = await get().usage.summarize(accountId, e.time, e.time + 1)
      expect(s).toEqual({
        requests: 1,
        units: 3,
        byCategory: { tts: { requests: 1, units: 3 } },
        byKeyCategory: { uncategorized: { requests: 1, units: 3 } },
      })
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
        byKeyCategory: { uncategorized: { requests: 4, units: 7.5 } },
      })
      expect(await get().usage.summarize(newAccountId(), from, to)).toEqual(NONE)
    })

    it('sums fractional units as decimals', async () => {
      const accountId = newAccountId()
      const from = 1_767_225_600_000
      // In binary doubles 0.1 + 0.2 is 0.30000000000000004, and ten of 0.0008 0.008000000000000002.
      const events = [
        makeEvent({ accountId, time: from, units: 0.1, category: 'a' }),
        makeEvent({ accountId, time: from + 1, units: 0.2, category: 'a' }),
        ...Array.from({ length: 10 }, (_, i) =>
          makeEvent({ accountId, time: from + 2 + i, units: 0.0008, category: 'b' }),
        ),
      ]
      await get().usage.record(events)
      expect(await get().usage.summarize(accountId, from, from + HOUR)).toEqual({
        requests: 12,
        units: 0.308,
        byCategory: { a: { requests: 2, units: 0.3 }, b: { requests: 10, units: 0.008 } },
        byKeyCategory: { uncategorized: { requests: 12, units: 0.308 } },
      })
      // Whole hours read the stored totals, not the events.
      const day = await get().usage.summarize(accountId, from, from + DAY)
      expect(day.units).toBe(0.308)
      expect(day.byCategory.a!.units).toBe(0.3)
    })

    it('records the key category and summarizes and filters by it', async () => {
      const accountId = newAccountId()
      const key = keyId(12)
      // One hour on its boundaries (read from totals) and a sub-hour range (read from events).
      const hour = 1_767_225_600_000 + 9 * HOUR
      const at = (ms: number, over: Partial<UsageEvent>) =>
        makeEvent({ accountId, keyId: key, time: hour + ms, ...over })
      const events = [
        at(10, { units: 2, category: 'tts', keyCategory: 'production' }),
        at(20, { units: 3, category: 'stt', keyCategory: 'production' }),
        at(30, { units: 0.5, category: 'tts', keyCategory: 'staging' }),
        at(40, { units: 1, category: null, keyCategory: 'partner-acme' }),
        at(50, { units: 4, category: 'tts', keyCategory: null }),
        // Names that are not plain identifiers, and a key category equal to a usage category.
        at(60, { units: 1, category: '__proto__', keyCategory: 'constructor' }),
        at(70, { units: 1, category: 'tts', keyCategory: 'tts' }),
        // A refused request: logged with its key category, never counted.
        at(80, { units: 0, keyCategory: 'production', status: 429, code: 'rate_limited' }),
      ]
      await get().usage.record(events)
      const logged = await get().usage.logs(key, { limit: 20 })
      expect(logged.data.map((e) => e.keyCategory)).toEqual([
        'production',
        'tts',
        'constructor',
        null,
        'partner-acme',
        'staging',
        'production',
        'production',
      ])
      for (const [from, to] of [
        [hour, hour + HOUR],
        [hour + 5, hour + 75],
      ] as const) {
        const all = await get().usage.summarize(accountId, from, to)
        expect(all).toEqual(expected(events, accountId, from, to))
        expect(all.byKeyCategory).toEqual({
          production: { requests: 2, units: 5 },
          staging: { requests: 1, units: 0.5 },
          'partner-acme': { requests: 1, units: 1 },
          uncategorized: { requests: 1, units: 4 },
          constructor: { requests: 1, units: 1 },
          tts: { requests: 1, units: 1 },
        })
        expect(Object.getPrototypeOf(all.byKeyCategory)).toBe(Object.prototype)
        expect(
          await get().usage.summarize(accountId, from, to, { keyCategory: 'production' }),
        ).toEqual({
          requests: 2,
          units: 5,
          byCategory: { tts: { requests: 1, units: 2 }, stt: { requests: 1, units: 3 } },
          byKeyCategory: { production: { requests: 2, units: 5 } },
        })
        for (const filter of [
          { keyCategory: 'uncategorized' },
          { category: 'tts' },
          { category: 'tts', keyCategory: 'staging' },
          { category: 'stt', keyCategory: 'staging' },
          { keyCategory: 'constructor' },
        ])
          expect(await get().usage.summarize(accountId, from, to, filter)).toEqual(
            expected(events, accountId, from, to, filter),
          )
        expect(await get().usage.summarize(accountId, from, to, { keyCategory: 'none' })).toEqual(
          NONE,
        )
      }
    })

    it('logs time to first byte and a refused request, which summaries do not count', async () => {
      const accountId = newAccountId()
      const key = keyId(11)
      const time = 1_767_225_600_000 + 5 * HOUR
      const served = makeEvent({ accountId, keyId: key, time, durationMs: 80.5, ttfbMs: 12.25 })
      const refused = makeEvent({
        accountId,
        keyId: key,
        time: time + 1,
        status: 429,
        code: 'rate_limited',
        units: 0,
        durationMs: 0,
        ttfbMs: null,
      })
      await get().usage.record([served, refused])
      expect((await get().usage.logs(key, { limit: 10 })).data).toEqual([refused, served])
      const one = {
        requests: 1,
        units: 1,
        byCategory: { tts: { requests: 1, units: 1 } },
        byKeyCategory: { uncategorized: { requests: 1, units: 1 } },
      }
      // On hour boundaries (totals) and off them (the events).
      expect(await get().usage.summarize(accountId, time - 5 * HOUR, time + DAY)).toEqual(one)
      expect(await get().usage.summarize(accountId, time, time + 2)).toEqual(one)
    })

    it('summarizes 3,000 events over three days exactly, on and off hour boundaries', async () => {
      const accountId = newAccountId()
      const other = newAccountId()
      const start = Date.UTC(2026, 0, 31, 0)
      const rnd = random(7)
      const cats = ['tts', 'stt', null, 'voice clone']
      const keyCats = ['production', 'staging', null, 'partner: acme']
      const events: UsageEvent[] = []
      for (let i = 0; i < 3000; i++) {
        const refused = rnd() < 0.1
        events.push(
          makeEvent({
            accountId: rnd() < 0.9 ? accountId : other,
            // Three days, the last one in the next month; units in quarters add up exactly.
            time: start + Math.floor(rnd() * 3 * DAY),
            units: refused ? 0 : Math.floor(rnd() * 40) / 4,
            category: cats[Math.floor(rnd() * cats.length)]!,
            keyCategory: keyCats[Math.floor(rnd() * keyCats.length)]!,
            status: refused ? 429 : 200,
            code: refused ? 'rate_limited' : null,
          }),
        )
      }
      // Out of time order, in batches, one batch sent twice.
      for (let i = 0; i < events.length; i += 500)
        await get().usage.record(events.slice(i, i + 500))
      await get().usage.record(events.slice(1000, 1500))
      const ranges: Array<[number, number]> = [
        [Date.UTC(2026, 0, 1), Date.UTC(2026, 1, 1)],
        [Date.UTC(2026, 1, 1), Date.UTC(2026, 2, 1)],
        [start, start + DAY],
        [start + 5 * HOUR, start + 2 * DAY + 7 * HOUR],
        [start + 5 * HOUR + 1234, start + 2 * DAY + 7 * HOUR - 99],
        [start + 30 * HOUR + 17, start + 30 * HOUR + 40_000],
        [0, start + 10 * DAY],
        // A range of 130 years (more day totals than one script call takes on Redis).
        [0, Date.UTC(2100, 0, 1)],
      ]
      for (const [from, to] of ranges)
        for (const id of [accountId, other])
          expect(await get().usage.summarize(id, from, to)).toEqual(expected(events, id, from, to))
      // Filtered by key category, by usage category, and by both.
      const filters: UsageFilter[] = [
        { keyCategory: 'production' },
        { keyCategory: 'uncategorized' },
        { keyCategory: 'partner: acme', category: 'voice clone' },
        { category: 'uncategorized' },
        { keyCategory: 'nobody' },
      ]
      for (const filter of filters)
        for (const [from, to] of ranges.slice(2, 6))
          expect(await get().usage.summarize(accountId, from, to, filter)).toEqual(
            expected(events, accountId, from, to, filter),
          )
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

    it('keeps totals exact when a prune cuts an hour in two', async () => {
      const accountId = newAccountId()
      const rnd = random(11)
      // Hours 100 to 103 of 1970, far from other tests' events.
      const t0 = 100 * HOUR
      const events = Array.from({ length: 400 }, () =>
        makeEvent({
          accountId,
          time: t0 + Math.floor(rnd() * 4 * HOUR),
          units: Math.floor(rnd() * 8) / 2,
          category: rnd() < 0.5 ? 'tts' : 'stt',
          keyCategory: rnd() < 0.5 ? 'production' : null,
        }),
      )
      await get().usage.record(events)
      const cut = t0 + 2 * HOUR + 1_800_000
      const gone = events.filter((e) => e.time < cut).length
      expect(await get().usage.prune(cut)).toBe(gone)
      const left = events.filter((e) => e.time >= cut)
      for (const [from, to] of [
        [t0, t0 + 4 * HOUR],
        [t0 + 2 * HOUR, t0 + 3 * HOUR],
        [cut, t0 + 4 * HOUR],
        [0, ANCIENT],
      ] as const) {
        expect(await get().usage.summarize(accountId, from, to)).toEqual(
          expected(left, accountId, from, to),
        )
        const filter = { keyCategory: 'production' }
        expect(await get().usage.summarize(accountId, from, to, filter)).toEqual(
          expected(left, accountId, from, to, filter),
        )
      }
      // Recording a pruned event again counts it again, once.
      const again = events.find((e) => e.time < cut)!
      await get().usage.record([again, again])
      expect((await get().usage.summarize(accountId, 0, ANCIENT)).requests).toBe(left.length + 1)
      expect(await get().usage.prune(ANCIENT)).toBe(left.length + 1)
      expect(await get().usage.summarize(accountId, 0, ANCIENT)).toEqual(NONE)
    })
  })
}
