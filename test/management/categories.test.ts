/**
 * `002_2f2523503321cfc2.txt`: categories "appear in dashboard filters" and the alias "shows up
 * in logs". The key list filters by `?category=` (paged, the cursor still exact), a key's log
 * carries its alias and category and filters by the requests' category, and the portal's API
 * takes the same filter.
 */

import { describe, expect, it } from 'vitest'
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
})
