/**
 * @module test/multi-instance/delete-first-use-race
 *
 * A permanent delete (seed 002: "only possible if the key has never been used") against the
 * key's first use on another instance sharing the store (Redis, then PostgreSQL), driven
 * step by step, not by timing: exactly one of the two wins.
 *
 * - The delete has checked that the key was never used and not yet removed it (its storage's
 *   `keys.delete` held at a gate) when B is asked to admit the key's first request. Before,
 *   B admitted it and the delete then removed a used key, its request history written after.
 *   Now the delete has marked the key first: B refuses the request as a deleted key's.
 * - B admitted the key's first request and its out-box is written later than the delete waits
 *   for (B flushes once a minute). Before, the delete read no `lastUsedAt` and no usage and
 *   removed the key. Now B's admission marked the key used in the counter store, in the same
 *   atomic step as the delete's own mark: 409.
 * - Two deletes at once: the second answers 409 ("being deleted by another call"); a delete
 *   whose write fails gives the mark back, and the key's first use is admitted.
 */

import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { request } from '../support/core.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const SECRET = 'delete-first-use-secret-delete-first-use-secret'
const redis = await connectRedis()

function instance(storage: Storage, flushIntervalMs = 200, storageTimeoutMs = 500): Tollbooth {
  return createTollbooth({
    secret: SECRET,
    storage,
    failedAuth: false,
    storageTimeoutMs,
    usage: { flushIntervalMs },
  })
}

/** `storage` whose `keys.delete` waits for `open()` once `held` has been signalled. */
function gated(storage: Storage) {
  let open = () => {}
  const gate = new Promise<void>((r) => {
    open = r
  })
  let reached = () => {}
  const held = new Promise<void>((r) => {
    reached = r
  })
  const keys = {
    ...storage.keys,
    async delete(id: string) {
      reached()
      await gate
      return storage.keys.delete(id)
    },
  }
  return { storage: { ...storage, keys } as Storage, held, open }
}

/** The delete held after its checks; B's first request meanwhile; then the delete goes on. */
async function useDuringDelete(storages: [Storage, Storage], account: string) {
  const g = gated(storages[0])
  const a = instance(g.storage)
  const b = instance(storages[1])
  try {
    const { key, record } = await a.keys.create({ accountId: account })
    const deleting = a.keys.delete(record.id).then(
      () => 'deleted',
      (e: { status?: number }) => e.status,
    )
    await g.held
    const d = await b.authenticate(request(key))
    if (d.allowed) await b.settle(d, { status: 200 })
    g.open()
    const deleted = await deleting
    await b.flush()
    const history = (await storages[1].usage.logs(record.id, { limit: 10 })).data.length
    const outcome = { admitted: d.allowed, deleted, history }
    // Either the delete wins (the request refused as a deleted key's, nothing recorded) or
    // the use does (409, the key kept); never both.
    expect(outcome).toEqual(
      d.allowed
        ? { admitted: true, deleted: 409, history: 1 }
        : { admitted: false, deleted: 'deleted', history: 0 },
    )
    if (!d.allowed) expect([d.status, d.code]).toEqual([401, 'invalid_api_key'])
    expect(await storages[1].keys.get(record.id)).toEqual(d.allowed ? expect.anything() : null)
  } finally {
    g.open()
    await Promise.all([a.close(), b.close()])
  }
}

/**
 * Two deletes at once: the second answers 409 while the first holds the key's counter. A
 * delete whose write fails gives the counter back: the key's first use is then admitted.
 */
async function deleteTwiceAndFail(storages: [Storage, Storage], account: string) {
  const g = gated(storages[0])
  // A's delete stays at its gate while B's runs (its own wait included): longer than a storage
  // timeout of 500 ms, past which tb.keys answers 503.
  const a = instance(g.storage, 200, 2_000)
  const b = instance(storages[1])
  const failing = instance({
    ...storages[1],
    keys: {
      ...storages[1].keys,
      delete: async () => {
        throw new Error('the write failed')
      },
    },
  })
  try {
    const first = await a.keys.create({ accountId: account })
    const deleting = a.keys.delete(first.record.id)
    await g.held
    const second = await b.keys.delete(first.record.id).catch((e: unknown) => e)
    expect(second).toMatchObject({
      status: 409,
      message: 'This key is being deleted by another call',
    })
    g.open()
    await deleting
    expect(await storages[1].keys.get(first.record.id)).toBeNull()

    const other = await a.keys.create({ accountId: account })
    // The store's error, as the cause of a 503.
    await expect(failing.keys.delete(other.record.id)).rejects.toMatchObject({
      code: 'storage_unavailable',
      cause: { message: 'the write failed' },
    })
    const d = await b.authenticate(request(other.key))
    expect(d.allowed).toBe(true)
    await b.settle(d, { status: 200 })
    await expect(a.keys.delete(other.record.id)).rejects.toMatchObject({ status: 409 })
  } finally {
    g.open()
    await Promise.all([a.close(), b.close(), failing.close()])
  }
}

/** B admits the first request; its out-box is written after the delete's wait. */
async function deleteBeforeLateFlush(storages: [Storage, Storage], account: string) {
  const a = instance(storages[0])
  const b = instance(storages[1], 60_000)
  try {
    const { key, record } = await a.keys.create({ accountId: account })
    const d = await b.authenticate(request(key))
    expect(d.allowed).toBe(true)
    await b.settle(d, { status: 200 })
    const err = await a.keys.delete(record.id).then(
      () => null,
      (e: unknown) => e as { status?: number; message?: string },
    )
    await b.flush()
    const history = (await storages[0].usage.logs(record.id, { limit: 10 })).data.length
    expect(
      [err?.status, err?.message],
      `deleted a key B served (${history} usage event(s) of it stored)`,
    ).toEqual([409, 'This key has request history and cannot be deleted; deactivate it instead'])
    expect(await a.keys.get(record.id)).toMatchObject({ id: record.id })

    // A key never used is still deleted for good, and its key then refused everywhere.
    const unused = await a.keys.create({ accountId: account })
    await a.keys.delete(unused.record.id)
    expect(await storages[1].keys.get(unused.record.id)).toBeNull()
    expect(await b.authenticate(request(unused.key))).toMatchObject({ allowed: false, status: 401 })
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}

describe.skipIf(!redis)(
  'a permanent delete against a first use on another instance, on Redis',
  () => {
    const prefix = testPrefix('delfirst')
    const storages: Storage[] = []
    const two = () => {
      const s = [0, 1].map(() => redisStorage({ client: redis!, keyPrefix: prefix })) as [
        Storage,
        Storage,
      ]
      storages.push(...s)
      return s
    }
    afterAll(async () => {
      for (const s of storages) await s.close?.()
      await deletePrefix(redis as Redis, prefix)
      await (redis as Redis).quit()
    })

    it('a first use while the delete is between its check and its write: one of them wins', async () => {
      await useDuringDelete(two(), 'acct_delfirst_redis_1')
    })

    it('a first use whose out-box is written after the delete waited: 409', async () => {
      await deleteBeforeLateFlush(two(), 'acct_delfirst_redis_2')
    })

    it('a second delete at once answers 409; a delete whose write failed lets the use in', async () => {
      await deleteTwiceAndFail(two(), 'acct_delfirst_redis_3')
    })
  },
)

describe.skipIf(skipPostgres)(
  'a permanent delete against a first use on another instance, on PostgreSQL',
  () => {
    const pools: pg.Pool[] = []
    const storages: Storage[] = []
    const drops: Array<() => Promise<void>> = []
    const two = async () => {
      const admin = newPool(2)
      pools.push(admin)
      const fresh = await freshSchema(admin)
      drops.push(fresh.drop)
      const s = [0, 1].map((): Storage => {
        const pool = newPool(6)
        pools.push(pool)
        return postgresStorage({ pool, schema: fresh.schema })
      }) as [Storage, Storage]
      storages.push(...s)
      return s
    }
    afterAll(async () => {
      for (const s of storages) await s.close?.()
      for (const d of drops) await d()
      for (const p of pools) await p.end()
    })

    it('a first use while the delete is between its check and its write: one of them wins', async () => {
      await useDuringDelete(await two(), 'acct_delfirst_pg_1')
    })

    it('a first use whose out-box is written after the delete waited: 409', async () => {
      await deleteBeforeLateFlush(await two(), 'acct_delfirst_pg_2')
    })

    it('a second delete at once answers 409; a delete whose write failed lets the use in', async () => {
      await deleteTwiceAndFail(await two(), 'acct_delfirst_pg_3')
    })
  },
)
