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
import { throughBound } from '../bounded-calls.js'
import type { Context } from '../context.js'
import { ConflictError, InvalidRequestError, NotFoundError } from '../errors.js'
import { categoryText, pageSize, text, textProblem } from '../input.js'
import { accountIdSchema, accountScope, checkAccountId } from '../metering/accounts.js'
import { argumentError, limitsSchema, parseInput, parseOptions } from '../options.js'
import type { KeyKind, KeyLimits, KeyPatch, KeyRecord } from '../storage/types.js'
import { instant, keyPatchFields, newKeyFields, oneExpiry, rotateKeySchema } from './fields.js'
import { deleteCheck, refusedBy } from './first-use.js'
import { generateKey, keyStart, START_LENGTH } from './format.js'
import { newId } from './ids.js'
import { createNameGuard, type NameRule } from './unique-names.js'

const DAY = 86_400_000

/** Why a used key is not deleted for good (seed 002). */
const USED = 'This key has request history and cannot be deleted; deactivate it instead'

/** A key as the API shows it: no hash, no plaintext. */
export type KeyView = Omit<KeyRecord, 'hash'>

export function keyView(r: KeyRecord): KeyView {
  const { hash: _hash, ...view } = r
  return view
}

export const createKeySchema = z
  .object({
    accountId: accountIdSchema,
    ...newKeyFields(instant),
    limits: limitsSchema.default({}),
    kind: z.enum(['consumption', 'management']).default('consumption'),
    active: z.boolean().default(true),
    /**
     * One of the instance's consumption prefixes (`options.prefixes.consumption` may list
     * several, a prefix per type of key); the first by default.
     */
    prefix: z.string().max(32).optional(),
  })
  .strict()
  .refine(...oneExpiry)

export type CreateKeyInput = z.input<typeof createKeySchema>

/** A key about to be created: the create input after validation and defaults. */
export type KeyDraft = z.output<typeof createKeySchema>

/**
 * A creation rule (see {@link KeyManager.addRule}): fills in a type of key's defaults and
 * checks what creating one requires. Returns the draft to create (changed or not), or throws
 * a `TollboothError`, whose status, code and message are the answer.
 */
export type KeyCreationRule = (draft: KeyDraft) => KeyDraft | Promise<KeyDraft>

export const updateKeySchema = z.object(keyPatchFields(instant, limitsSchema)).strict()

export type UpdateKeyInput = z.input<typeof updateKeySchema>

const listSchema = z
  .object({
    limit: pageSize.default(20),
    cursor: text(z.string().max(200)).nullable().optional(),
    kind: z.enum(['consumption', 'management']).default('consumption'),
    includeRevoked: z.boolean().default(false),
    /** Only the keys tagged with this category. */
    category: categoryText.optional(),
  })
  .strict()

/**
 * `keys.delete`'s options, strict: `evenIfUsed` deletes a key's history with it, so a `'false'`
 * or a misspelt name is refused, never read as something else.
 */
const deleteOptions = z.object({ evenIfUsed: z.boolean().default(false) }).strict()

/** Store pages read at most for one filtered page (each as large as what is still missing). */
const MAX_FILTERED_READS = 50

/** Scopes a lookup to one account: another account's key answers 404, like a missing one. */
export interface Scope {
  accountId?: string
}

/** The scope of `update`, which may ask for a name unique in the account (`NameRule`). */
const updateScope = accountScope.extend({ uniqueName: z.boolean().optional() }).strict()

export interface CreatedKey {
  /** The plaintext key. Shown once: store it now, it cannot be retrieved again. */
  key: string
  record: KeyView
}

/** `tb.keys.rotate`'s options after validation. */
type RotateOptions = z.output<typeof rotateKeySchema>

/**
 * The entries of `tb.keys` for input already parsed by the schemas of `keys/fields.ts` (the
 * management API's bodies): the same steps as `create`, `update` and `rotate` without a
 * second validation, so each body is validated once, with one wording.
 */
export interface ParsedKeyEntries {
  create(draft: KeyDraft, rule: NameRule): Promise<CreatedKey>
  update(id: string, patch: KeyPatch, scope: Scope & NameRule): Promise<KeyView>
  rotate(id: string, options: RotateOptions, scope: Scope): Promise<CreatedKey>
}

let entriesOf: (keys: KeyManager) => ParsedKeyEntries

/** The {@link ParsedKeyEntries} of `tb.keys` (internal: adapters only, never exported). */
export function parsedKeyEntries(keys: KeyManager): ParsedKeyEntries {
  return throughBound(keys, entriesOf)
}

export class KeyManager {
  static {
    entriesOf = (m) => ({
      create: (draft, rule) => m.#create(draft, rule),
      update: (id, patch, scope) => m.#update(id, patch, scope),
      rotate: (id, options, scope) => m.#rotate(id, options, scope),
    })
  }

  private readonly names: ReturnType<typeof createNameGuard>
  private readonly rules: KeyCreationRule[] = []

  constructor(private readonly ctx: Context) {
    this.names = createNameGuard(ctx.storage, () => ctx.clock.now())
  }

  /** The prefixes a key of `kind` may carry; the first is the default. */
  private prefixes(kind: KeyKind): ReadonlyArray<string> {
    const p = this.ctx.options.prefixes
    return kind === 'management' ? [p.management] : p.consumptionAll
  }

  /** The prefix asked for, checked against the kind's; the default when none is asked for. */
  private prefix(kind: KeyKind, asked?: string): string {
    const allowed = this.prefixes(kind)
    if (asked === undefined) return allowed[0]!
    if (!allowed.includes(asked)) {
      const message = `must be one of ${allowed.join(', ')}`
      throw new InvalidRequestError(`Invalid request: prefix: ${message}`, [
        { path: 'prefix', message },
      ])
    }
    return asked
  }

  /**
   * The key `id` of the scope's account (404 for another account's, as for a missing one).
   *
   * @param fn the method called (`get`), named with a bad scope
   * @throws {ConfigError} for a scope that is not `{ accountId }` (`uniqueName` too on update):
   *   a misspelt name would otherwise go unread and the key be answered whatever its account
   */
  private async owned(id: string, scope: Scope, fn: string): Promise<KeyRecord> {
    parseOptions(`tb.keys.${fn}`, fn === 'update' ? updateScope : accountScope, scope, 'scope')
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

  private mint(prefix: string): { key: string; hash: string; start: string } {
    const key = generateKey(prefix)
    return { key, hash: this.ctx.hash(key), start: keyStart(key, prefix) }
  }

  /**
   * Creates a key. The plaintext is in the result and nowhere else.
   * @param [rule.uniqueName=false] refuse a name another live key of the account wears (409)
   */
  async create(input: CreateKeyInput, rule: NameRule = {}): Promise<CreatedKey> {
    return this.#create(parseInput(createKeySchema, input), rule)
  }

  async #create(draft: KeyDraft, rule: NameRule): Promise<CreatedKey> {
    let v = draft
    // A rule is the integrator's code: what it returns is checked like any input.
    for (const r of this.rules) v = parseInput(createKeySchema, await r(v))
    this.prefix(v.kind, v.prefix)
    if (rule.uniqueName === true)
      return this.names.claim(
        { accountId: v.accountId, kind: v.kind, name: v.name, exceptId: null },
        () => this.insert(v),
      )
    return this.insert(v)
  }

  /**
   * Adds a creation rule: the one place for a type of key's defaults and creation checks
   * (a default rate limit, a balance that must be positive, …). Every `create` runs the rules
   * in the order they were added, whatever called it: the management API, the portal or the
   * product's own routes, so a key made in one follows the same rules as a key made in
   * another. Rotation copies the old key and runs no rule.
   *
   * @returns a function that removes the rule
   * @throws {ConfigError} when `rule` is not a function:
   *   `tb.keys.addRule: rule must be a function of the key draft, got an object`
   * @example
   * ```ts
   * tb.keys.addRule((draft) =>
   *   draft.kind === 'consumption' && !draft.limits.rateLimits
   *     ? { ...draft, limits: { ...draft.limits, rateLimits: [{ limit: 60, windowMs: 60_000 }] } }
   *     : draft,
   * )
   * ```
   */
  addRule(rule: KeyCreationRule): () => void {
    if (typeof rule !== 'function')
      throw argumentError('tb.keys.addRule', 'rule', 'must be a function of the key draft', rule)
    this.rules.push(rule)
    return () => {
      const i = this.rules.indexOf(rule)
      if (i !== -1) this.rules.splice(i, 1)
    }
  }

  private async insert(v: KeyDraft): Promise<CreatedKey> {
    const now = this.ctx.clock.now()
    const m = this.mint(this.prefix(v.kind, v.prefix))
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
    const { category, ...o } = parseInput(listSchema, options)
    if (category === undefined) {
      const page = await this.ctx.storage.keys.list(accountId, o)
      return {
        data: page.data.map(keyView),
        nextCursor: page.nextCursor,
        hasMore: page.nextCursor !== null,
      }
    }
    // Filtered: read store pages no larger than what is still missing, so a page never ends
    // in the middle of a store page and the store's own cursor stays the next one.
    const data: KeyView[] = []
    let cursor = o.cursor ?? null
    for (let reads = 0; reads < MAX_FILTERED_READS && data.length < o.limit; reads++) {
      const page = await this.ctx.storage.keys.list(accountId, {
        ...o,
        limit: o.limit - data.length,
        cursor,
      })
      for (const r of page.data) if (r.category === category) data.push(keyView(r))
      cursor = page.nextCursor
      if (cursor === null) break
    }
    return { data, nextCursor: cursor, hasMore: cursor !== null }
  }

  async get(id: string, scope: Scope = {}): Promise<KeyView> {
    return keyView(await this.owned(id, scope, 'get'))
  }

  /**
   * Changes name, active flag, category, scopes, metadata, limits or expiry.
   * @param [scope.uniqueName=false] refuse a new name another live key of the account wears
   */
  async update(id: string, input: UpdateKeyInput, scope: Scope & NameRule = {}): Promise<KeyView> {
    return this.#update(id, parseInput(updateKeySchema, input) as KeyPatch, scope)
  }

  async #update(id: string, patch: KeyPatch, scope: Scope & NameRule): Promise<KeyView> {
    const r = await this.owned(id, scope, 'update')
    const name = patch.name
    if (scope.uniqueName === true && name !== undefined)
      return this.names.claim({ accountId: r.accountId, kind: r.kind, name, exceptId: r.id }, () =>
        this.apply(r, patch),
      )
    return this.apply(r, patch)
  }

  private async apply(r: KeyRecord, patch: KeyPatch): Promise<KeyView> {
    // Revocation is final: a revoked key answering 200 `active: true` would still be refused.
    if (r.revokedAt !== null && r.revokedAt <= this.ctx.clock.now())
      throw new ConflictError('This key is revoked and cannot be changed')
    const updated = await this.ctx.storage.keys.update(r.id, patch)
    if (!updated) throw new NotFoundError('API key not found')
    await this.ctx.invalidate(r.hash)
    return keyView(updated)
  }

  /** Revokes at once (soft: the record and its history stay). Revoking twice is a no-op. */
  async revoke(id: string, scope: Scope = {}): Promise<KeyView> {
    const r = await this.owned(id, scope, 'revoke')
    const now = this.ctx.clock.now()
    if (r.revokedAt !== null && r.revokedAt <= now) return keyView(r)
    const updated = await this.ctx.storage.keys.update(r.id, { revokedAt: now })
    await this.ctx.invalidate(r.hash)
    return keyView(updated ?? r)
  }

  /**
   * Deletes for good. By default only a key that was never used: a used key answers 409
   * (deactivate it instead), the rule of seed 002. With `options.evenIfUsed` a used key is
   * deleted too (seed 004's "permanently deletes … and revokes it"): the record goes, so the
   * key is refused at once and is gone from every list and lookup (404), while its usage
   * events stay in the account's usage and billing. A first use on another instance sharing
   * the store and this delete meet in the key's first-use counter (`keys/first-use`): either
   * the delete wins and that request is refused as a deleted key's (401), or the use does and
   * the delete answers 409.
   * @param [options.evenIfUsed=false] delete a key that has request history as well
   */
  async delete(
    id: string,
    scope: Scope = {},
    options: { evenIfUsed?: boolean } = {},
  ): Promise<void> {
    const { evenIfUsed } = parseInput(deleteOptions, options)
    const r = await this.owned(id, scope, 'delete')
    // Another instance's use of the key sits in its out-box until its next flush (every
    // `usage.flushIntervalMs`, a write taking up to `storageTimeoutMs`): with a change feed,
    // other instances may share the store, so the use is read only once what they queued
    // before this call has been written. Their admissions are settled by the first-use counter
    // below, however late their out-box; this wait is for the events of the requests they
    // refused (an inactive or expired key, a missing scope: history too).
    const o = this.ctx.options
    const others =
      !evenIfUsed && this.ctx.storage.changes !== undefined
        ? new Promise((resolve) =>
            setTimeout(resolve, o.usage.flushIntervalMs + o.storageTimeoutMs),
          )
        : null
    // Events of the key still in the out-box are written first: they are its history.
    await this.ctx.outbox.flush()
    await others
    const fresh = (await this.ctx.storage.keys.get(r.id)) ?? r
    const used =
      !evenIfUsed &&
      (fresh.lastUsedAt !== null ||
        (await this.ctx.storage.usage.logs(r.id, { limit: 1 })).data.length > 0)
    if (used) throw new ConflictError(USED)
    // The use not written yet (another instance's first request, admitted before this point or
    // from now until the key is gone): the key's first-use counter decides, atomically.
    const counters = evenIfUsed ? null : this.ctx.firstUses
    const mark = deleteCheck(r.accountId, r.id)
    if (counters) {
      const taken = await counters.consume([mark], this.ctx.clock.now())
      if (!taken.allowed) {
        throw new ConflictError(
          refusedBy(taken) === 'use' ? USED : 'This key is being deleted by another call',
        )
      }
    }
    try {
      await this.ctx.storage.keys.delete(r.id)
    } catch (err) {
      // The key stays: its first use may come after all.
      if (counters) await counters.unclaim(mark.key).catch(() => {})
      throw err
    }
    await this.ctx.invalidate(r.hash)
  }

  /**
   * Replaces a key: a new key with the same name, kind, category, scopes, metadata, limits and
   * expiry, and the old one revoked in the same atomic step, at once or after
   * `gracePeriodMs` (during which both work).
   */
  async rotate(
    id: string,
    options: z.input<typeof rotateKeySchema> = {},
    scope: Scope = {},
  ): Promise<CreatedKey> {
    return this.#rotate(id, parseInput(rotateKeySchema, options), scope)
  }

  async #rotate(id: string, o: RotateOptions, scope: Scope): Promise<CreatedKey> {
    const r = await this.owned(id, scope, 'rotate')
    const now = this.ctx.clock.now()
    if (r.revokedAt !== null && r.revokedAt <= now)
      throw new ConflictError('This key is revoked and cannot be rotated')
    // The new key keeps the old one's prefix (its type), while the instance still issues it.
    const kept = this.prefixes(r.kind).find(
      (p) => r.start.startsWith(p) && r.start.length === p.length + START_LENGTH,
    )
    const m = this.mint(kept ?? this.prefix(r.kind))
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
