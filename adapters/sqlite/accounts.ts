/**
 * @module sqlite/accounts
 *
 * Accounts in the `accounts` table and sealed provider keys in `provider_keys`. `addBalance`
 * is one `UPDATE … SET balance = balance + ?` (the sum rounded by `roundAmountSql`), atomic under the file's write lock; the period
 * rollover's compare-and-set is a `WHERE period_start = ?` on the same `UPDATE` as the patch.
 * `topUp` reads the account's record of the key in `topups`, adds and keeps it in one
 * transaction.
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
  type TopUpResult,
  accountFromRow as toAccount,
  secretFromRow as toSecret,
} from '../../src/internal.js'
import { type Db, json } from './db.js'

/** The balance plus `@amount`, rounded as every sum of amounts is (`roundAmount`). */
const ADD_BALANCE = roundAmountSql('balance + @amount', 'sqlite')

const ACCOUNT_PATCH: Record<Exclude<keyof AccountPatch, 'addToBalance'>, string> = {
  tier: 'tier',
  balance: 'balance',
  carryover: 'carryover',
  periodStart: 'period_start',
  tierExpiresAt: 'tier_expires_at',
  billingCustomerId: 'billing_customer_id',
  metadata: 'metadata',
  closedPeriods: 'closed_periods',
}

export function sqliteAccounts(d: Db): AccountStore {
  const one = (row: unknown) => (row ? toAccount(row as AccountRow) : null)
  const getSql = `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?`
  return {
    async get(id) {
      return d.run(() => one(d.stmt(getSql).get(id)))
    },
    async ensure(a) {
      return d.run(() => {
        d.stmt(
          `INSERT INTO accounts (${ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO NOTHING`,
        ).run(
          a.id,
          a.tier,
          a.balance,
          a.carryover,
          a.periodStart,
          a.tierExpiresAt,
          a.billingCustomerId,
          json(a.metadata),
          a.closedPeriods === undefined ? null : json(a.closedPeriods),
        )
        return one(d.stmt(getSql).get(a.id)) ?? a
      })
    },
    async update(id, patch, ifPeriodStart) {
      const sets: string[] = []
      const values: unknown[] = []
      for (const field of Object.keys(ACCOUNT_PATCH) as Array<keyof typeof ACCOUNT_PATCH>) {
        const v = patch[field]
        if (v === undefined) continue
        sets.push(`${ACCOUNT_PATCH[field]} = ?`)
        values.push(field === 'metadata' || field === 'closedPeriods' ? json(v) : v)
      }
      const amount = patch.addToBalance
      const named: Array<{ amount: number }> = []
      if (amount !== undefined) {
        // In the same UPDATE as the rest: a period's close and its overage land together.
        const at = sets.indexOf('balance = ?')
        if (at >= 0) values[at] = roundAmount((values[at] as number) + amount)
        else {
          sets.push(`balance = ${ADD_BALANCE}`)
          named.push({ amount })
        }
      }
      const where = 'id = ? AND (? IS NULL OR period_start = ?)'
      const p = ifPeriodStart ?? null
      return d.run(() =>
        one(
          sets.length
            ? d
                .stmt(
                  `UPDATE accounts SET ${sets.join(', ')} WHERE ${where} RETURNING ${ACCOUNT_COLUMNS}`,
                )
                .get(...values, id, p, p, ...named)
            : d.stmt(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE ${where}`).get(id, p, p),
        ),
      )
    },
    async addBalance(id, amount) {
      return d.run(() =>
        one(
          d
            .stmt(
              `UPDATE accounts SET balance = ${ADD_BALANCE} WHERE id = @id RETURNING ${ACCOUNT_COLUMNS}`,
            )
            .get({ amount, id }),
        ),
      )
    },
    async topUp(id, t) {
      return d.tx((): TopUpResult | null => {
        d.stmt('DELETE FROM topups WHERE expires_at <= ?').run(t.now)
        const r = d
          .stmt('SELECT amount FROM topups WHERE account_id = ? AND key = ?')
          .get(id, t.key) as { amount: number } | undefined
        if (r) return { applied: false, amount: r.amount }
        const credited = d
          .stmt(`UPDATE accounts SET balance = ${ADD_BALANCE} WHERE id = @id RETURNING id`)
          .get({ amount: t.amount, id })
        if (!credited) return null
        d.stmt('INSERT INTO topups (account_id, key, amount, expires_at) VALUES (?, ?, ?, ?)').run(
          id,
          t.key,
          t.amount,
          t.expiresAt,
        )
        return { applied: true, amount: t.amount }
      })
    },
  }
}

export function sqliteSecrets(d: Db): SecretStore {
  return {
    async put(r) {
      await d.run(() =>
        d
          .stmt(
            `INSERT INTO provider_keys (${SECRET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, provider) DO UPDATE SET sealed = excluded.sealed,
               last4 = excluded.last4, created_at = excluded.created_at,
               verified_at = excluded.verified_at`,
          )
          .run(r.accountId, r.provider, r.sealed, r.last4, r.createdAt, r.verifiedAt),
      )
    },
    async get(accountId, provider) {
      const row = await d.run(() =>
        d
          .stmt(`SELECT ${SECRET_COLUMNS} FROM provider_keys WHERE account_id = ? AND provider = ?`)
          .get(accountId, provider),
      )
      return row ? toSecret(row as SecretRow) : null
    },
    async list(accountId) {
      const rows = await d.run(
        () =>
          d
            .stmt(
              `SELECT ${SECRET_COLUMNS} FROM provider_keys WHERE account_id = ? ORDER BY provider`,
            )
            .all(accountId) as SecretRow[],
      )
      return rows.map(toSecret)
    },
    async delete(accountId, provider) {
      return d.run(
        () =>
          Number(
            d
              .stmt('DELETE FROM provider_keys WHERE account_id = ? AND provider = ?')
              .run(accountId, provider).changes,
          ) > 0,
      )
    },
  }
}
