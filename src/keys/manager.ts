/**
 * @module keys/manager
 *
 * The key lifecycle, `tb.keys`: create, list, get, update, revoke, delete (only a key that
 * was never used), rotate (the new key and the old key's revocation commit in one step, with
 * an optional grace period). The plaintext is returned by create and rotate only; every other
 * answer is a {@link KeyView}, which never holds a secret or a hash.
 *
 * Every input is validated with zod (a 400 `InvalidRequestError` naming each bad field, and
 * nothing changed); text and metadata follow the rules of `src/input.ts` (valid Unicode, no
 * NUL, metadata bounded in depth and size), the same for every store. Every change drops the
 * key from the cache on this instance and, through the storage's change feed, on every other.
 */

import { z } from 'zod'
import type { Context } from '../context.js'
import { ConflictError, NotFoundError } from '../errors.js'
import { text, textProblem } from '../input.js'
import { accountIdSchema, checkAccountId } from '../metering/accounts.js'
import { limitsSchema, parseInput } from '../options.js'
import type { KeyKind, KeyLimits, KeyPatch, KeyRecord } from '../storage/types.js'
import {
  expiresInDays,
  gracePeriodMs,
  keyCategory,
  keyMetadata,
  keyName,
  keyScopes,
} from './fields.js'
import { generateKey, keyStart } from './format.js'
import { newId } from './ids.js'
import { createNameGuard, type NameRule } from './unique-names.js'

const DAY = 86_400_000

/** A key as the API shows it: no hash, no plaintext. */
export type KeyView = Omit<KeyRecord, 'hash'>

export function keyView(r: KeyRecord): KeyView {
  const { hash: _hash, ...view } = r
  return view
}

const when = z.union([
  z.number().int().nonnegative(),
  z.date().transform((d) => d.getTime()),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
])

const name = keyName
const category = keyCategory
const scopes = keyScopes
const metadata = keyMetadata

export const createKeySchema = z
  .object({
    accountId: accountIdSchema,
    name: name.default('Default'),
    kind: z.enum(['consumption', 'management']).default('consumption'),
    expiresInDays: expiresInDays.optional(),
    expiresAt: when.nullable().optional(),
    category: category.default(null),
    scopes: scopes.default([]),
    metadata: metadata.default({}),
    limits: limitsSchema.default({}),
    active: z.boolean().default(true),
  })
  .strict()
  .refine((v) => v.expiresInDays === undefined || v.expiresAt == null, {
    message: 'give expiresInDays or expiresAt, not both',
    path: ['expiresAt'],
  })

export type CreateKeyInput = z.input<typeof createKeySchema>

export const updateKeySchema = z
  .object({
    name: name.optional(),
    active: z.boolean().optional(),
    category: category.optional(),
    scopes: scopes.optional(),
    metadata: metadata.optional(),
    limits: limitsSchema.optional(),
    expiresAt: when.nullable().optional(),
  })
  .strict()

export type UpdateKeyInput = z.input<typeof updateKeySchema>

const listSchema = z
  .object({
    limit: z.number().int().min(1).max(100).default(20),
    cursor: text(z.string().max(200)).nullable().optional(),
    kind: z.enum(['consumption', 'management']).default('consumption'),
    includeRevoked: z.boolean().default(false),
  })
  .strict()

const rotateSchema = z
  .object({
    gracePeriodMs: gracePeriodMs.default(0),
  })
  .strict()

/** Scopes a lookup to one account: another account's key answers 404, like a missing one. */
export interface Scope {
  accountId?: string
}

export interface CreatedKey {
  /** The plaintext key. Shown once: store it now, it cannot be retrieved again. */
  key: string
  record: KeyView
}

export class KeyManager {
  private readonly names: ReturnType<typeof createNameGuard>

  constructor(private readonly ctx: Context) {
    this.names = createNameGuard(ctx.storage)
  }

  private prefix(kind: KeyKind): string {
    return this.ctx.options.prefixes[kind]
  }

  private async owned(id: string, scope: Scope): Promise<KeyRecord> {
    // An id no key can have (too long, a NUL, a lone surrogate) is not looked up: a store
    // could only fail on it.
    const r =
      typeof id === 'string' && id.length <= 64 && textProblem(id) === null
        ? await this.ctx.storage.keys.get(id)
        : null
    if (!r || (scope.accountId !== undefined && r.accountId !== scope.accountId))
      throw new NotFoundError('API key not found')
    return r
  }

  private mint(kind: KeyKind): { key: string; hash: string; start: string } {
    const prefix = this.prefix(kind)
    const key = generateKey(prefix)
    return { key, hash: this.ctx.hash(key), start: keyStart(key, prefix) }
  }

  /**
   * Creates a key. The plaintext is in the result and nowhere else.
   * @param [rule.uniqueName=false] refuse a name another live key of the account wears (409)
   */
  async create(input: CreateKeyInput, rule: NameRule = {}): Promise<CreatedKey> {
    const v = parseInput(createKeySchema, input)
    if (rule.uniqueName === true)
      return this.names.claim(
        { accountId: v.accountId, kind: v.kind, name: v.name, exceptId: null },
        () => this.insert(v),
      )
    return this.insert(v)
  }

  private async insert(v: z.output<typeof createKeySchema>): Promise<CreatedKey> {
    const now = this.ctx.clock.now()
    const m = this.mint(v.kind)
    const record: KeyRecord = {
      id: newId('key', now),
      hash: m.hash,
      start: m.start,
      name: v.name,
      accountId: v.accountId,
      kind: v.kind,
      category: v.category,
      scopes: v.scopes,
      metadata: v.metadata,
      active: v.active,
      createdAt: now,
      expiresAt:
        v.expiresInDays !== undefined ? now + v.expiresInDays * DAY : (v.expiresAt ?? null),
      lastUsedAt: null,
      revokedAt: null,
      limits: v.limits as KeyLimits,
    }
    await this.ctx.accounts.ensure(v.accountId)
    await this.ctx.storage.keys.insert(record)
    // A remembered miss for this hash (a guess that came true) must not hide the new key.
    await this.ctx.invalidate(m.hash)
    return { key: m.key, record: keyView(record) }
  }

  /** An account's keys, newest first. Revoked keys are left out unless asked for. */
  async list(
    accountId: string,
    options: z.input<typeof listSchema> = {},
  ): Promise<{ data: KeyView[]; nextCursor: string | null; hasMore: boolean }> {
    checkAccountId(accountId)
    const o = parseInput(listSchema, options)
    const page = await this.ctx.storage.keys.list(accountId, o)
    return {
      data: page.data.map(keyView),
      nextCursor: page.nextCursor,
      hasMore: page.nextCursor !== null,
    }
  }

  async get(id: string, scope: Scope = {}): Promise<KeyView> {
    return keyView(await this.owned(id, scope))
  }

  /**
   * Changes name, active flag, category, scopes, metadata, limits or expiry.
   * @param [scope.uniqueName=false] refuse a new name another live key of the account wears
   */
  async update(id: string, input: UpdateKeyInput, scope: Scope & NameRule = {}): Promise<KeyView> {
    const patch = parseInput(updateKeySchema, input) as KeyPatch
    const r = await this.owned(id, scope)
    const name = patch.name
    if (scope.uniqueName === true && name !== undefined)
      return this.names.claim({ accountId: r.accountId, kind: r.kind, name, exceptId: r.id }, () =>
        this.apply(r, patch),
      )
    return this.apply(r, patch)
  }

  private async apply(r: KeyRecord, patch: KeyPatch): Promise<KeyView> {
    const updated = await this.ctx.storage.keys.update(r.id, patch)
    if (!updated) throw new NotFoundError('API key not found')
    await this.ctx.invalidate(r.hash)
    return keyView(updated)
  }

  /** Revokes at once (soft: the record and its history stay). Revoking twice is a no-op. */
  async revoke(id: string, scope: Scope = {}): Promise<KeyView> {
    const r = await this.owned(id, scope)
    const now = this.ctx.clock.now()
    if (r.revokedAt !== null && r.revokedAt <= now) return keyView(r)
    const updated = await this.ctx.storage.keys.update(r.id, { revokedAt: now })
    await this.ctx.invalidate(r.hash)
    return keyView(updated ?? r)
  }

  /**
   * Deletes for good, only a key that was never used; a used key answers 409 (deactivate it
   * instead: its history is kept for billing and auditing).
   */
  async delete(id: string, scope: Scope = {}): Promise<void> {
    const r = await this.owned(id, scope)
    await this.ctx.outbox.flush()
    const fresh = (await this.ctx.storage.keys.get(r.id)) ?? r
    const used =
      fresh.lastUsedAt !== null ||
      (await this.ctx.storage.usage.logs(r.id, { limit: 1 })).data.length > 0
    if (used) {
      throw new ConflictError(
        'This key has request history and cannot be deleted; deactivate it instead',
      )
    }
    await this.ctx.storage.keys.delete(r.id)
    await this.ctx.invalidate(r.hash)
  }

  /**
   * Replaces a key: a new key with the same name, kind, category, scopes, metadata, limits and
   * expiry, and the old one revoked in the same atomic step, at once or after
   * `gracePeriodMs` (during which both work).
   */
  async rotate(
    id: string,
    options: z.input<typeof rotateSchema> = {},
    scope: Scope = {},
  ): Promise<CreatedKey> {
    const o = parseInput(rotateSchema, options)
    const r = await this.owned(id, scope)
    const now = this.ctx.clock.now()
    if (r.revokedAt !== null && r.revokedAt <= now)
      throw new ConflictError('This key is revoked and cannot be rotated')
    const m = this.mint(r.kind)
    const next: KeyRecord = {
      ...r,
      id: newId('key', now),
      hash: m.hash,
      start: m.start,
      createdAt: now,
      lastUsedAt: null,
      revokedAt: null,
      active: true,
    }
    const old = await this.ctx.storage.keys.rotate(r.id, { revokedAt: now + o.gracePeriodMs }, next)
    if (!old) throw new NotFoundError('API key not found')
    await Promise.all([this.ctx.invalidate(r.hash), this.ctx.invalidate(m.hash)])
    return { key: m.key, record: keyView(next) }
  }
}
