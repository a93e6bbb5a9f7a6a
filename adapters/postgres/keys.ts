/**
 * @module postgres/keys
 *
 * Key records in `<schema>.keys`. A lookup by hash is one index probe on the unique hash
 * constraint; an account's list walks `(account_id, id DESC)` from the cursor (the last id of
 * the previous page). Rotation inserts the new key and patches the old one in one transaction.
 */

import type { PoolClient } from 'pg'
import {
  type Cells,
  KEY_COLUMNS as COLUMNS,
  ConflictError,
  type KeyPatch,
  type KeyRecord,
  type KeyRow,
  type KeyStore,
  keyValues,
  rotation,
  keyFromRow as toRecord,
} from '../../src/internal.js'
import { type Db, json, transaction } from './db.js'

/** The patchable fields, their columns and how a value is passed. */
const PATCH: Record<
  keyof KeyPatch,
  [column: string, cast: string, encode?: (v: unknown) => unknown]
> = {
  name: ['name', 'text'],
  category: ['category', 'text'],
  scopes: ['scopes', 'text[]'],
  metadata: ['metadata', 'json', json],
  active: ['active', 'boolean'],
  expiresAt: ['expires_at', 'bigint'],
  revokedAt: ['revoked_at', 'bigint'],
  limits: ['limits', 'json', json],
}

/** `SET a = $2::t, …` for the fields present in `patch`, with their values after `first`. */
function setClause(patch: KeyPatch, first: number): { sql: string; values: unknown[] } {
  const sets: string[] = []
  const values: unknown[] = []
  for (const field of Object.keys(PATCH) as Array<keyof KeyPatch>) {
    const v = patch[field]
    if (v === undefined) continue
    const [column, cast, encode] = PATCH[field]
    values.push(encode ? encode(v) : v)
    sets.push(`${column} = $${first + values.length}::${cast}`)
  }
  return { sql: sets.join(', '), values }
}

/** How this driver takes the key record's JSON, list and flag cells. */
const CELLS: Cells = { json, list: (v) => v, flag: (v) => v }

const insertValues = (k: KeyRecord) => keyValues(k, CELLS)

export function postgresKeys(db: Db): KeyStore {
  const t = db.table('keys')
  const byHashSql = `SELECT ${COLUMNS} FROM ${t} WHERE hash = $1`
  const insertSql = `INSERT INTO ${t} (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::json, $10, $11, $12, $13, $14, $15::json)`
  const update = async (q: Pick<PoolClient, 'query'> | null, id: string, patch: KeyPatch) => {
    const set = setClause(patch, 1)
    const sql = set.sql
      ? `UPDATE ${t} SET ${set.sql} WHERE id = $1 RETURNING ${COLUMNS}`
      : `SELECT ${COLUMNS} FROM ${t} WHERE id = $1`
    const rows = q
      ? (await q.query<KeyRow>(sql, [id, ...set.values])).rows
      : await db.query<KeyRow>(sql, [id, ...set.values])
    return rows[0] ? toRecord(rows[0]) : null
  }
  return {
    async insert(k) {
      await db.execute(insertSql, insertValues(k))
    },
    async get(id) {
      const rows = await db.query<KeyRow>(`SELECT ${COLUMNS} FROM ${t} WHERE id = $1`, [id])
      return rows[0] ? toRecord(rows[0]) : null
    },
    async getByHash(hash) {
      // The hot path's one query on a cache miss: prepared once per connection.
      const rows = await db.query<KeyRow>(byHashSql, [hash], 'key_by_hash')
      return rows[0] ? toRecord(rows[0]) : null
    },
    async list(accountId, { limit, cursor, kind, includeRevoked }) {
      const rows = await db.query<KeyRow>(
        `SELECT ${COLUMNS} FROM ${t}
         WHERE account_id = $1
           AND ($2::text IS NULL OR id < $2)
           AND ($3::text IS NULL OR kind = $3)
           AND ($4 OR revoked_at IS NULL)
         ORDER BY id DESC
         LIMIT $5`,
        [accountId, cursor || null, kind ?? null, includeRevoked === true, limit + 1],
      )
      const more = rows.length > limit
      const data = (more ? rows.slice(0, limit) : rows).map(toRecord)
      return { data, nextCursor: more ? data[data.length - 1]!.id : null }
    },
    update: (id, patch) => update(null, id, patch),
    async rotate(oldId, patch, next) {
      let refused: Error | null = null
      const value = await transaction(db, async (client) => {
        const old = await client.query<{ revoked_at: string | null }>(
          `SELECT revoked_at FROM ${t} WHERE id = $1 FOR UPDATE`,
          [oldId],
        )
        const row = old.rows[0]
        if (!row) return { value: null, commit: false }
        const revokedAt = row.revoked_at === null ? null : Number(row.revoked_at)
        const p = rotation(revokedAt, patch, next)
        if (p instanceof ConflictError) {
          refused = p
          return { value: null, commit: false }
        }
        await client.query(insertSql, insertValues(next))
        return { value: await update(client, oldId, p), commit: true }
      })
      if (refused) throw refused
      return value
    },
    async delete(id) {
      return (await db.execute(`DELETE FROM ${t} WHERE id = $1`, [id])) > 0
    },
    async touch(updates) {
      if (updates.length === 0) return
      // One row per id, the latest time, so the UPDATE … FROM joins each key at most once.
      const latest = new Map<string, number>()
      for (const { id, lastUsedAt } of updates) {
        if ((latest.get(id) ?? -Infinity) < lastUsedAt) latest.set(id, lastUsedAt)
      }
      // Rows are locked in id order first: flushes of two instances touching the same hot keys
      // then queue behind each other instead of deadlocking.
      await db.execute(
        `WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS v(id, at)),
         locked AS MATERIALIZED (
           SELECT k.id, v.at FROM ${t} AS k JOIN v ON k.id = v.id
           WHERE k.last_used_at IS NULL OR k.last_used_at < v.at
           ORDER BY k.id FOR UPDATE OF k)
         UPDATE ${t} AS k SET last_used_at = locked.at FROM locked
         WHERE k.id = locked.id AND (k.last_used_at IS NULL OR k.last_used_at < locked.at)`,
        [[...latest.keys()], [...latest.values()]],
      )
    },
  }
}
