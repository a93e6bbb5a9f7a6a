/**
 * @module tollbooth/redis/key-layout
 *
 * Where key records live on Redis (P = keyPrefix), spread so that on a Redis Cluster they grow
 * with the number of masters, and each call stays in one slot:
 * - each record is a HASH of its own, `P{kh:<b>}:k:<hash>` (`j` the JSON without `lastUsedAt`,
 *   `u` the `lastUsedAt`), b one of 256 buckets of the key's hash (FNV-1a): a lookup by hash,
 *   the request path's only read, is one HMGET;
 * - the id index `P{ki:<b>}:id` (HASH id -> hash), b a bucket of the id;
 * - each account's ids, `P{u:<accountId>}:keys` (ZSET, score 0, so ids order lexicographically:
 *   newest first is a reverse range), under the tag of the account's usage.
 * A record is written before its index entries and deleted before them, so an index entry may
 * point at a record that is gone (or, after a crash, at another key's): readers check the id and
 * skip it.
 */

import type { KeyRecord } from '../../src/internal.js'
import type { Ctx } from './store.js'

/** Buckets of hashes and of ids: 256 tags, spread over any cluster's masters. */
export const KEY_BUCKETS = 256

/** FNV-1a (32 bits) of a string's UTF-16 code units, modulo {@link KEY_BUCKETS}. */
export function keyBucket(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % KEY_BUCKETS
}

/** The Redis keys of the key store under a prefix. */
export function keyNames(prefix: string) {
  return {
    record: (hash: string) => `${prefix}{kh:${keyBucket(hash)}}:k:${hash}`,
    ids: (id: string) => `${prefix}{ki:${keyBucket(id)}}:id`,
    account: (accountId: string) => `${prefix}{u:${accountId}}:keys`,
  }
}

/** A record as stored (its JSON and `lastUsedAt` text, compared as such) and decoded. */
export interface Stored {
  json: string
  used: string | null
  key: KeyRecord
}

export function encodeKey(k: KeyRecord): [json: string, lastUsed: string] {
  const { lastUsedAt, ...rest } = k
  return [JSON.stringify(rest), lastUsedAt === null ? '' : String(lastUsedAt)]
}

export function stored(json: string, used: string | null | false): Stored {
  const rest = JSON.parse(json) as Omit<KeyRecord, 'lastUsedAt'>
  return { json, used: used || null, key: { ...rest, lastUsedAt: used ? Number(used) : null } }
}

/** The error of an id or hash already taken (as the scripts of earlier versions raised it). */
export function duplicateKey(): Error {
  return new Error('TOLLBOOTH_DUPLICATE a key with this id or hash already exists')
}

/** Reads and writes of the layout; every call in one slot. */
export function keyLayout({ client, prefix }: Ctx) {
  const names = keyNames(prefix)

  /** The record under a hash, or null. */
  async function atHash(hash: string): Promise<Stored | null> {
    const [json, used] = await client.hmget(names.record(hash), 'j', 'u')
    return json ? stored(json, used ?? null) : null
  }

  /** The hash each id points at in the id index (one HMGET per bucket). */
  async function hashesOf(ids: readonly string[]): Promise<Array<string | null>> {
    const byBucket = new Map<string, number[]>()
    ids.forEach((id, i) => {
      const at = byBucket.get(names.ids(id))
      if (at) at.push(i)
      else byBucket.set(names.ids(id), [i])
    })
    const out: Array<string | null> = ids.map(() => null)
    await Promise.all(
      [...byBucket].map(async ([bucket, at]) => {
        const got = await client.hmget(bucket, ...at.map((i) => ids[i]!))
        at.forEach((i, j) => {
          out[i] = got[j] ?? null
        })
      }),
    )
    return out
  }

  /** The records of these ids (null where none), skipping index entries gone stale. */
  async function atIds(ids: readonly string[]): Promise<Array<Stored | null>> {
    const hashes = await hashesOf(ids)
    return Promise.all(
      hashes.map(async (h, i) => {
        const r = h === null ? null : await atHash(h)
        return r && r.key.id === ids[i] ? r : null
      }),
    )
  }

  /** Whether a live record other than one under `hash` holds this id. */
  async function idTaken(id: string, hash: string): Promise<boolean> {
    const at = await client.hget(names.ids(id), id)
    return at !== null && at !== hash && (await atHash(at))?.key.id === id
  }

  /** Writes a record unless its hash exists: whether it was written. */
  async function create(k: KeyRecord): Promise<boolean> {
    const [json, used] = encodeKey(k)
    return (await client.tollboothKeyCreate(1, names.record(k.hash), json, used)) === 1
  }

  /** Indexes a written record by id and under its account; rejects an id a live key holds. */
  async function place(k: KeyRecord): Promise<void> {
    let stale = ''
    for (let i = 0; ; i++) {
      const r = await client.tollboothKeyIndex(1, names.ids(k.id), k.id, k.hash, stale)
      if (r === 1) break
      const at = String(r)
      if (i === 2 || (await atHash(at))?.key.id === k.id) throw duplicateKey()
      stale = at
    }
    await client.zadd(names.account(k.accountId), 0, k.id)
  }

  /** Deletes a record if it is still `json` (-1 gone, 0 changed, 1), then its index entries. */
  async function remove(k: KeyRecord, json: string): Promise<number> {
    const done = await client.tollboothKeyDrop(1, names.record(k.hash), json)
    if (done !== 0)
      await Promise.all([
        client.tollboothKeyUnindex(1, names.ids(k.id), k.id, k.hash),
        client.zrem(names.account(k.accountId), k.id),
      ])
    return done
  }

  return { names, atHash, hashesOf, atIds, idTaken, create, place, remove }
}

export type KeyLayout = ReturnType<typeof keyLayout>
