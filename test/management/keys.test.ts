/**
 * The key endpoints over real HTTP, mounted under `/v1` in Hono, Express and Fastify: create,
 * list with a cursor, get, update, revoke, delete-if-unused, rotate, request logs, management
 * keys, and another account's key answering 404 like a missing one. Each test checks the
 * effect behind the answer (the key works or not on the product route, what the store holds).
 */

import { describe, expect, it } from 'vitest'
import { useManagement } from './fixture.js'
import { FRAMEWORKS, T0 } from './servers.js'

const DAY = 86_400_000

describe.each(FRAMEWORKS)('key endpoints on %s', (framework) => {
  const f = useManagement(framework)

  it('creates a key shown once, that works on the product route', async () => {
    const r = await f.api('POST', '/keys', {
      token: f.mk,
      json: { name: 'Production Key', expiresInDays: 90 },
    })
    expect(r.status).toBe(201)
    expect(r.headers.get('cache-control')).toBe('no-store')
    expect(r.body).toEqual({
      id: expect.stringMatching(/^key_/),
      key: expect.stringMatching(/^plabs_sk_live_/),
      name: 'Production Key',
      prefix: `${r.body.key.slice(0, 18)}...`,
      createdAt: new Date(T0).toISOString(),
      expiresAt: new Date(T0 + 90 * DAY).toISOString(),
      message: 'Save this key - it will not be shown again.',
    })
    expect((await f.synthesize(r.body.key)).body).toEqual({ ok: true, accountId: 'acct_a' })
    const stored = await f.tb.keys.get(r.body.id)
    expect(stored).toMatchObject({
      accountId: 'acct_a',
      kind: 'consumption',
      name: 'Production Key',
    })
  })

  it('defaults the name and takes category, scopes, metadata and limits', async () => {
    const { id } = await f.create({
      category: 'tts',
      scopes: ['tts:write'],
      metadata: { team: 'voice' },
      limits: {
        quotas: { daily: 2 },
        timeBlocks: [{ start: '2026-03-21T00:00:00Z', end: T0 + DAY }],
      },
    })
    const r = await f.api('GET', `/keys/${id}`, { token: f.mk })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({
      id,
      name: 'Default',
      kind: 'consumption',
      category: 'tts',
      scopes: ['tts:write'],
      metadata: { team: 'voice' },
      active: true,
      lastUsedAt: null,
      revokedAt: null,
      limits: {
        quotas: { daily: 2 },
        timeBlocks: [{ start: '2026-03-21T00:00:00.000Z', end: '2026-03-22T00:00:00.000Z' }],
      },
    })
    expect(r.body.key).toBeUndefined()
    expect((await f.tb.keys.get(id)).limits.timeBlocks).toEqual([{ start: T0, end: T0 + DAY }])
  })

  it('lists keys newest first with a cursor, never showing a secret', async () => {
    const keys: string[] = []
    for (let i = 0; i < 5; i++) {
      f.clock.advance(1000)
      keys.push((await f.create({ name: `k${i}` })).key)
    }
    const seen: string[] = []
    let cursor: string | null = null
    const pages: boolean[] = []
    do {
      const q: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : '?limit=2'
      const r = await f.api('GET', `/keys${q}`, { token: f.mk })
      expect(r.status).toBe(200)
      for (const k of keys) expect(r.text).not.toContain(k)
      expect(r.text).not.toContain('hash')
      for (const item of r.body.data) {
        expect(Object.keys(item)).toEqual(
          expect.arrayContaining(['id', 'name', 'prefix', 'createdAt', 'expiresAt', 'lastUsedAt']),
        )
        expect(item.prefix).toMatch(/^plabs_sk_live_[A-Za-z0-9]{4}\.\.\.$/)
        seen.push(item.name)
      }
      pages.push(r.body.hasMore)
      cursor = r.body.nextCursor
      expect(r.body.hasMore).toBe(cursor !== null)
    } while (cursor)
    expect(seen).toEqual(['k4', 'k3', 'k2', 'k1', 'k0'])
    expect(pages).toEqual([true, true, false])
    // The other account sees none of them.
    const other = await f.api('GET', '/keys', { token: f.otherMk })
    expect(other.body).toEqual({ data: [], nextCursor: null, hasMore: false })
  })

  it('deactivates and reactivates a key with PATCH, and renames it', async () => {
    const { id, key } = await f.create({ name: 'a' })
    let r = await f.api('PATCH', `/keys/${id}`, { token: f.mk, json: { active: false, name: 'b' } })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ id, active: false, name: 'b' })
    expect((await f.synthesize(key)).body).toEqual({
      error: 'Inactive API Key',
      code: 'inactive_api_key',
    })
    r = await f.api('PATCH', `/keys/${id}`, {
      token: f.mk,
      json: { active: true, limits: { concurrency: 1 } },
    })
    expect(r.body).toMatchObject({ active: true, limits: { concurrency: 1 } })
    expect((await f.synthesize(key)).status).toBe(200)
  })

  it('revokes with DELETE (204): the key stops at once, the record stays', async () => {
    const { id, key } = await f.create()
    expect((await f.synthesize(key)).status).toBe(200)
    const r = await f.api('DELETE', `/keys/${id}`, { token: f.mk })
    expect(r.status).toBe(204)
    expect(r.text).toBe('')
    expect((await f.synthesize(key)).status).toBe(401)
    expect((await f.api('GET', '/keys', { token: f.mk })).body.data).toEqual([])
    const all = await f.api('GET', '/keys?includeRevoked=true', { token: f.mk })
    expect(all.body.data).toEqual([
      expect.objectContaining({ id, revokedAt: new Date(T0).toISOString() }),
    ])
    expect((await f.api('GET', `/keys/${id}`, { token: f.mk })).status).toBe(200)
    // Revocation is final: no 200 `active: true` for a key that stays refused.
    const back = await f.api('PATCH', `/keys/${id}`, { token: f.mk, json: { active: true } })
    expect([back.status, back.body.code]).toEqual([409, 'conflict'])
    expect((await f.synthesize(key)).status).toBe(401)
    // Revoking again is a no-op.
    expect((await f.api('DELETE', `/keys/${id}`, { token: f.mk })).status).toBe(204)
  })

  it('deletes for good only a key never used; a used key answers 409', async () => {
    const unused = await f.create()
    expect(
      (await f.api('DELETE', `/keys/${unused.id}?permanent=true`, { token: f.mk })).status,
    ).toBe(204)
    expect((await f.api('GET', `/keys/${unused.id}`, { token: f.mk })).status).toBe(404)
    expect(await f.tb.storage.keys.get(unused.id)).toBeNull()

    const used = await f.create()
    expect((await f.synthesize(used.key)).status).toBe(200)
    const r = await f.api('DELETE', `/keys/${used.id}?permanent=true`, { token: f.mk })
    expect(r.status).toBe(409)
    expect(r.body).toEqual({
      error: expect.stringMatching(/deactivate it instead/),
      code: 'conflict',
    })
    expect((await f.synthesize(used.key)).status).toBe(200)
  })

  it('rotates: a new key with the same settings, the old one refused at once', async () => {
    const { id, key } = await f.create({ name: 'Production Key', category: 'tts' })
    const r = await f.api('POST', `/keys/${id}/rotate`, { token: f.mk })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({
      id: expect.stringMatching(/^key_/),
      key: expect.stringMatching(/^plabs_sk_live_/),
      name: 'Production Key',
      message: 'Save this key - it will not be shown again.',
      rotatedFrom: id,
    })
    expect(r.body.id).not.toBe(id)
    expect((await f.synthesize(key)).body).toEqual({
      error: 'Invalid API Key',
      code: 'invalid_api_key',
    })
    expect((await f.synthesize(r.body.key)).status).toBe(200)
    expect((await f.tb.keys.get(r.body.id)).category).toBe('tts')
    // A revoked key cannot be rotated again.
    expect((await f.api('POST', `/keys/${id}/rotate`, { token: f.mk })).status).toBe(409)
  })

  it('rotates with a grace period during which both keys work', async () => {
    const { id, key } = await f.create()
    const r = await f.api('POST', `/keys/${id}/rotate`, {
      token: f.mk,
      json: { gracePeriodMs: 60_000 },
    })
    expect(r.status).toBe(200)
    expect((await f.synthesize(key)).status).toBe(200)
    expect((await f.synthesize(r.body.key)).status).toBe(200)
    f.clock.advance(60_000)
    expect((await f.synthesize(key)).status).toBe(401)
    expect((await f.synthesize(r.body.key)).status).toBe(200)
  })

  it("pages through a key's request log", async () => {
    const { id, key } = await f.create()
    for (let i = 0; i < 3; i++) {
      f.clock.advance(1000)
      expect((await f.synthesize(key)).status).toBe(200)
    }
    const first = await f.api('GET', `/keys/${id}/logs?limit=2`, { token: f.mk })
    expect(first.status).toBe(200)
    expect(first.body.data).toHaveLength(2)
    expect(first.body.data[0]).toMatchObject({
      keyId: id,
      time: new Date(T0 + 3000).toISOString(),
      method: 'POST',
      status: 200,
      units: 1,
      category: 'tts',
    })
    expect(first.body.data[0].accountId).toBeUndefined()
    expect(first.body.hasMore).toBe(true)
    const next = await f.api(
      'GET',
      `/keys/${id}/logs?limit=2&cursor=${encodeURIComponent(first.body.nextCursor)}`,
      {
        token: f.mk,
      },
    )
    expect(next.body.data.map((e: { time: string }) => e.time)).toEqual([
      new Date(T0 + 1000).toISOString(),
    ])
    expect(next.body).toMatchObject({ nextCursor: null, hasMore: false })
    const listed = await f.api('GET', `/keys/${id}`, { token: f.mk })
    // To a minute (usage.lastUsedResolutionMs): the uses 1 s and 2 s later write nothing.
    expect(listed.body.lastUsedAt).toBe(new Date(T0 + 1000).toISOString())
  })

  it('manages management keys: f.create (shown once), list, revoke', async () => {
    const r = await f.api('POST', '/management-keys', {
      token: f.mk,
      json: { name: 'mgmt_key_01' },
    })
    expect(r.status).toBe(201)
    expect(r.body).toMatchObject({ name: 'mgmt_key_01', key: expect.stringMatching(/^mk_/) })
    const fresh = r.body.key as string
    expect((await f.api('GET', '/keys', { token: fresh })).status).toBe(200)
    // A management key is refused on the product route.
    expect((await f.synthesize(fresh)).status).toBe(403)
    const list = await f.api('GET', '/management-keys', { token: fresh })
    expect(list.body.data.map((k: { kind: string }) => k.kind)).toEqual([
      'management',
      'management',
    ])
    expect(list.text).not.toContain(fresh)
    expect((await f.api('DELETE', `/management-keys/${r.body.id}`, { token: f.mk })).status).toBe(
      204,
    )
    expect((await f.api('GET', '/keys', { token: fresh })).status).toBe(401)
    // The kinds do not mix: a management key is not found on /keys, nor a key on /management-keys.
    expect((await f.api('GET', `/keys/${r.body.id}`, { token: f.mk })).status).toBe(404)
    const { id } = await f.create()
    expect((await f.api('DELETE', `/management-keys/${id}`, { token: f.mk })).status).toBe(404)
  })

  it("answers another account's key exactly like a missing one (404) on every route", async () => {
    const theirs = (await f.tb.keys.create({ accountId: 'acct_b', name: 'theirs' })).record.id
    const theirMk = (await f.tb.keys.create({ accountId: 'acct_b', kind: 'management' })).record.id
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/keys/ID'],
      ['PATCH', '/keys/ID', { name: 'mine now' }],
      ['DELETE', '/keys/ID'],
      ['DELETE', '/keys/ID?permanent=true'],
      ['POST', '/keys/ID/rotate'],
      ['GET', '/keys/ID/logs'],
      ['GET', '/management-keys/ID'],
      ['DELETE', '/management-keys/ID'],
      ['POST', '/management-keys/ID/rotate'],
    ]
    for (const [method, path, json] of routes) {
      const id = path.startsWith('/management') ? theirMk : theirs
      const missing = await f.api(method, path.replace('ID', 'key_doesnotexist'), {
        token: f.mk,
        json,
      })
      const foreign = await f.api(method, path.replace('ID', id), { token: f.mk, json })
      expect([method, path, foreign.status]).toEqual([method, path, 404])
      expect(foreign.body).toEqual(missing.body)
      expect(foreign.body).toEqual({ error: 'API key not found', code: 'not_found' })
    }
    expect(await f.tb.keys.get(theirs)).toMatchObject({ name: 'theirs', revokedAt: null })
    expect(await f.tb.keys.get(theirMk)).toMatchObject({ revokedAt: null })
  })
})
