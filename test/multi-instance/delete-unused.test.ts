/**
 * @module test/multi-instance/delete-unused
 *
 * Delete-if-unused (seed 002: "only possible if the key has never been used") across two
 * instances sharing one store (Redis, then PostgreSQL), each with its own storage object,
 * change feed and out-box. B serves and settles the key's first request; A is then asked to
 * delete it for good at once. The use sits in B's out-box until B's next flush: before, A
 * read no `lastUsedAt` and no usage, deleted the key, and B wrote its request history for a
 * deleted key a moment later. Now A waits for what other instances queued before the delete
 * to be written, and answers 409. A key never used is still deleted.
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

const SECRET = 'delete-unused-secret-delete-unused-secret'
const redis = await connectRedis()

function instance(storage: Storage): Tollbooth {
  return createTollbooth({
    secret: SECRET,
    storage,
    failedAuth: false,
    storageTimeoutMs: 500,
    usage: { flushIntervalMs: 200 },
  })
}

async function deleteAfterUseElsewhere(storages: [Storage, Storage], account: string) {
  const [a, b] = storages.map(instance) as [Tollbooth, Tollbooth]
  try {
    const { key, record } = await a.keys.create({ accountId: account })
    const d = await b.authenticate(request(key))
    expect(d.allowed).toBe(true)
    await b.settle(d, { status: 200 })

    const started = Date.now()
    const err = await a.keys.delete(record.id).then(
      () => null,
      (e: unknown) => e as { status?: number },
    )
    const ms = Date.now() - started
    await b.flush()
    const history = (await storages[0].usage.logs(record.id, { limit: 10 })).data.length
    expect(
      err?.status,
      `deleted in ${ms} ms a key served on B (${history} usage event(s) of it stored)`,
    ).toBe(409)
    expect(await a.keys.get(record.id)).not.toBeNull()

    // A key never used is still deleted for good.
    const unused = await a.keys.create({ accountId: account })
    await a.keys.delete(unused.record.id)
    expect(await storages[1].keys.get(unused.record.id)).toBeNull()
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}

describe.skipIf(!redis)('delete-if-unused after a use on another instance, on Redis', () => {
  const prefix = testPrefix('delunused')
  const storages: Storage[] = []
  afterAll(async () => {
    for (const s of storages) await s.close?.()
    await deletePrefix(redis as Redis, prefix)
    await (redis as Redis).quit()
  })

  it('answers 409 for a key another instance served a moment before', async () => {
    const s = [
      redisStorage({ client: redis!, keyPrefix: prefix }),
      redisStorage({ client: redis!, keyPrefix: prefix }),
    ] as [Storage, Storage]
    storages.push(...s)
    await deleteAfterUseElsewhere(s, 'acct_delunused_redis')
  })
})

describe.skipIf(skipPostgres)(
  'delete-if-unused after a use on another instance, on PostgreSQL',
  () => {
    const pools: pg.Pool[] = []
    let drop: () => Promise<void> = async () => {}
    afterAll(async () => {
      await drop()
      for (const p of pools) await p.end()
    })

    it('answers 409 for a key another instance served a moment before', async () => {
      const admin = newPool(4)
      pools.push(admin)
      const fresh = await freshSchema(admin)
      drop = fresh.drop
      const s = [0, 1].map((): Storage => {
        const pool = newPool(6)
        pools.push(pool)
        return postgresStorage({ pool, schema: fresh.schema })
      }) as [Storage, Storage]
      try {
        await deleteAfterUseElsewhere(s, 'acct_delunused_pg')
      } finally {
        for (const x of s) await x.close?.()
      }
    })
  },
)
