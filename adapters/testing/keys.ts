/**
 * @module tollbooth/testing/keys
 *
 * Conformance tests of `KeyStore`: unique ids and hashes, lookups, newest-first cursor pages
 * with filters, updates, atomic rotation, deletion and batched `lastUsedAt`.
 */

import { describe, expect, it } from 'vitest'
import type { KeyRecord } from '../../src/internal.js'
import { type GetStorage, keyId, makeKey, newAccountId } from './fixtures.js'

/** Walks every page of an account's keys and returns them with the page sizes. */
async function allPages(
  get: GetStorage,
  accountId: string,
  options: { limit: number; kind?: KeyRecord['kind']; includeRevoked?: boolean },
): Promise<{ ids: string[]; sizes: number[] }> {
  const ids: string[] = []
  const sizes: number[] = []
  let cursor: string | null = null
  for (let n = 0; n < 100; n++) {
    const page = await get().keys.list(accountId, { ...options, cursor })
    ids.push(...page.data.map((k) => k.id))
    sizes.push(page.data.length)
    cursor = page.nextCursor
    if (cursor === null) return { ids, sizes }
  }
  throw new Error('list never returned a null nextCursor')
}

export function keyStoreTests(get: GetStorage): void {
  describe('keys', () => {
    it('stores a key and reads it back by id and by hash, field for field', async () => {
      const k = makeKey({ expiresAt: 1_800_000_000_000, lastUsedAt: 1_767_225_600_500 })
      await get().keys.insert(k)
      expect(await get().keys.get(k.id)).toEqual(k)
      expect(await get().keys.getByHash(k.hash)).toEqual(k)
    })

    it('answers null for an unknown id or hash', async () => {
      expect(await get().keys.get(keyId(1))).toBeNull()
      expect(await get().keys.getByHash('0'.repeat(64))).toBeNull()
    })

    it('rejects a duplicate id and changes nothing', async () => {
      const k = makeKey()
      await get().keys.insert(k)
      const dup = makeKey({ id: k.id, accountId: k.accountId, name: 'dup' })
      await expect(get().keys.insert(dup)).rejects.toBeDefined()
      expect(await get().keys.get(k.id)).toEqual(k)
      expect(await get().keys.getByHash(dup.hash)).toBeNull()
    })

    it('rejects a duplicate hash and changes nothing', async () => {
      const k = makeKey()
      await get().keys.insert(k)
      const dup = makeKey({ hash: k.hash, accountId: k.accountId })
      await expect(get().keys.insert(dup)).rejects.toBeDefined()
      expect(await get().keys.get(dup.id)).toBeNull()
      expect(await get().keys.getByHash(k.hash)).toEqual(k)
    })

    it('lists 45 keys newest first in cursor pages of 20', async () => {
      const accountId = newAccountId()
      const keys = Array.from({ length: 45 }, () => makeKey({ accountId }))
      // Inserted out of order: the order must come from the ids, not from insertion.
      for (const k of keys.slice().reverse()) await get().keys.insert(k)
      await get().keys.insert(makeKey()) // another account's key stays out
      const { ids, sizes } = await allPages(get, accountId, { limit: 20 })
      expect(sizes).toEqual([20, 20, 5])
      expect(ids).toEqual(keys.map((k) => k.id).reverse())
      const first = await get().keys.list(accountId, { limit: 20 })
      expect(first.data[0]).toEqual(keys[44])
    })

    it('gives an empty last page a null cursor and an exact-size page too', async () => {
      const accountId = newAccountId()
      expect(await get().keys.list(accountId, { limit: 10 })).toEqual({
        data: [],
        nextCursor: null,
      })
      for (let i = 0; i < 10; i++) await get().keys.insert(makeKey({ accountId }))
      const { sizes } = await allPages(get, accountId, { limit: 10 })
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(10)
      expect(sizes[0]).toBe(10)
    })

    it('filters by kind and leaves revoked keys out unless asked, across pages', async () => {
      const accountId = newAccountId()
      const keys = Array.from({ length: 30 }, (_, i) =>
        makeKey({
          accountId,
          kind: i % 3 === 0 ? 'management' : 'consumption',
          revokedAt: i % 5 === 0 ? 1_767_225_700_000 : null,
        }),
      )
      for (const k of keys) await get().keys.insert(k)
      const expectIds = (f: (k: KeyRecord) => boolean) =>
        keys
          .filter(f)
          .map((k) => k.id)
          .reverse()
      const mgmt = await allPages(get, accountId, { limit: 4, kind: 'management' })
      expect(mgmt.ids).toEqual(expectIds((k) => k.kind === 'management' && k.revokedAt === null))
      const cons = await allPages(get, accountId, {
        limit: 7,
        kind: 'consumption',
        includeRevoked: true,
      })
      expect(cons.ids).toEqual(expectIds((k) => k.kind === 'consumption'))
      const live = await allPages(get, accountId, { limit: 9 })
      expect(live.ids).toEqual(expectIds((k) => k.revokedAt === null))
      const all = await allPages(get, accountId, { limit: 100, includeRevoked: true })
      expect(all.ids).toEqual(expectIds(() => true))
    })

    it('updates only the patched fields and returns the new record', async () => {
      const k = makeKey()
      await get().keys.insert(k)
      const patch = {
        name: 'Renamed',
        active: false,
        metadata: { env: 'prod' },
        limits: { quotas: { monthly: 9 } },
        scopes: [],
        category: null,
      }
      const next = await get().keys.update(k.id, patch)
      expect(next).toEqual({ ...k, ...patch })
      expect(await get().keys.get(k.id)).toEqual({ ...k, ...patch })
      expect(await get().keys.getByHash(k.hash)).toEqual({ ...k, ...patch })
      expect(await get().keys.update(keyId(2), { name: 'x' })).toBeNull()
    })

    it('returns metadata and limits with their fields in the order given, nested too', async () => {
      // JSON keeps an object's fields in the order written; a store that reorders them (as
      // PostgreSQL's jsonb does: shorter names first) answers other bytes for the same key.
      const metadata = {
        zeta: 1,
        a: { y: [{ d: 1.5, c: 'x' }], b: 1.5, aa: null },
        m: -0.25,
        longest_name_first: true,
        b: [1e21, 0.1 + 0.2, 5e-324],
      }
      const limits = {
        rateLimits: [{ windowMs: 1000, limit: 5 }],
        quotas: { monthly: 9, daily: 3 },
        concurrency: 2,
      }
      const text = (r: KeyRecord | null | undefined) =>
        r ? JSON.stringify([r.metadata, r.limits]) : r
      const given = JSON.stringify([metadata, limits])
      const k = makeKey({ metadata, limits })
      await get().keys.insert(k)
      expect(text(await get().keys.get(k.id))).toBe(given)
      expect(text(await get().keys.getByHash(k.hash))).toBe(given)
      expect(text((await get().keys.list(k.accountId, { limit: 10 })).data[0])).toBe(given)
      const other = makeKey({ accountId: k.accountId })
      await get().keys.insert(other)
      expect(text(await get().keys.update(other.id, { metadata, limits }))).toBe(given)
      expect(text(await get().keys.getByHash(other.hash))).toBe(given)
      const next = makeKey({ accountId: k.accountId, metadata, limits })
      await get().keys.rotate(k.id, { revokedAt: 1_767_226_000_000 }, next)
      expect(text(await get().keys.getByHash(next.hash))).toBe(given)
    })

    it('applies only the patchable fields of a patch, whatever else an untyped caller sends', async () => {
      const k = makeKey()
      await get().keys.insert(k)
      const other = makeKey()
      const patch = {
        name: 'Renamed',
        id: other.id,
        hash: other.hash,
        accountId: other.accountId,
        kind: k.kind === 'consumption' ? 'management' : 'consumption',
        start: 'sk_other',
        createdAt: 1,
        lastUsedAt: 2,
      }
      const next = await get().keys.update(k.id, patch as never)
      expect(next).toEqual({ ...k, name: 'Renamed' })
      expect(await get().keys.get(k.id)).toEqual({ ...k, name: 'Renamed' })
      expect(await get().keys.getByHash(k.hash)).toEqual({ ...k, name: 'Renamed' })
      expect(await get().keys.get(other.id)).toBeNull()
      expect(await get().keys.getByHash(other.hash)).toBeNull()
      expect((await get().keys.list(k.accountId, { limit: 10 })).data.map((r) => r.id)).toEqual([
        k.id,
      ])
      expect(await get().keys.delete(k.id)).toBe(true)
      expect(await get().keys.getByHash(k.hash)).toBeNull()
    })

    it('hides a key revoked by update from the default list', async () => {
      const k = makeKey()
      await get().keys.insert(k)
      await get().keys.update(k.id, { revokedAt: 1_767_225_900_000 })
      expect((await get().keys.list(k.accountId, { limit: 10 })).data).toEqual([])
      const withRevoked = await get().keys.list(k.accountId, { limit: 10, includeRevoked: true })
      expect(withRevoked.data.map((r) => r.revokedAt)).toEqual([1_767_225_900_000])
      expect((await get().keys.getByHash(k.hash))?.revokedAt).toBe(1_767_225_900_000)
    })

    it('rotates atomically: inserts the new key and patches the old one', async () => {
      const old = makeKey()
      await get().keys.insert(old)
      const next = makeKey({ accountId: old.accountId, name: old.name })
      const patch = { revokedAt: 1_767_226_000_000 }
      const result = await get().keys.rotate(old.id, patch, next)
      expect(result).toEqual({ ...old, ...patch })
      expect(await get().keys.getByHash(next.hash)).toEqual(next)
      expect(await get().keys.getByHash(old.hash)).toEqual({ ...old, ...patch })
      const listed = await get().keys.list(old.accountId, { limit: 10 })
      expect(listed.data.map((k) => k.id)).toEqual([next.id])
    })

    it('never moves a revocation later: a rotation that raced a revoke leaves the key revoked', async () => {
      // Instance B read the key before instance A revoked it, then rotates it with a grace
      // period: the revocation stands, at its own time, and the new key is inserted.
      const old = makeKey()
      await get().keys.insert(old)
      await get().keys.update(old.id, { revokedAt: 1_767_225_900_000 })
      const next = makeKey({ accountId: old.accountId, name: old.name })
      const result = await get().keys.rotate(old.id, { revokedAt: 1_767_229_500_000 }, next)
      expect(result?.revokedAt).toBe(1_767_225_900_000)
      expect((await get().keys.getByHash(old.hash))?.revokedAt).toBe(1_767_225_900_000)
      expect(await get().keys.getByHash(next.hash)).toEqual(next)
      // A rotation sooner than a revocation still to come (a grace period) brings it forward.
      const other = makeKey()
      await get().keys.insert(other)
      await get().keys.update(other.id, { revokedAt: 1_767_229_500_000 })
      const third = makeKey({ accountId: other.accountId })
      await get().keys.rotate(other.id, { revokedAt: 1_767_225_900_000 }, third)
      expect((await get().keys.get(other.id))?.revokedAt).toBe(1_767_225_900_000)
    })

    it("refuses (409) to rotate a key revoked at the new key's creation, changing nothing", async () => {
      // Two rotations without a grace period that both read the key unrevoked: the second to
      // reach the store finds it revoked by the first, and gives it no second successor.
      const old = makeKey()
      await get().keys.insert(old)
      const first = makeKey({ accountId: old.accountId, createdAt: old.createdAt + 1_000 })
      const patch = { revokedAt: first.createdAt }
      expect(await get().keys.rotate(old.id, patch, first)).toEqual({ ...old, ...patch })
      const second = makeKey({ accountId: old.accountId, createdAt: first.createdAt })
      await expect(
        get().keys.rotate(old.id, { revokedAt: second.createdAt }, second),
      ).rejects.toMatchObject({ status: 409, code: 'conflict' })
      expect(await get().keys.get(second.id)).toBeNull()
      expect(await get().keys.getByHash(second.hash)).toBeNull()
      expect(await get().keys.get(old.id)).toEqual({ ...old, ...patch })
      const listed = await get().keys.list(old.accountId, { limit: 10 })
      expect(listed.data.map((k) => k.id)).toEqual([first.id])
    })

    it('rotates nothing when the old key is missing', async () => {
      const next = makeKey()
      expect(await get().keys.rotate(keyId(3), { revokedAt: 1 }, next)).toBeNull()
      expect(await get().keys.get(next.id)).toBeNull()
      expect(await get().keys.getByHash(next.hash)).toBeNull()
    })

    it('rejects a rotation whose new key collides and leaves the old key untouched', async () => {
      const old = makeKey()
      const other = makeKey({ accountId: old.accountId })
      await get().keys.insert(old)
      await get().keys.insert(other)
      const next = makeKey({ accountId: old.accountId, hash: other.hash })
      await expect(get().keys.rotate(old.id, { revokedAt: 5 }, next)).rejects.toBeDefined()
      expect(await get().keys.get(old.id)).toEqual(old)
      expect(await get().keys.get(next.id)).toBeNull()
      expect(await get().keys.getByHash(other.hash)).toEqual(other)
    })

    it('deletes a key for good, by id and by hash, and frees its hash', async () => {
      const k = makeKey()
      await get().keys.insert(k)
      expect(await get().keys.delete(k.id)).toBe(true)
      expect(await get().keys.delete(k.id)).toBe(false)
      expect(await get().keys.get(k.id)).toBeNull()
      expect(await get().keys.getByHash(k.hash)).toBeNull()
      expect((await get().keys.list(k.accountId, { limit: 5, includeRevoked: true })).data).toEqual(
        [],
      )
      const again = makeKey({ hash: k.hash, accountId: k.accountId })
      await get().keys.insert(again)
      expect(await get().keys.getByHash(k.hash)).toEqual(again)
    })

    it('touches lastUsedAt in batches, keeping the later time', async () => {
      const a = makeKey()
      const b = makeKey({ lastUsedAt: 5_000 })
      await get().keys.insert(a)
      await get().keys.insert(b)
      await get().keys.touch([
        { id: a.id, lastUsedAt: 2_000 },
        { id: b.id, lastUsedAt: 4_000 },
        { id: a.id, lastUsedAt: 3_000 },
        { id: a.id, lastUsedAt: 1_000 },
        { id: keyId(4), lastUsedAt: 9_000 },
      ])
      expect((await get().keys.get(a.id))?.lastUsedAt).toBe(3_000)
      expect((await get().keys.get(b.id))?.lastUsedAt).toBe(5_000)
      await get().keys.touch([{ id: b.id, lastUsedAt: 6_000 }])
      expect((await get().keys.getByHash(b.hash))?.lastUsedAt).toBe(6_000)
      await get().keys.touch([])
      expect(await get().keys.get(keyId(4))).toBeNull()
    })
  })
}
