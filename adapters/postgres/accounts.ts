/**
 * @module postgres/accounts
 *
 * Accounts in `<schema>.accounts` and sealed provider keys in `<schema>.provider_keys`.
 * `addBalance` is one `UPDATE … SET balance = balance + $2`, so concurrent top-ups and charges
 * never lose one another; the period rollover's compare-and-set is a `WHERE period_start = $n`
 * on the same `UPDATE` as the patch.
 * `topUp` keeps the account's record of a key in `topups` and adds to the balance in one
 * statement.
 */

import {
  ACCOUNT_COLUMNS,
  type AccountPatch,
  type AccountRow,
  type AccountStore,
  roundAmount,
  roundAmountSql,
  SECRET_COLUMNS,
  type SecretRow,
  type SecretStore,
  accountFromRow as toAccount,
  secretFromRow as toSecret,
} from '../../src/internal.js'
import { type Db, json } from './db.js'

/** The balance plus `$2`, rounded as every sum of amounts is (`roundAmount`). */
const ADD_BALANCE = roundAmountSql('balance + $2::float8', 'postgres')

const ACCOUNT_PATCH: Record<
  Exclude<keyof AccountPatch, 'addToBalance'>,
  [column: string, cast: string]
> = {
  tier: ['tier', 'text'],
  balance: ['balance', 'float8'],
  carryover: ['carryover', 'float8'],
  periodStart: ['period_start', 'bigint'],
  tierExpiresAt: ['tier_expires_at', 'bigint'],
  billingCustomerId: ['billing_customer_id', 'text'],
  metadata: ['metadata', 'json'],
  closedPeriods: ['closed_periods', 'jsonb'],
}

export function postgresAccounts(db: Db): AccountStore {
  const t = db.table('accounts')
  const topUps = db.table('topups')
  /**
   * One statement: the account's record of the key is inserted (or an expired one replaced)
   * unless a live one is there, and only if it was is the balance added. Concurrent calls with
   * one account and key meet on its primary key: the second waits for the first and finds its
   * record. Up to 100 expired records of other accounts or keys are deleted on the way,
   * skipping rows another call holds.
   */
  const topUpSql = `WITH pruned AS (
      DELETE FROM ${topUps} WHERE (account_id, key) IN (
        SELECT account_id, key FROM ${topUps}
        WHERE expires_at <= $4 AND (account_id, key) <> ($1, $2)
        LIMIT 100 FOR UPDATE SKIP LOCKED)
    ), account AS (
      SELECT id FROM ${t} WHERE id = $1
    ), rec AS (
      INSERT INTO ${topUps} AS r (account_id, key, amount, expires_at)
      SELECT $1, $2, $3::float8, $5::bigint FROM account
      ON CONFLICT (account_id, key) DO UPDATE SET amount = excluded.amount,
        expires_at = excluded.expires_at
        WHERE r.expires_at <= $4::bigint
      RETURNING key
    ), credited AS (
      UPDATE ${t} SET balance = ${roundAmountSql('balance + $3::float8', 'postgres')}
      WHERE id = $1 AND EXISTS (SELECT 1 FROM rec) RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM account) AS found, EXISTS (SELECT 1 FROM credited) AS applied`
  const get = async (id: string) => {
    const rows = await db.query<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM ${t} WHERE id = $1`, [
      id,
    ])
    return rows[0] ? toAccount(rows[0]) : null
  }
  return {
    get,
    async ensure(d) {
      const rows = await db.query<AccountRow>(
        `INSERT INTO ${t} (${ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, $9::jsonb)
         ON CONFLICT (id) DO NOTHING RETURNING ${ACCOUNT_COLUMNS}`,
        [
          d.id,
          d.tier,
          d.balance,
          d.carryover,
          d.periodStart,
          d.tierExpiresAt,
          d.billingCustomerId,
          json(d.metadata),
          d.closedPeriods === undefined ? null : json(d.closedPeriods),
        ],
      )
      if (rows[0]) return toAccount(rows[0])
      // The row existed (or a concurrent insert just committed, which the conflict waited for).
      return (await get(d.id)) ?? d
    },
    async update(id, patch, ifPeriodStart) {
      const sets: string[] = []
      const values: unknown[] = [id, ifPeriodStart ?? null]
      const add = patch.addToBalance
      for (const field of Object.keys(ACCOUNT_PATCH) as Array<keyof typeof ACCOUNT_PATCH>) {
        let v = patch[field]
        if (v === undefined) continue
        if (field === 'balance' && add !== undefined) v = roundAmount((v as number) + add)
        const [column, cast] = ACCOUNT_PATCH[field]
        values.push(field === 'metadata' || field === 'closedPeriods' ? json(v) : v)
        sets.push(`${column} = $${values.length}::${cast}`)
      }
      if (add !== undefined && patch.balance === undefined) {
        // In the same UPDATE as the rest: a period's close and its overage land together.
        values.push(add)
        sets.push(`balance = ${roundAmountSql(`balance + $${values.length}::float8`, 'postgres')}`)
      }
      const where = 'id = $1 AND ($2::bigint IS NULL OR period_start = $2)'
      const rows = await db.query<AccountRow>(
        sets.length
          ? `UPDATE ${t} SET ${sets.join(', ')} WHERE ${where} RETURNING ${ACCOUNT_COLUMNS}`
          : `SELECT ${ACCOUNT_COLUMNS} FROM ${t} WHERE ${where}`,
        values,
      )
      return rows[0] ? toAccount(rows[0]) : null
    },
    async addBalance(id, amount) {
      const rows = await db.query<AccountRow>(
        `UPDATE ${t} SET balance = ${ADD_BALANCE} WHERE id = $1 RETURNING ${ACCOUNT_COLUMNS}`,
        [id, amount],
      )
      return rows[0] ? toAccount(rows[0]) : null
    },
    async topUp(id, t) {
      for (let i = 0; ; i++) {
        const [r] = await db.query<{ found: boolean; applied: boolean }>(topUpSql, [
          id,
          t.key,
          t.amount,
          t.now,
          t.expiresAt,
        ])
        if (!r?.found) return null
        if (r.applied) return { applied: true, amount: t.amount }
        // The live record the insert met; it may have been committed after the statement's
        // snapshot, so it is read by a statement of its own.
        const [rec] = await db.query<{ amount: number }>(
          `SELECT amount FROM ${topUps} WHERE account_id = $1 AND key = $2 AND expires_at > $3`,
          [id, t.key, t.now],
        )
        if (rec) return { applied: false, amount: rec.amount }
        // Deleted since (expired by a caller with a later clock): the key is free, again.
        if (i === 2) throw new Error('tollbooth/postgres: a top-up record kept changing')
      }
    },
  }
}

export function postgresSecrets(db: Db): SecretStore {
  const t = db.table('provider_keys')
  return {
    async put(r) {
      await db.execute(
        `INSERT INTO ${t} (${SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id, provider) DO UPDATE SET sealed = excluded.sealed,
           last4 = excluded.last4, created_at = excluded.created_at,
           verified_at = excluded.verified_at`,
        [r.accountId, r.provider, r.sealed, r.last4, r.createdAt, r.verifiedAt],
      )
    },
    async get(accountId, provider) {
      const rows = await db.query<SecretRow>(
        `SELECT ${SECRET_COLUMNS} FROM ${t} WHERE account_id = $1 AND provider = $2`,
        [accountId, provider],
      )
      return rows[0] ? toSecret(rows[0]) : null
    },
    async list(accountId) {
      const rows = await db.query<SecretRow>(
        `SELECT ${SECRET_COLUMNS} FROM ${t} WHERE account_id = $1 ORDER BY provider`,
        [accountId],
      )
      return rows.map(toSecret)
    },
    async delete(accountId, provider) {
      const n = await db.execute(`DELETE FROM ${t} WHERE account_id = $1 AND provider = $2`, [
        accountId,
        provider,
      ])
      return n > 0
    },
  }
}
