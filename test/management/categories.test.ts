/**
 * `002_2f2523503321cfc2.txt`: categories "appear in dashboard filters and analytics" and the
 * alias "shows up in logs". The key list filters by `?category=` (paged, the cursor still
 * exact), a key's log carries its alias and category and filters by the requests' category,
 * `GET /usage` breaks usage down by the keys' categories (`?groupBy=keyCategory`) and filters
 * by either kind of category, and the portal's API takes the same filter.
 */

import { describe, expect, it } from 'vitest'
import { InvalidRequestError } from '../../src/index.js'
import { useManagement } from './fixture.js'

describe('categories and aliases on the management API (002)', () => {
  const f = useManagement('hono')

  it('lists the keys of one category, a page at a time', async () => {
    const made: Record<string, string[]> = { production: [], staging: [] }
    for (let i = 0; i < 7; i++) {
      const category = i % 3 === 0 ? 'staging' : 'production'
      const { id } = await f.create({ name: `k${i}`, category })
      made[category]!.push(id)
    }
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const q: string = `/keys?category=production&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
      const r = await f.api('GET', q, { token: f.mk })
      expect(r.status).toBe(200)
      expect(r.body.data.length).toBeLessThanOrEqual(2)
      for (const k of r.body.data) expect(k.category).toBe('production')
      seen.push(...r.body.data.map((k: { id: string }) => k.id))
      cursor = r.body.nextCursor
      expect(r.body.hasMore).toBe(cursor !== null)
    } while (cursor)
    // Newest first: descending ids (keys made in the same millisecond order by their id).
    expect(seen).toEqual([...made.production!].sort().reverse())
    const staging = await f.api('GET', '/keys?category=staging', { token: f.mk })
    expect(staging.body.data.map((k: { id: string }) => k.id)).toEqual(
      [...made.staging!].sort().reverse(),
    )
    const none = await f.api('GET', '/keys?category=sandbox', { token: f.mk })
    expect([none.status, none.body.data, none.body.hasMore]).toEqual([200, [], false])
    const bad = await f.api('GET', `/keys?category=${'x'.repeat(65)}`, { token: f.mk })
    expect([bad.status, bad.body.issues[0].path]).toEqual([400, 'category'])
  })

  it("carries the key's alias and category in its log, and filters it by category", async () => {
    const { id, key } = await f.create({ name: 'ci-pipeline', category: 'staging' })
    expect((await f.synthesize(key)).status).toBe(200)
    expect((await f.synthesize(key)).status).toBe(200)
    await f.tb.flush()
    const logs = await f.api('GET', `/keys/${id}/logs`, { token: f.mk })
    expect(logs.body.data).toHaveLength(2)
    for (const e of logs.body.data)
      expect(e).toMatchObject({ alias: 'ci-pipeline', keyCategory: 'staging', category: 'tts' })
    const tts = await f.api('GET', `/keys/${id}/logs?category=tts`, { token: f.mk })
    expect(tts.body.data).toHaveLength(2)
    const other = await f.api('GET', `/keys/${id}/logs?category=stt`, { token: f.mk })
    expect([other.status, other.body.data, other.body.hasMore]).toEqual([200, [], false])
  })

  it("breaks usage down by the key's category and filters by it", async () => {
    const prod = await f.create({ name: 'web', category: 'production' })
    const ci = await f.create({ name: 'ci', category: 'staging' })
    const bare = await f.create({ name: 'laptop' })
    for (const key of [prod.key, prod.key, ci.key, bare.key])
      expect((await f.synthesize(key)).status).toBe(200)
    // A key moved to another category: its earlier requests stay where they were made.
    const moved = await f.api('PATCH', `/keys/${ci.id}`, {
      token: f.mk,
      json: { category: 'production' },
    })
    expect(moved.status).toBe(200)
    expect((await f.synthesize(ci.key)).status).toBe(200)
    const get = (q: string) => f.api('GET', `/usage${q}`, { token: f.mk })

    const byRoute = await get('')
    expect(byRoute.body).toMatchObject({
      groupBy: 'category',
      filter: { category: null, keyCategory: null },
      breakdown: { tts: 5 },
      requestCount: 5,
    })
    const byKey = await get('?groupBy=keyCategory')
    expect(byKey.status).toBe(200)
    expect(byKey.body).toMatchObject({
      credits: { used: 5 },
      groupBy: 'keyCategory',
      breakdown: { production: 3, staging: 1, uncategorized: 1 },
      requests: { production: 3, staging: 1, uncategorized: 1 },
      requestCount: 5,
    })
    // Filtered: the request figures count only the category asked for; credits stay the
    // account's (what it is billed), the same with or without a filter.
    const prodOnly = await get('?groupBy=keyCategory&keyCategory=production')
    expect(prodOnly.body).toMatchObject({
      credits: { used: 5 },
      filter: { category: null, keyCategory: 'production' },
      breakdown: { production: 3 },
      requestCount: 3,
    })
    expect((await get('?keyCategory=uncategorized')).body).toMatchObject({
      breakdown: { tts: 1 },
      requestCount: 1,
    })
    expect((await get('?keyCategory=staging&category=tts')).body.requestCount).toBe(1)
    const none = await get('?groupBy=keyCategory&category=stt')
    expect([none.status, none.body.breakdown, none.body.requestCount]).toEqual([200, {}, 0])
    // Another account sees only its own.
    const other = await f.api('GET', '/usage?groupBy=keyCategory', { token: f.otherMk })
    expect([other.body.breakdown, other.body.requestCount]).toEqual([{}, 0])

    // A past month: its credits are all its requests, whatever the filter.
    f.clock.advance(31 * 86_400_000)
    const past = await get('?month=2026-03&groupBy=keyCategory&keyCategory=staging')
    expect(past.body).toMatchObject({
      credits: { used: 5 },
      breakdown: { staging: 1 },
      requestCount: 1,
    })
  })

  it('refuses a bad groupBy or category filter on /usage, naming the field', async () => {
    for (const [q, field] of [
      ['?groupBy=key', 'groupBy'],
      ['?groupBy=', 'groupBy'],
      ['?keyCategory=prod%00uction', 'keyCategory'],
      ['?category=%00', 'category'],
      ['?keyCategory=', 'keyCategory'],
      [`?keyCategory=${'x'.repeat(65)}`, 'keyCategory'],
      ['?groupBy=keyCategory&keyCategories=production', 'keyCategories'],
    ] as const) {
      const r = await f.api('GET', `/usage${q}`, { token: f.mk })
      expect([q, r.status, r.body.code]).toEqual([q, 400, 'invalid_request'])
      expect(r.body.error).toContain(field)
      // An unknown field is named in the message of the query as a whole.
      const paths = r.body.issues.map((i: { path: string }) => i.path)
      expect(paths).toContain(field === 'keyCategories' ? '(query)' : field)
    }
    // A lone surrogate cannot arrive in a URL (it decodes to U+FFFD); through the API it can.
    for (const [options, field] of [
      [{ keyCategory: '\ud800' }, 'keyCategory'],
      [{ category: 'a\udc00b' }, 'category'],
    ] as const) {
      const err = await f.tb.usage.get('acct_a', options).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect((err as InvalidRequestError).message).toBe(
        `Invalid request: ${field}: must be valid Unicode (it contains a lone UTF-16 surrogate)`,
      )
    }
    const err = await f.tb.usage
      .summarize('acct_a', 0, 1, { keyCategory: 'a\u0000' })
      .catch((e: unknown) => e)
    expect((err as Error).message).toMatch(/keyCategory: must not contain a NUL/)
    await expect(f.tb.usage.get('acct_a', { groupBy: 'day' as never })).rejects.toThrow(
      /groupBy: must be 'category' or 'keyCategory'/,
    )
  })
})
