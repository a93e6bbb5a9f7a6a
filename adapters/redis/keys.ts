/**
 * @module tollbooth/redis/keys
 *
 * The key store on Redis, all under the `{keys}` hash tag: records by id in one HASH (the
 * caller's JSON, without `lastUsedAt`), `lastUsedAt` in a second HASH so `touch` never
 * rewrites a record, the hash index in a third, and one ZSET of ids per account (score 0,
 * so ids order lexicographically: newest first is a reverse range). Updates read, merge here
 * and compare-and-set in Lua, retrying when another writer got there first.
 */

import type { KeyPatch, KeyRecord, KeyStore, Page } from '../../src/internal.js'
import { type Ctx, casLoop, RETRY } from './store.js'

/** Keys touched per TOUCH call, so one script never runs long. */
const TOUCH_BATCH = 500

function encodeKey(k: KeyRecord): [json: string, lastUsed: string] {
  const { lastUsedAt, ...rest } = k
  return [JSON.stringify(rest), lastUsedAt === null ? '' : String(lastUsedAt)]
}

function decodeKey(json: string, lastUsed: string | null | false): KeyRecord {
  const rest = JSON.parse(json) as Omit<KeyRecord, 'lastUsedAt'>
  return { ...rest, lastUsedAt: lastUsed ? Number(lastUsed) : null }
}

/** Applies a patch to a stored JSON the way `Object.assign` does in the memory store. */
function patched(json: string, patch: KeyPatch): string {
  const rec = JSON.parse(json) as Record<string, unknown>
  for (const [field, value] of Object.entries(patch)) if (value !== undefined) rec[field] = value
  return JSON.stringify(rec)
}

export function redisKeys({ client, prefix }: Ctx): KeyStore {
  const rec = `${prefix}{keys}:rec`
  const used = `${prefix}{keys}:used`
  const byHash = `${prefix}{keys}:hash`
  const account = (id: string) => `${prefix}{keys}:acct:${id}`
  const read = (by: 'id' | 'hash', value: string) =>
    client.tollboothKeyGet(3, rec, used, byHash, by, value)

  return {
    async insert(k) {
      const [json, last] = encodeKey(k)
      await client.tollboothKeyInsert(
        4,
        rec,
        used,
        byHash,
        account(k.accountId),
        k.id,
        k.hash,
        json,
        last,
      )
    },
    async get(id) {
      const r = await read('id', id)
      return r ? decodeKey(r[0], r[1]) : null
    },
    async getByHash(hash) {
      const r = await read('hash', hash)
      return r ? decodeKey(r[0], r[1]) : null
    },
    async list(accountId, { limit, cursor, kind, includeRevoked }): Promise<Page<KeyRecord>> {
      const reply = await client.tollboothKeyList(
        3,
        account(accountId),
        rec,
        used,
        cursor ?? '',
        String(limit),
        kind ?? '',
        includeRevoked ? '1' : '0',
      )
      const data: KeyRecord[] = []
      for (let i = 1; i + 1 < reply.length; i += 2) data.push(decodeKey(reply[i]!, reply[i + 1]!))
      return { data, nextCursor: reply[0] || null }
    },
    update(id, patch) {
      return casLoop(async () => {
        const r = await read('id', id)
        if (!r) return null
        const next = patched(r[0], patch)
        const done = await client.tollboothKeyCas(1, rec, id, r[0], next)
        if (done === -1) return null
        return done === 1 ? decodeKey(next, r[1]) : RETRY
      })
    },
    rotate(oldId, patch, next) {
      const [nextJson, nextUsed] = encodeKey(next)
      return casLoop(async () => {
        const r = await read('id', oldId)
        if (!r) return null
        const old = patched(r[0], patch)
        const done = await client.tollboothKeyRotate(
          4,
          rec,
          used,
          byHash,
          account(next.accountId),
          oldId,
          r[0],
          old,
          next.id,
          next.hash,
          nextJson,
          nextUsed,
        )
        if (done === -1) return null
        return done === 1 ? decodeKey(old, r[1]) : RETRY
      })
    },
    async delete(id) {
      const r = await read('id', id)
      if (!r) return false
      const k = decodeKey(r[0], r[1])
      const n = await client.tollboothKeyDelete(
        4,
        rec,
        used,
        byHash,
        account(k.accountId),
        id,
        k.hash,
      )
      return n === 1
    },
    async touch(updates) {
      for (let i = 0; i < updates.length; i += TOUCH_BATCH) {
        const args: string[] = []
        for (const u of updates.slice(i, i + TOUCH_BATCH)) args.push(u.id, String(u.lastUsedAt))
        await client.tollboothKeyTouch(2, rec, used, ...args)
      }
    },
  }
}
