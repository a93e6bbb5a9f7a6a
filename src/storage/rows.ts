/**
 * @module storage/rows
 *
 * Rows of the SQL stores (PostgreSQL, SQLite) as records, written once: the columns of keys,
 * accounts, provider keys and usage events, and their mapping to `KeyRecord`,
 * `AccountRecord`, `ProviderKeyRecord` and `UsageEvent`. The two drivers differ only in how a
 * cell comes back, which the mapping reads either way: JSON as text (SQLite) or parsed (pg), a
 * flag as 0/1 or a boolean, an instant as a number or a BIGINT's string. Going in, they differ
 * in how a JSON, list or flag cell is passed ({@link Cells}).
 */

import { ConflictError } from '../errors.js'
import type { AccountRecord, KeyPatch, KeyRecord, ProviderKeyRecord, UsageEvent } from './types.js'

/**
 * What a `rotate` does to the old key, whose stored revocation is `revokedAt`, checked in the
 * store's atomic step:
 * - a key revoked at the new key's creation (`revokedAt <= next.createdAt`) is refused with a
 *   `ConflictError`, so of concurrent rotations of one key without a grace period exactly one
 *   succeeds, and a key revoked (or rotated) meanwhile gets no successor, as if the calls had
 *   come one after the other;
 * - else the patch, with the earlier of the two revocations: a rotation that read the key
 *   before another instance revoked it never moves that revocation later (a grace period would
 *   make the revoked key valid again); one sooner than a revocation still to come brings it
 *   forward.
 */
export function rotation(
  revokedAt: number | null,
  patch: KeyPatch,
  next: KeyRecord,
): KeyPatch | ConflictError {
  if (revokedAt === null) return patch
  if (revokedAt <= next.createdAt)
    return new ConflictError('This key is revoked and cannot be rotated')
  const at = patch.revokedAt
  return at === undefined || (at !== null && at <= revokedAt) ? patch : { ...patch, revokedAt }
}

/** How a driver takes a cell that is not a string or a number. */
export interface Cells {
  /** A JSON column's value. */
  json(v: unknown): unknown
  /** A list column's value (a text array in PostgreSQL, JSON in SQLite). */
  list(v: readonly string[]): unknown
  /** A flag column's value (a boolean, or 0/1). */
  flag(v: boolean): unknown
}

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

/** A key record's values in {@link KEY_COLUMNS} order, as `cells` passes them. */
export function keyValues(k: KeyRecord, cells: Cells): unknown[] {
  return [
    k.id,
    k.hash,
    k.start,
    k.name,
    k.accountId,
    k.kind,
    k.category,
    cells.list(k.scopes),
    cells.json(k.metadata),
    cells.flag(k.active),
    k.createdAt,
    k.expiresAt,
    k.lastUsedAt,
    k.revokedAt,
    cells.json(k.limits),
  ]
}

export const ACCOUNT_COLUMNS =
  'id, tier, balance, carryover, period_start, tier_expires_at, billing_customer_id, metadata, closed_periods'

/** A row of the accounts table, as a driver returns it. */
export type AccountRow = Record<
  | 'id'
  | 'tier'
  | 'balance'
  | 'carryover'
  | 'period_start'
  | 'tier_expires_at'
  | 'billing_customer_id'
  | 'metadata'
  | 'closed_periods',
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
    closedPeriods: r.closed_periods === null ? undefined : json(r.closed_periods),
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

/**
 * The columns of a usage event in insert order, each with its PostgreSQL type (for typed
 * arrays) and the event's value (a flag as a boolean: see {@link Cells}).
 */
export const EVENT_FIELDS = [
  ['id', 'text', (e) => e.id],
  ['request_id', 'text', (e) => e.requestId],
  ['key_id', 'text', (e) => e.keyId],
  ['account_id', 'text', (e) => e.accountId],
  ['occurred_at', 'bigint', (e) => e.time],
  ['units', 'float8', (e) => e.units],
  ['overage', 'float8', (e) => e.overage],
  ['tokens', 'float8', (e) => e.tokens],
  ['category', 'text', (e) => e.category],
  ['key_category', 'text', (e) => e.keyCategory ?? null],
  ['status', 'int4', (e) => e.status],
  ['duration_ms', 'float8', (e) => e.durationMs],
  ['ttfb_ms', 'float8', (e) => e.ttfbMs ?? null],
  ['code', 'text', (e) => e.code ?? null],
  ['ip', 'text', (e) => e.ip],
  ['method', 'text', (e) => e.method],
  ['path', 'text', (e) => e.path],
  ['bypassed', 'bool', (e) => e.bypassed],
  ['provider', 'text', (e) => e.provider],
] as const satisfies ReadonlyArray<
  readonly [column: string, pgType: string, get: (e: UsageEvent) => unknown]
>

export const EVENT_COLUMNS = EVENT_FIELDS.map((f) => f[0]).join(', ')

/** A row of the usage events table, as a driver returns it: a cell per column of {@link EVENT_FIELDS}. */
export type EventRow = Record<(typeof EVENT_FIELDS)[number][0], unknown>

export function eventFromRow(r: EventRow): UsageEvent {
  return {
    id: r.id as string,
    requestId: r.request_id as string,
    keyId: r.key_id as string,
    accountId: r.account_id as string,
    time: at(r.occurred_at),
    units: r.units as number,
    overage: r.overage as number,
    tokens: r.tokens as number,
    category: r.category as string | null,
    keyCategory: r.key_category as string | null,
    status: r.status as number,
    durationMs: r.duration_ms as number,
    ttfbMs: r.ttfb_ms as number | null,
    code: r.code as UsageEvent['code'],
    ip: r.ip as string | null,
    method: r.method as string,
    path: r.path as string,
    bypassed: r.bypassed === true || r.bypassed === 1,
    provider: r.provider as string | null,
  }
}
