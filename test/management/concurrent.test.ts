/**
 * @module test/management/concurrent
 *
 * Management calls on one key made at once over real HTTP (the management API on Hono), on
 * every store (memory, a SQLite file, Redis, PostgreSQL): the end state and every answer are
 * those of the same calls made one after the other.
 */

import { describe, expect, test } from 'vitest'
import type { Storage } from '../../src/internal.js'
import { fourStores } from '../support/stores.js'
import { client, makeTollbooth, serveManagement } from './servers.js'

const stores = await fourStores('mgmt-concurrent', 8)

/** A tollbooth on `storage` with the management API served, and a management key of acct_a. */
async function serve(storage: Storage) {
  const { tb } = makeTollbooth({ storage })
  const served = await serveManagement('hono', tb)
  const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
  const api = client(served)
  const close = async () => {
    await served.close()
    await tb.close()
  }
  return { tb, api, mk, close }
}

for (const [storeName, makeStore] of Object.entries(stores))
  describe.skipIf(makeStore === null)(`concurrent management calls on ${storeName}`, () => {
    test('8 rotations of one key at once, without a grace period: one succeeds, 7 answer 409, one live successor', async () => {
      const s = await serve(await makeStore!())
      try {
        const created = await s.api('POST', '/keys', { token: s.mk, json: { name: 'svc' } })
        expect(created.status).toBe(201)
        const id = created.body.id as string
        const answers = await Promise.all(
          Array.from({ length: 8 }, () => s.api('POST', `/keys/${id}/rotate`, { token: s.mk })),
        )
        const statuses = answers.map((r) => r.status).sort()
        expect(statuses).toEqual([200, 409, 409, 409, 409, 409, 409, 409])
        for (const r of answers.filter((a) => a.status === 409))
          expect(r.body).toMatchObject({ code: 'conflict' })
        const rotated = answers.find((r) => r.status === 200)!.body
        // The one successor is the only live key of the account, and it works; the old does not.
        const live = await s.api('GET', '/keys', { token: s.mk })
        expect(live.body.data.map((k: { id: string }) => k.id)).toEqual([rotated.id])
        expect((await s.api('POST', '/synthesize', { token: rotated.key })).status).toBe(200)
        expect((await s.api('POST', '/synthesize', { token: created.body.key })).status).toBe(401)
      } finally {
        await s.close()
      }
    })

    test('tb.keys.rotate x 8 at once (the calls interleave in one process): one successor', async () => {
      const s = await serve(await makeStore!())
      try {
        const { record } = await s.tb.keys.create({ accountId: 'acct_a', name: 'svc' })
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () => s.tb.keys.rotate(record.id)),
        )
        const ok = results.filter((r) => r.status === 'fulfilled')
        expect(ok).toHaveLength(1)
        for (const r of results)
          if (r.status === 'rejected') expect(r.reason).toMatchObject({ status: 409 })
        const live = await s.tb.keys.list('acct_a')
        expect(live.data.map((k) => k.id)).toEqual([ok[0]!.value.record.id])
      } finally {
        await s.close()
      }
    })
  })
