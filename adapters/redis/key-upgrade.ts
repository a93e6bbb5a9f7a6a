/**
 * @module tollbooth/redis/key-upgrade
 *
 * The key layout of versions before December 2026, all under the one hash tag `{keys}` (so on
 * a Redis Cluster every key record sat on one master): records by id in `P{keys}:rec` (HASH of
 * JSON), `lastUsedAt` in `P{keys}:used`, the hash index `P{keys}:hash`, and each account's ids
 * in `P{keys}:acct:<id>` (ZSET). The key store reads it when the new layout misses, and moves
 * what it finds; `upgradeKeyRecords` moves all of it.
 *
 * A move writes the record in the new layout (unless it is there already: the new layout
 * wins), indexes it, then deletes it from the old one if it has not changed meanwhile. Whether
 * the old layout holds anything is asked at most every 5 s per process, so a store with nothing
 * left there pays nothing on a lookup of an unknown key.
 */

import { keyLayout, type Stored, stored } from './key-layout.js'
import { scanBatches } from './scan.js'
import { type Ctx, type RedisClient, upgradeCtx } from './store.js'

/** How long the answer to "does the old layout hold records?" is kept, in ms. */
const PRESENT_TTL_MS = 5000
/** Records per HSCAN step of `upgradeKeyRecords`, and ids moved at once by a list. */
const BATCH = 100
/** Ids per old-layout TOUCH call. */
const TOUCH_BATCH = 500

/** The old layout's keys under a prefix. */
export function oldKeyNames(prefix: string) {
  return {
    rec: `${prefix}{keys}:rec`,
    used: `${prefix}{keys}:used`,
    byHash: `${prefix}{keys}:hash`,
    account: (id: string) => `${prefix}{keys}:acct:${id}`,
  }
}

/** Reads of the old layout, each moving what it finds. */
export function oldKeys(ctx: Ctx) {
  const { client } = ctx
  const layout = keyLayout(ctx)
  const old = oldKeyNames(ctx.prefix)
  let checkedAt = -Infinity
  let present = false

  async function holdsRecords(): Promise<boolean> {
    if (Date.now() - checkedAt < PRESENT_TTL_MS) return present
    present = (await client.exists(old.rec)) === 1
    checkedAt = Date.now()
    return present
  }

  /** Moves one record: true when it was taken out of the old layout. Returns it as now stored. */
  async function move(r: Stored): Promise<[Stored, boolean]> {
    const k = r.key
    const now = (await layout.create(k)) ? r : ((await layout.atHash(k.hash)) ?? r)
    await layout.place(now.key)
    const done = await client.tollboothOldKeyUnrecord(
      4,
      old.rec,
      old.used,
      old.byHash,
      old.account(k.accountId),
      k.id,
      k.hash,
      r.json,
    )
    return [now, done === 1]
  }

  return {
    move,
    /** A record by id or hash from the old layout, moved; null when none. */
    async find(by: 'id' | 'hash', value: string): Promise<Stored | null> {
      if (!(await holdsRecords())) return null
      const r = await client.tollboothOldKeyGet(3, old.rec, old.used, old.byHash, by, value)
      return r ? (await move(stored(r[0], r[1])))[0] : null
    },
    /** Moves an account's keys left in the old layout (before its keys are listed). */
    async moveAccount(accountId: string): Promise<void> {
      if (!(await holdsRecords())) return
      for (;;) {
        const ids = await client.zrange(old.account(accountId), 0, BATCH - 1)
        if (ids.length === 0) return
        const jsons = await client.hmget(old.rec, ...ids)
        const used = await client.hmget(old.used, ...ids)
        const moved = await Promise.all(
          ids.map(async (id, i) => {
            const json = jsons[i]
            if (!json) return (await client.zrem(old.account(accountId), id)) > 0
            return (await move(stored(json, used[i] ?? null)))[1]
          }),
        )
        // Records changed by an older instance meanwhile are left for a later list.
        if (!moved.some(Boolean)) return
      }
    },
    /** `lastUsedAt` of ids the new layout does not hold (ignored where the old one has none). */
    async touch(updates: ReadonlyArray<[id: string, lastUsedAt: number]>): Promise<void> {
      if (!(await holdsRecords())) return
      for (let i = 0; i < updates.length; i += TOUCH_BATCH) {
        const args = updates.slice(i, i + TOUCH_BATCH).flatMap(([id, t]) => [id, String(t)])
        await client.tollboothOldKeyTouch(2, old.rec, old.used, ...args)
      }
    },
  }
}

/**
 * Moves the key records of versions before December 2026 (all under the one hash tag `{keys}`,
 * so on a Redis Cluster on one master) to the layout of this version (each record under a
 * bucket of its hash, spread over the masters), and deletes the old keys: in batches of 100
 * records, each written, indexed by id and under its account, then deleted from the old layout.
 * The store reads the old layout when the new one misses and moves what it finds, so keys keep
 * working before this has run; running it takes that extra read off unknown keys' lookups. Safe
 * to run again, from two processes at once, or after a crash half-way. Run it once every
 * instance runs this version: an older instance does not find the keys moved (and a key it
 * changes in the old layout after the move keeps the moved version).
 *
 * @param options.client the ioredis client given to `redisStorage`
 * @param [options.keyPrefix='tollbooth:'] the `keyPrefix` given to `redisStorage`
 * @returns how many records were moved
 * @throws {ConfigError} naming a bad option
 * @example
 * ```ts
 * import { upgradeKeyRecords } from 'tollbooth/redis'
 * await upgradeKeyRecords({ client, keyPrefix: 'myapi:' })
 * ```
 */
export async function upgradeKeyRecords(options: {
  client: RedisClient
  keyPrefix?: string
}): Promise<number> {
  const ctx = upgradeCtx('upgradeKeyRecords', options)
  const { move } = oldKeys(ctx)
  const old = oldKeyNames(ctx.prefix)
  let moved = 0
  for await (const flat of scanBatches((c) => ctx.client.hscan(old.rec, c, 'COUNT', BATCH))) {
    const ids = flat.filter((_, i) => i % 2 === 0)
    const jsons = flat.filter((_, i) => i % 2 === 1)
    if (ids.length === 0) continue
    const used = await ctx.client.hmget(old.used, ...ids)
    const done = await Promise.all(
      jsons.map(async (json, i) => (await move(stored(json, used[i] ?? null)))[1]),
    )
    moved += done.filter(Boolean).length
  }
  // What is left of the indexes once every record has gone.
  if ((await ctx.client.exists(old.rec)) === 0) {
    await ctx.client.del(old.used)
    await ctx.client.del(old.byHash)
  }
  return moved
}
