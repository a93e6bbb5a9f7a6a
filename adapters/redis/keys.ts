/**
 * @module tollbooth/redis/keys
 *
 * The key store on Redis, spread over the masters of a cluster (the layout: key-layout.ts):
 * each record in a HASH of its own under a bucket of its hash, found by hash in one HMGET; by
 * id through the id index; by account through its ZSET. Updates read, merge here and
 * compare-and-set the record in Lua, retrying when another writer got there first.
 *
 * No call spans two slots, so the steps that touch a record and its indexes are separate calls,
 * in an order that leaves nothing a reader could mistake: a record is written before its index
 * entries and deleted before them (readers skip an entry whose record is gone). A rotation
 * writes and indexes the new key, then patches the old one, and takes the new key out again if
 * the old one changed or went meanwhile; no reader can look up the new key before `rotate`
 * returns (nobody holds it yet), so none sees both keys, or neither, fully valid.
 *
 * Records of versions before December 2026 (all under `{keys}`) are read when the new layout
 * misses, and moved (key-upgrade.ts).
 */

import {
  ConflictError,
  type KeyPatch,
  type KeyRecord,
  type KeyStore,
  type Page,
  patchFields,
  rotation,
} from '../../src/internal.js'
import { duplicateKey, encodeKey, keyBucket, keyLayout, stored } from './key-layout.js'
import { oldKeys } from './key-upgrade.js'
import { type Ctx, casLoop, isDuplicate, RETRY } from './store.js'

/** Records touched per TOUCH call, so one script never runs long. */
const TOUCH_BATCH = 500
/** Ids read per step of a list, at most (a page's size and one more, when smaller). */
const LIST_BATCH = 100

/** Applies a patch to a stored JSON the way `Object.assign` does in the memory store. */
function patched(json: string, patch: KeyPatch): string {
  const rec = JSON.parse(json) as Record<string, unknown>
  for (const [field, value] of Object.entries(patchFields(patch))) rec[field] = value
  return JSON.stringify(rec)
}

export function redisKeys(ctx: Ctx): KeyStore {
  const { client } = ctx
  const layout = keyLayout(ctx)
  const { names } = layout
  const old = oldKeys(ctx)

  async function byId(id: string) {
    const [r] = await layout.atIds([id])
    return r ?? (await old.find('id', id))
  }

  /** Writes and indexes a new key; rejects a taken id or hash, leaving nothing behind. */
  async function add(k: KeyRecord): Promise<void> {
    if (await layout.idTaken(k.id, k.hash)) throw duplicateKey()
    if (!(await layout.create(k))) throw duplicateKey()
    try {
      await layout.place(k)
    } catch (err) {
      if (isDuplicate(err)) await layout.remove(k, encodeKey(k)[0])
      throw err
    }
  }

  return {
    insert: add,
    async get(id) {
      return (await byId(id))?.key ?? null
    },
    async getByHash(hash) {
      const r = (await layout.atHash(hash)) ?? (await old.find('hash', hash))
      return r?.key ?? null
    },
    async list(accountId, { limit, cursor, kind, includeRevoked }): Promise<Page<KeyRecord>> {
      await old.moveAccount(accountId)
      const data: KeyRecord[] = []
      let max = cursor ? `(${cursor}` : '+'
      for (;;) {
        const ids = await client.zrevrangebylex(
          names.account(accountId),
          max,
          '-',
          'LIMIT',
          0,
          Math.min(LIST_BATCH, limit + 1),
        )
        if (ids.length === 0) return { data, nextCursor: null }
        for (const r of await layout.atIds(ids)) {
          const k = r?.key
          if (!k || k.accountId !== accountId || (kind && k.kind !== kind)) continue
          if (k.revokedAt !== null && !includeRevoked) continue
          if (data.length === limit) return { data, nextCursor: data[data.length - 1]!.id }
          data.push(k)
        }
        max = `(${ids[ids.length - 1]}`
      }
    },
    update(id, patch) {
      return casLoop(async () => {
        const r = await byId(id)
        if (!r) return null
        const next = patched(r.json, patch)
        const done = await client.tollboothKeyCas(1, names.record(r.key.hash), r.json, next)
        if (done === -1) return null
        return done === 1 ? stored(next, r.used).key : RETRY
      })
    },
    rotate(oldId, patch, next) {
      const [nextJson] = encodeKey(next)
      return casLoop(async () => {
        const r = await byId(oldId)
        if (!r) return null
        // Checked again each round: a revocation or rotation that fails the compare-and-set
        // below refuses this one on the next.
        // Against the record the compare-and-set checks: a revocation made meanwhile fails it,
        // and the next round keeps that revocation's time.
        const p = rotation(r.key.revokedAt, patch, next)
        if (p instanceof ConflictError) throw p
        await add(next)
        const json = patched(r.json, p)
        const done = await client.tollboothKeyCas(1, names.record(r.key.hash), r.json, json)
        if (done === 1) return stored(json, r.used).key
        await layout.remove(next, nextJson)
        return done === -1 ? null : RETRY
      })
    },
    delete(id) {
      return casLoop(async () => {
        const r = await byId(id)
        if (!r) return false
        const done = await layout.remove(r.key, r.json)
        return done === 0 ? RETRY : done === 1
      })
    },
    async touch(updates) {
      if (updates.length === 0) return
      const latest = new Map<string, number>()
      for (const u of updates) latest.set(u.id, Math.max(latest.get(u.id) ?? 0, u.lastUsedAt))
      const ids = [...latest.keys()]
      const hashes = await layout.hashesOf(ids)
      const buckets = new Map<number, [keys: string[], args: string[]]>()
      const missing: Array<[string, number]> = []
      for (const [i, id] of ids.entries()) {
        const h = hashes[i]
        if (!h) {
          missing.push([id, latest.get(id)!])
          continue
        }
        let b = buckets.get(keyBucket(h))
        if (!b) {
          b = [[], []]
          buckets.set(keyBucket(h), b)
        }
        b[0].push(names.record(h))
        b[1].push(String(latest.get(id)))
      }
      await Promise.all(
        [...buckets.values()].map(async ([keys, args]) => {
          for (let i = 0; i < keys.length; i += TOUCH_BATCH) {
            const part = keys.slice(i, i + TOUCH_BATCH)
            await client.tollboothKeyTouch(part.length, ...part, ...args.slice(i, i + TOUCH_BATCH))
          }
        }),
      )
      if (missing.length > 0) await old.touch(missing)
    },
  }
}
