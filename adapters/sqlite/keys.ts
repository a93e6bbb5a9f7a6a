/**
 * @module sqlite/keys
 *
 * Key records in the `keys` table: a lookup by hash is one probe of its unique index; an
 * account's list walks `(account_id, id)` backwards from the cursor (the last id of the
 * previous page); rotation inserts the new key and patches the old one in one transaction.
 */

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
import { bit, type Db, json } from './db.js'

/** The patchable fields, their columns and how a value is stored. */
const PATCH: Record<keyof KeyPatch, [column: string, encode?: (v: never) => unknown]> = {
  name: ['name'],
  category: ['category'],
  scopes: ['scopes', json],
  metadata: ['metadata', json],
  active: ['active', bit],
  expiresAt: ['expires_at'],
  revokedAt: ['revoked_at'],
  limits: ['limits', json],
}

/** How this driver takes the key record's JSON, list and flag cells. */
const CELLS: Cells = { json, list: json, flag: bit }

const insertValues = (k: KeyRecord) => keyValues(k, CELLS)

export function sqliteKeys(d: Db): KeyStore {
  const insertSql = `INSERT INTO keys (${COLUMNS}) VALUES (${COLUMNS.split(',')
    .map(() => '?')
    .join(', ')})`
  const getSql = `SELECT ${COLUMNS} FROM keys WHERE id = ?`
  const one = (row: unknown) => (row ? toRecord(row as KeyRow) : null)
  const update = (id: string, patch: KeyPatch): KeyRecord | null => {
    const sets: string[] = []
    const values: unknown[] = []
    for (const field of Object.keys(PATCH) as Array<keyof KeyPatch>) {
      const v = patch[field]
      if (v === undefined) continue
      const [column, encode] = PATCH[field]
      sets.push(`${column} = ?`)
      values.push(encode ? encode(v as never) : v)
    }
    if (sets.length === 0) return one(d.stmt(getSql).get(id))
    return one(
      d
        .stmt(`UPDATE keys SET ${sets.join(', ')} WHERE id = ? RETURNING ${COLUMNS}`)
        .get(...values, id),
    )
  }
  return {
    async insert(k) {
      await d.run(() => d.stmt(insertSql).run(...insertValues(k)))
    },
    async get(id) {
      return d.run(() => one(d.stmt(getSql).get(id)))
    },
    async getByHash(hash) {
      return d.run(() => one(d.stmt(`SELECT ${COLUMNS} FROM keys WHERE hash = ?`).get(hash)))
    },
    async list(accountId, { limit, cursor, kind, includeRevoked }) {
      const rows = await d.run(
        () =>
          d
            .stmt(
              `SELECT ${COLUMNS} FROM keys
               WHERE account_id = @account AND (@cursor IS NULL OR id < @cursor)
                 AND (@kind IS NULL OR kind = @kind) AND (@all OR revoked_at IS NULL)
               ORDER BY id DESC LIMIT @limit`,
            )
            .all({
              account: accountId,
              cursor: cursor || null,
              kind: kind ?? null,
              all: bit(includeRevoked === true),
              limit: limit + 1,
            }) as KeyRow[],
      )
      const more = rows.length > limit
      const data = (more ? rows.slice(0, limit) : rows).map(toRecord)
      return { data, nextCursor: more ? data[data.length - 1]!.id : null }
    },
    async update(id, patch) {
      return d.run(() => update(id, patch))
    },
    async rotate(oldId, patch, next) {
      return d.write(() => {
        const row = d.stmt('SELECT revoked_at FROM keys WHERE id = ?').get(oldId) as
          | { revoked_at: number | null }
          | undefined
        if (!row) return { value: null, commit: false }
        const p = rotation(row.revoked_at, patch, next)
        if (p instanceof ConflictError) throw p
        d.stmt(insertSql).run(...insertValues(next))
        return { value: update(oldId, p), commit: true }
      })
    },
    async delete(id) {
      return d.run(() => Number(d.stmt('DELETE FROM keys WHERE id = ?').run(id).changes) > 0)
    },
    async touch(updates) {
      if (updates.length === 0) return
      const s = d.stmt(
        'UPDATE keys SET last_used_at = @at WHERE id = @id AND (last_used_at IS NULL OR last_used_at < @at)',
      )
      await d.tx(() => {
        for (const { id, lastUsedAt } of updates) s.run({ at: lastUsedAt, id })
      })
    },
  }
}
