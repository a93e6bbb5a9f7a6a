/**
 * @module storage/rows
 *
 * Rows of the SQL stores (PostgreSQL, SQLite) as records, written once: the columns of keys,
 * accounts and provider keys, and their mapping to `KeyRecord`, `AccountRecord` and
 * `ProviderKeyRecord`. The two drivers differ only in how a cell comes back, which the
 * mapping reads either way: JSON as text (SQLite) or parsed (pg), a flag as 0/1 or a boolean,
 * an instant as a number or a BIGINT's string.
 */

import type { AccountRecord, KeyRecord, ProviderKeyRecord } from './types.js'

/** A JSON cell: text to parse (SQLite), or the value pg parsed already. */
const json = (v: unknown): never => (typeof v === 'string' ? JSON.parse(v) : v) as never
/** An instant (ms since the epoch): a number, or the string pg gives for a BIGINT. */
const at = (v: unknown): number => Number(v)
const atOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))

export const KEY_COLUMNS =
  'id, hash, start, name, account_id, kind, category, scopes, metadata, active, created_at, expires_at, last_used_at, revoked_at, limits'

/** A row of the keys table, as a driver returns it. */
export type KeyRow = Record<
  | 'id'
  | 'hash'
  | 'start'
  | 'name'
  | 'account_id'
  | 'kind'
  | 'category'
  | 'scopes'
  | 'metadata'
  | 'active'
  | 'created_at'
  | 'expires_at'
  | 'last_used_at'
  | 'revoked_at'
  | 'limits',
  unknown
>

export function keyFromRow(r: KeyRow): KeyRecord {
  return {
    id: r.id as string,
    hash: r.hash as string,
    start: r.start as string,
    name: r.name as string,
    accountId: r.account_id as string,
    kind: r.kind as KeyRecord['kind'],
    category: r.category as string | null,
    scopes: json(r.scopes),
    metadata: json(r.metadata),
    active: r.active === true || r.active === 1,
    createdAt: at(r.created_at),
    expiresAt: atOrNull(r.expires_at),
    lastUsedAt: atOrNull(r.last_used_at),
    revokedAt: atOrNull(r.revoked_at),
    limits: json(r.limits),
  }
}

export const ACCOUNT_COLUMNS =
  'id, tier, balance, carryover, period_start, tier_expires_at, billing_customer_id, metadata'

/** A row of the accounts table, as a driver returns it. */
export type AccountRow = Record<
  | 'id'
  | 'tier'
  | 'balance'
  | 'carryover'
  | 'period_start'
  | 'tier_expires_at'
  | 'billing_customer_id'
  | 'metadata',
  unknown
>

export function accountFromRow(r: AccountRow): AccountRecord {
  return {
    id: r.id as string,
    tier: r.tier as string | null,
    balance: r.balance as number,
    carryover: r.carryover as number,
    periodStart: at(r.period_start),
    tierExpiresAt: atOrNull(r.tier_expires_at),
    billingCustomerId: r.billing_customer_id as string | null,
    metadata: json(r.metadata),
  }
}

export const SECRET_COLUMNS = 'account_id, provider, sealed, last4, created_at, verified_at'

/** A row of the provider keys table, as a driver returns it. */
export type SecretRow = Record<
  'account_id' | 'provider' | 'sealed' | 'last4' | 'created_at' | 'verified_at',
  unknown
>

export function secretFromRow(r: SecretRow): ProviderKeyRecord {
  return {
    accountId: r.account_id as string,
    provider: r.provider as string,
    sealed: r.sealed as string,
    last4: r.last4 as string,
    createdAt: at(r.created_at),
    verifiedAt: atOrNull(r.verified_at),
  }
}
