/**
 * @module test/multi-instance/unique-alias
 *
 * Key aliases are unique per account (seed 002: "Unique label per account"; `uniqueName`, which
 * the portal sets): also when two instances sharing one store create, or rename to, the same
 * alias at the same moment. Two instances, each its own storage object, on one Redis, one
 * PostgreSQL schema and one SQLite file: for each of 10 aliases both create it at once, and
 * exactly one of them succeeds, the other answers 409 `conflict`. Before, each instance
 * checked the account's keys on its own and both created it (10 duplicates of 10).
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const SECRET = 'unique-alias-secret-unique-alias-secret-42'
const redis = await connectRedis()

/** 10 aliases, each created by both instances at once (and renamed to, by both at once). */
async function raceAliases(storages: [Storage, Storage], account: string) {
  const [a, b] = storages.map((storage) =>
    createTollbooth({ secret: SECRET, storage, failedAuth: false }),
  ) as [Tollbooth, Tollbooth]
  try {
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => 'created',
        (err: { code?: string }) => err.code ?? String(err),
      )
    const pairs: string[][] = []
    for (let i = 0; i < 10; i++) {
      const name = `Production ${i}`
      pairs.push(
        await Promise.all([
          outcome(a.keys.create({ accountId: account, name }, { uniqueName: true })),
          // The same alias, spelled otherwise (compared trimmed and without case).
          outcome(
            b.keys.create({ accountId: account, name: ` production ${i}` }, { uniqueName: true }),
          ),
        ]),
      )
    }
    const twice = pairs.filter((p) => p[0] === 'created' && p[1] === 'created').length
    expect(twice, 'aliases created by both instances, of 10').toBe(0)
    for (const p of pairs) expect([...p].sort()).toEqual(['conflict', 'created'])

    // Renames: two keys of other names, renamed to one new alias at once.
    const [x, y] = await Promise.all([
      a.keys.create({ accountId: account, name: 'x' }),
      b.keys.create({ accountId: account, name: 'y' }),
    ])
    const renamed = await Promise.all([
      outcome(a.keys.update(x.record.id, { name: 'Staging' }, { uniqueName: true })),
      outcome(b.keys.update(y.record.id, { name: 'staging' }, { uniqueName: true })),
    ])
    expect([...renamed].sort(), 'renamed to one alias on both instances').toEqual([
      'conflict',
      'created',
    ])
    const names = (await a.keys.list(account, { limit: 100 })).data.map((k) =>
      k.name.trim().toLowerCase(),
    )
    expect(names.length - new Set(names).size, 'live keys sharing an alias').toBe(0)
    // Once its key is renamed away, the alias is free at once on the other instance.
    const winner = renamed[0] === 'created' ? x : y
    await a.keys.update(winner.record.id, { name: 'Freed' }, { uniqueName: true })
    await b.keys.create({ accountId: account, name: 'Staging' }, { uniqueName: true })
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}

describe.skipIf(!redis)('unique aliases across two instances on one Redis', () => {
  const prefix = testPrefix('alias')
  const storages: Storage[] = []
  afterAll(async () => {
    for (const s of storages) await s.close?.()
    await deletePrefix(redis as Redis, prefix)
    await (redis as Redis).quit()
  })

  it('one of two concurrent creates of an alias succeeds, the other is 409', async () => {
    const s = [
      redisStorage({ client: redis!, keyPrefix: prefix }),
      redisStorage({ client: redis!, keyPrefix: prefix }),
    ] as [Storage, Storage]
    storages.push(...s)
    await raceAliases(s, 'acct_alias_redis')
  })
})

describe.skipIf(skipPostgres)('unique aliases across two instances on one PostgreSQL', () => {
  const pools: pg.Pool[] = []
  let drop: () => Promise<void> = async () => {}
  let schema = ''
  beforeAll(async () => {
    pools.push(newPool(4), newPool(4))
    const f = await freshSchema(pools[0]!)
    schema = f.schema
    drop = f.drop
  })
  afterAll(async () => {
    await drop()
    for (const p of pools) await p.end()
  })

  it('one of two concurrent creates of an alias succeeds, the other is 409', async () => {
    const s: [Storage, Storage] = [
      postgresStorage({ pool: pools[0]!, schema }),
      postgresStorage({ pool: pools[1]!, schema }),
    ]
    try {
      await raceAliases(s, 'acct_alias_pg')
    } finally {
      for (const x of s) await x.close?.()
    }
  })
})

describe('unique aliases across two handles of one SQLite file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-alias-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('one of two concurrent creates of an alias succeeds, the other is 409', async () => {
    const file = join(dir, 'tollbooth.db')
    const s: [Storage, Storage] = [sqliteStorage({ path: file }), sqliteStorage({ path: file })]
    try {
      await raceAliases(s, 'acct_alias_sqlite')
    } finally {
      for (const x of s) await x.close?.()
    }
  })
})
