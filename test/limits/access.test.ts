/**
 * @module test/limits/access
 *
 * Time blocks (403 outside a key's reserved blocks) and the failed-auth guard (403 `IP
 * temporarily blocked` before any key lookup) through the public pipeline.
 */

import { describe, expect, it } from 'vitest'
import { createTollbooth, type Denial, manualClock, memoryStorage } from '../../src/internal.js'
import { body, HOUR, req, SECRET, setup, T0 } from './setup.js'

describe('time blocks', () => {
  it('admits a key only inside its reserved blocks, refusing with 403 outside', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { timeBlocks: [{ start: T0 + HOUR, end: T0 + 2 * HOUR }] },
    })
    const before = (await tb.authenticate(req(key))) as Denial
    expect(before.status).toBe(403)
    expect(body(before)).toEqual({
      error: 'This key can only be used during its reserved time blocks',
      code: 'outside_time_block',
    })
    clock.set(T0 + HOUR)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
    clock.set(T0 + 2 * HOUR - 1)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
    clock.set(T0 + 2 * HOUR)
    expect(((await tb.authenticate(req(key))) as Denial).status).toBe(403)
  })

  it('refuses outside the blocks before counting any limit', async () => {
    const { tb, clock } = setup()
    const { key } = await tb.keys.create({
      accountId: 'acct_1',
      limits: { quotas: { total: 1 }, timeBlocks: [{ start: T0 + HOUR, end: T0 + 2 * HOUR }] },
    })
    for (let i = 0; i < 3; i++) await tb.authenticate(req(key))
    clock.set(T0 + HOUR)
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })
})

describe('failed-auth guard', () => {
  function guarded() {
    const storage = memoryStorage()
    let lookups = 0
    const getByHash = storage.keys.getByHash
    storage.keys.getByHash = (hash) => {
      lookups++
      return getByHash(hash)
    }
    const clock = manualClock(T0)
    const tb = createTollbooth({
      secret: SECRET,
      clock,
      storage,
      cache: false,
      failedAuth: { limit: 3, windowMs: 60_000, blockMs: 600_000 },
    })
    return { tb, clock, lookups: () => lookups }
  }

  it('blocks an IP after too many failed authentications: 403 before any key lookup', async () => {
    const { tb, lookups } = guarded()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    const revoked = await tb.keys.create({ accountId: 'acct_1' })
    await tb.keys.revoke(revoked.record.id)
    const wrong = revoked.key
    expect(((await tb.authenticate(req('sk_live_guess', '203.0.113.9'))) as Denial).status).toBe(
      401,
    )
    expect(((await tb.authenticate(req(wrong, '203.0.113.9'))) as Denial).status).toBe(401)
    const third = (await tb.authenticate(req('nope', '203.0.113.9'))) as Denial
    expect(third.status).toBe(403)
    expect(body(third)).toEqual({ error: 'IP temporarily blocked', code: 'ip_blocked' })
    const seen = lookups()
    // A valid key from the blocked IP is refused without touching the key store.
    const d = (await tb.authenticate(req(key, '203.0.113.9'))) as Denial
    expect(d.status).toBe(403)
    expect(body(d).error).toBe('IP temporarily blocked')
    expect(lookups()).toBe(seen)
    expect((await tb.authenticate(req(key, '203.0.113.10'))).allowed).toBe(true)
  })

  it('lifts the block after blockMs', async () => {
    const { tb, clock } = guarded()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    for (let i = 0; i < 3; i++) await tb.authenticate(req('bad', '203.0.113.9'))
    clock.advance(599_999)
    expect((await tb.authenticate(req(key, '203.0.113.9'))).allowed).toBe(false)
    clock.advance(1)
    expect((await tb.authenticate(req(key, '203.0.113.9'))).allowed).toBe(true)
  })

  it('does not count successful authentications as failures', async () => {
    const { tb } = guarded()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    for (let i = 0; i < 10; i++) expect((await tb.authenticate(req(key))).allowed).toBe(true)
    await tb.authenticate(req('bad'))
    await tb.authenticate(req('bad'))
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })

  it('can be turned off', async () => {
    const tb = createTollbooth({ secret: SECRET, failedAuth: false })
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    for (let i = 0; i < 50; i++) await tb.authenticate(req('bad'))
    expect((await tb.authenticate(req(key))).allowed).toBe(true)
  })
})
