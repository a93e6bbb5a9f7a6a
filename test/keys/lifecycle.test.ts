import { describe, expect, it } from 'vitest'
import { createTollbooth, isTollboothError } from '../../src/index.js'
import { request, SECRET, setup } from '../support/core.js'

const DAY = 86_400_000

describe('key lifecycle', () => {
  it('creates a key shown once, stored only as a hash', async () => {
    const { tb } = setup({ prefixes: { consumption: 'plabs_sk_live_' } })
    const { key, record } = await tb.keys.create({
      accountId: 'acct_1',
      name: 'Production Key',
      expiresInDays: 90,
    })
    expect(key.startsWith('plabs_sk_live_')).toBe(true)
    expect(record.id).toMatch(/^key_/)
    expect(record.start).toBe(key.slice(0, 'plabs_sk_live_'.length + 4))
    expect(record.expiresAt).toBe(record.createdAt + 90 * DAY)
    expect(JSON.stringify(record)).not.toContain(key)
    const stored = await tb.storage.keys.get(record.id)
    expect(stored?.hash).toMatch(/^[0-9a-f]{64}$/)
    expect(JSON.stringify(stored)).not.toContain(key.slice(14))
  })

  it('defaults the name to "Default" and refuses bad input without storing anything', async () => {
    const { tb } = setup()
    const { record } = await tb.keys.create({ accountId: 'acct_1' })
    expect(record.name).toBe('Default')
    const bad = [
      { accountId: 'acct_1', name: '' },
      { accountId: 'acct_1', name: 'x'.repeat(101) },
      { accountId: 'acct_1', expiresInDays: 0 },
      { accountId: 'acct_1', expiresInDays: 366 },
      { accountId: 'acct_1', expiresInDays: 1.5 },
      { accountId: 'acct_1', unknownField: true },
      { accountId: 'acct_{1}' },
      { accountId: 'acct_1', kind: 'admin' },
    ]
    for (const input of bad) {
      const err = await tb.keys.create(input as never).catch((e) => e)
      expect(isTollboothError(err), JSON.stringify(input)).toBe(true)
      expect(err.status).toBe(400)
      expect(err.code).toBe('invalid_request')
      expect(err.issues.length).toBeGreaterThan(0)
    }
    expect((await tb.keys.list('acct_1')).data).toHaveLength(1)
  })

  it('lists newest first with cursor pagination and never a secret', async () => {
    const { tb, clock } = setup()
    const keys: string[] = []
    for (let i = 0; i < 45; i++) {
      clock.advance(1)
      keys.push((await tb.keys.create({ accountId: 'acct_1', name: `k${i}` })).key)
    }
    await tb.keys.create({ accountId: 'acct_2', name: 'other' })
    const names: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page = await tb.keys.list('acct_1', { limit: 20, cursor })
      pages++
      for (const k of page.data) names.push(k.name)
      expect(page.hasMore).toBe(page.nextCursor !== null)
      const text = JSON.stringify(page)
      for (const key of keys) expect(text).not.toContain(key)
      expect(text).not.toContain('hash')
      cursor = page.nextCursor
    } while (cursor)
    expect(pages).toBe(3)
    expect(names).toEqual(Array.from({ length: 45 }, (_, i) => `k${44 - i}`))
  })

  it('updates name, active flag and category', async () => {
    const { tb } = setup()
    const { record } = await tb.keys.create({ accountId: 'acct_1' })
    const updated = await tb.keys.update(record.id, {
      name: 'renamed',
      active: false,
      category: 'staging',
    })
    expect(updated).toMatchObject({ name: 'renamed', active: false, category: 'staging' })
    await expect(tb.keys.update(record.id, { name: '' })).rejects.toMatchObject({ status: 400 })
    await expect(tb.keys.update('key_missing', { name: 'x' })).rejects.toMatchObject({
      status: 404,
    })
  })

  it('answers 404 for another account’s key exactly like a missing one', async () => {
    const { tb } = setup()
    const { record } = await tb.keys.create({ accountId: 'acct_1' })
    const other = await tb.keys.get(record.id, { accountId: 'acct_2' }).catch((e) => e)
    const missing = await tb.keys.get('key_nope', { accountId: 'acct_2' }).catch((e) => e)
    expect(other.status).toBe(404)
    expect(other.message).toBe(missing.message)
    await expect(tb.keys.revoke(record.id, { accountId: 'acct_2' })).rejects.toMatchObject({
      status: 404,
    })
  })

  it('deletes only a key that was never used', async () => {
    const { tb } = setup()
    const unused = await tb.keys.create({ accountId: 'acct_1' })
    await tb.keys.delete(unused.record.id)
    await expect(tb.keys.get(unused.record.id)).rejects.toMatchObject({ status: 404 })

    const used = await tb.keys.create({ accountId: 'acct_1' })
    const d = await tb.authenticate(request(used.key))
    await tb.settle(d, { status: 200 })
    const err = await tb.keys.delete(used.record.id).catch((e) => e)
    expect(err.status).toBe(409)
    expect(err.message).toMatch(/deactivate/)
    expect((await tb.keys.get(used.record.id)).id).toBe(used.record.id)
  })

  it('revokes at once, softly', async () => {
    const { tb } = setup()
    const { key, record } = await tb.keys.create({ accountId: 'acct_1' })
    expect((await tb.authenticate(request(key))).allowed).toBe(true)
    const revoked = await tb.keys.revoke(record.id)
    expect(revoked.revokedAt).not.toBeNull()
    const d = await tb.authenticate(request(key))
    expect(d).toMatchObject({ allowed: false, status: 401, message: 'Invalid API Key' })
    expect((await tb.keys.list('acct_1')).data).toHaveLength(0)
    expect((await tb.keys.list('acct_1', { includeRevoked: true })).data).toHaveLength(1)
  })

  it('rotates atomically: the new key works and the old one is refused at once', async () => {
    const { tb } = setup()
    const old = await tb.keys.create({
      accountId: 'acct_1',
      name: 'Production Key',
      category: 'production',
      limits: { quotas: { daily: 5 } },
    })
    expect((await tb.authenticate(request(old.key))).allowed).toBe(true)
    const next = await tb.keys.rotate(old.record.id)
    expect(next.key).not.toBe(old.key)
    expect(next.record).toMatchObject({
      name: 'Production Key',
      category: 'production',
      limits: { quotas: { daily: 5 } },
    })
    expect((await tb.authenticate(request(next.key))).allowed).toBe(true)
    expect(await tb.authenticate(request(old.key))).toMatchObject({ allowed: false, status: 401 })
    await expect(tb.keys.rotate(old.record.id)).rejects.toMatchObject({ status: 409 })
  })

  it('keeps the old key working during a rotation grace period, then refuses it', async () => {
    const { tb, clock } = setup()
    const old = await tb.keys.create({ accountId: 'acct_1' })
    const next = await tb.keys.rotate(old.record.id, { gracePeriodMs: 60_000 })
    expect((await tb.authenticate(request(old.key))).allowed).toBe(true)
    expect((await tb.authenticate(request(next.key))).allowed).toBe(true)
    clock.advance(59_999)
    expect((await tb.authenticate(request(old.key))).allowed).toBe(true)
    clock.advance(1)
    expect(await tb.authenticate(request(old.key))).toMatchObject({
      allowed: false,
      message: 'Invalid API Key',
    })
    expect((await tb.authenticate(request(next.key))).allowed).toBe(true)
  })

  it('records lastUsedAt in batches', async () => {
    const { tb, clock } = setup()
    const { key, record } = await tb.keys.create({ accountId: 'acct_1' })
    clock.advance(5_000)
    await tb.settle(await tb.authenticate(request(key)), { status: 200 })
    expect((await tb.storage.keys.get(record.id))?.lastUsedAt).toBeNull()
    await tb.flush()
    expect((await tb.keys.get(record.id)).lastUsedAt).toBe(clock.now())
  })

  describe('lastUsedAt to a resolution (usage.lastUsedResolutionMs)', () => {
    /** One settled request at the clock's time; then the stored lastUsedAt after a flush. */
    const use = async (tb: ReturnType<typeof setup>['tb'], key: string, id: string) => {
      await tb.settle(await tb.authenticate(request(key)), { status: 200 })
      await tb.flush()
      return (await tb.storage.keys.get(id))?.lastUsedAt
    }

    it('writes it at most once a minute by default, then the next use after that', async () => {
      const { tb, clock } = setup()
      const { key, record } = await tb.keys.create({ accountId: 'acct_1' })
      const t = clock.now()
      expect(await use(tb, key, record.id)).toBe(t)
      clock.advance(30_000)
      expect(await use(tb, key, record.id)).toBe(t)
      clock.advance(29_999)
      expect(await use(tb, key, record.id)).toBe(t)
      clock.advance(1)
      expect(await use(tb, key, record.id)).toBe(t + 60_000)
      clock.advance(90_000)
      expect(await use(tb, key, record.id)).toBe(t + 150_000)
    })

    it('writes every use with 0', async () => {
      const { tb, clock } = setup({ usage: { lastUsedResolutionMs: 0 } })
      const { key, record } = await tb.keys.create({ accountId: 'acct_1' })
      for (let i = 0; i < 3; i++) {
        clock.advance(7)
        expect(await use(tb, key, record.id)).toBe(clock.now())
      }
    })

    it('counts a time another instance stored: neither instance writes within the resolution', async () => {
      const { tb, clock } = setup()
      const { key, record } = await tb.keys.create({ accountId: 'acct_1' })
      const t = clock.now()
      expect(await use(tb, key, record.id)).toBe(t)
      // A second instance on the same storage, and one without a cache: each reads the key
      // with its stored lastUsedAt, which is recent enough.
      const other = createTollbooth({ secret: SECRET, clock, storage: tb.storage })
      const uncached = createTollbooth({ secret: SECRET, clock, storage: tb.storage, cache: false })
      clock.advance(59_000)
      expect(await use(other, key, record.id)).toBe(t)
      expect(await use(uncached, key, record.id)).toBe(t)
      clock.advance(1_000)
      expect(await use(uncached, key, record.id)).toBe(t + 60_000)
      // The second instance's entry still holds t: it writes the same time (the later wins).
      expect(await use(other, key, record.id)).toBe(t + 60_000)
      await Promise.all([other.close(), uncached.close()])
    })

    it('refuses a negative or fractional resolution, naming the option', () => {
      for (const bad of [-1, 0.5, Number.NaN, '60000']) {
        expect(() => setup({ usage: { lastUsedResolutionMs: bad } } as never)).toThrow(
          /usage\.lastUsedResolutionMs/,
        )
      }
    })
  })

  it('does not accept keys made under another secret', async () => {
    const { tb } = setup()
    const { tb: other } = setup({ secret: `${SECRET}-other` } as never)
    const { key } = await other.keys.create({ accountId: 'acct_1' })
    expect(await tb.authenticate(request(key))).toMatchObject({ allowed: false, status: 401 })
  })
})
