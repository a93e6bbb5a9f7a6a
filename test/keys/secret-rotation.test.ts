/**
 * @module test/keys/secret-rotation
 *
 * Rotating `secret` with `previousSecrets`, on every store: keys and provider keys stored
 * under a previous secret keep working on an instance started with the new one, new keys and
 * provider keys are made under the new one, revoking an old key takes effect at once, and
 * `tb.stats().previousSecrets` counts what was found only under a previous secret (the sign
 * that one is still needed). Without `previousSecrets`, the old keys are refused, as before.
 */

import { describe, expect, it } from 'vitest'
import { createTollbooth, manualClock, type Storage } from '../../src/internal.js'
import { request, SECRET, T0 } from '../support/core.js'
import { fourStores } from '../support/stores.js'

const NEW_SECRET = 'a-new-secret-a-new-secret-a-new-secret-7'
const stores = await fourStores('rotation')

describe.each(Object.entries(stores))('previousSecrets on %s', (_name, make) => {
  it.skipIf(make === null)(
    'old keys and provider keys keep working under the new secret; new ones use it',
    async () => {
      const storage: Storage = await make!()
      const clock = manualClock(T0)
      const before = createTollbooth({ secret: SECRET, clock, storage })
      const old = await before.keys.create({ accountId: 'acct_rot' })
      const gone = await before.keys.create({ accountId: 'acct_rot' })
      await before.providerKeys.store('acct_rot', { provider: 'openai', apiKey: 'sk-old-123456' })
      await before.close()

      // The new secret alone: every key and provider key made before is unreadable (as before).
      const alone = createTollbooth({ secret: NEW_SECRET, clock, storage })
      expect(await alone.authenticate(request(old.key))).toMatchObject({
        allowed: false,
        status: 401,
      })
      await expect(alone.providerKeys.get('acct_rot', 'openai')).rejects.toThrow()
      await alone.close()

      const after = createTollbooth({
        secret: NEW_SECRET,
        previousSecrets: [SECRET],
        clock,
        storage,
      })
      expect(after.stats().previousSecrets).toEqual({ keys: 0, providerKeys: 0 })
      const d = await after.authenticate(request(old.key))
      expect(d).toMatchObject({ allowed: true })
      await after.settle(d, { status: 200 })
      // Cached: a second request reads nothing more.
      expect((await after.authenticate(request(old.key))).allowed).toBe(true)
      expect(await after.providerKeys.get('acct_rot', 'openai')).toBe('sk-old-123456')
      expect(after.stats().previousSecrets).toEqual({ keys: 1, providerKeys: 1 })

      // A key made now is hashed under the new secret: an instance with it alone takes it.
      const fresh = await after.keys.create({ accountId: 'acct_rot' })
      await after.providerKeys.store('acct_rot', { provider: 'anthropic', apiKey: 'sk-new-654321' })
      const only = createTollbooth({ secret: NEW_SECRET, clock, storage })
      expect((await only.authenticate(request(fresh.key))).allowed).toBe(true)
      expect(await only.providerKeys.get('acct_rot', 'anthropic')).toBe('sk-new-654321')
      await only.close()

      // Revoking an old key found under a previous secret refuses it at once, here and (by
      // the change feed, which names the stored hash) on another instance that cached it.
      const peer = createTollbooth({ secret: NEW_SECRET, previousSecrets: [SECRET], storage })
      expect((await after.authenticate(request(gone.key))).allowed).toBe(true)
      expect((await peer.authenticate(request(gone.key))).allowed).toBe(true)
      await after.keys.revoke(gone.record.id)
      expect(await after.authenticate(request(gone.key))).toMatchObject({
        allowed: false,
        status: 401,
      })
      // (The memory store has no change feed: one instance a store.)
      if (storage.changes) {
        await expect
          .poll(async () => (await peer.authenticate(request(gone.key))).allowed, { timeout: 3000 })
          .toBe(false)
      }
      await peer.close()
      // An unknown key is refused and remembered as unknown like any other.
      const unknown = `${old.key.slice(0, -6)}AAAAAA`
      expect((await after.authenticate(request(unknown))).allowed).toBe(false)
      await after.close()
    },
  )

  it.skipIf(make === null)(
    'a rolling restart: instances given the new secret as a previous one first take what the new ones make',
    async () => {
      const storage: Storage = await make!()
      const clock = manualClock(T0)
      // Step 1 on every instance: the old secret still makes everything, the new one is read.
      const first = createTollbooth({
        secret: SECRET,
        previousSecrets: [NEW_SECRET],
        clock,
        storage,
      })
      const oldOnly = createTollbooth({ secret: SECRET, clock, storage })
      // Step 2, instance by instance: the new secret makes everything, the old one is read.
      const second = createTollbooth({
        secret: NEW_SECRET,
        previousSecrets: [SECRET],
        clock,
        storage,
      })
      const made = await second.keys.create({ accountId: 'acct_roll' })
      await second.providerKeys.store('acct_roll', { provider: 'openai', apiKey: 'sk-roll-123456' })
      expect((await first.authenticate(request(made.key))).allowed).toBe(true)
      expect(await first.providerKeys.get('acct_roll', 'openai')).toBe('sk-roll-123456')
      // An instance not yet given the new secret refuses them.
      expect(await oldOnly.authenticate(request(made.key))).toMatchObject({ status: 401 })
      const earlier = await first.keys.create({ accountId: 'acct_roll' })
      expect((await second.authenticate(request(earlier.key))).allowed).toBe(true)
      await Promise.all([first.close(), oldOnly.close(), second.close()])
    },
  )
})

describe('previousSecrets, the option', () => {
  it('is checked like secret, and never shown', () => {
    const storage = undefined
    expect(() =>
      createTollbooth({ secret: SECRET, previousSecrets: ['too-short'], storage }),
    ).toThrow(
      /^createTollbooth: options\.previousSecrets\.0 must be at least 32 characters .*got a string of 9 characters/,
    )
    expect(() => createTollbooth({ secret: SECRET, previousSecrets: [SECRET], storage })).toThrow(
      /options\.previousSecrets\.0 must differ from options\.secret/,
    )
    const tb = createTollbooth({ secret: NEW_SECRET, previousSecrets: [SECRET] })
    expect(tb.options.previousSecrets).toEqual([SECRET])
    expect(JSON.stringify(tb.options)).not.toContain(SECRET)
    expect(Object.keys(tb.options)).not.toContain('previousSecrets')
  })
})
