/**
 * @module postgres/accounts
 *
 * Accounts in `<schema>.accounts` and sealed provider keys in `<schema>.provider_keys`.
 * `addBalance` is one `UPDATE … SET balance = balance + $2`, so concurrent top-ups and charges
 * never lose one another; the period rollover's compare-and-set is a `WHERE period_start = $n`
 * on the same `UPDATE` as the patch.
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
