/**
 * @module keys/fields
 *
 * The fields of a key and the bodies that carry them, defined once: `tb.keys.create`/`update`/
 * `rotate` build their schemas from these, and the management API (and so the portal, which
 * runs on it) parses its JSON bodies with the bodies below and hands the parsed value to
 * `tb.keys` without a second validation (`parsedKeyEntries` of `keys/manager.ts`). A name, a
 * category or an expiry follows one rule with one message wherever it is given.
 */

import { z } from 'zod'
import { categoryText, MAX_INSTANT_MS, metadataSchema, text } from '../input.js'
import { limitsSchema } from '../options.js'
import type { KeyPatch } from '../storage/types.js'

const DAY = 86_400_000

/** The fields `keys.update` and `keys.rotate` change (`KeyPatch`): a store applies these only. */
export const KEY_PATCH_FIELDS = [
  'name',
  'category',
  'scopes',
  'metadata',
  'active',
  'expiresAt',
  'revokedAt',
  'limits',
] as const satisfies ReadonlyArray<keyof KeyPatch>

/**
 * The fields of `patch` a store applies: the defined ones of {@link KEY_PATCH_FIELDS}. What
 * a key is found by (its id, hash, account) and what it was made with stay as stored, whatever
 * an untyped caller sends.
 */
export function patchFields(patch: KeyPatch): KeyPatch {
  const out: Record<string, unknown> = {}
  for (const field of KEY_PATCH_FIELDS) if (patch[field] !== undefined) out[field] = patch[field]
  return out as KeyPatch
}

/** A key's name: 1-100 characters after trimming, valid Unicode without NUL. */
export const keyName = text(
  z.string().trim().min(1, 'must be 1-100 characters').max(100, 'must be 1-100 characters'),
)

/** A key's category (a free label, e.g. `production`), or null for none. */
export const keyCategory = categoryText.nullable()

/** A key's scopes: at most 100, each 1-128 characters, each kept once (in the order given). */
export const keyScopes = z
  .array(text(z.string().min(1).max(128)))
  .max(100)
  .transform((scopes) => [...new Set(scopes)])

/** A key's metadata: JSON, bounded in depth and size (`src/input.ts`). */
export const keyMetadata = metadataSchema()

/** Days until a new key expires: a whole number from 1 to 365. */
export const expiresInDays = z
  .number()
  .int('must be a whole number of days')
  .min(1, 'must be 1-365')
  .max(365, 'must be 1-365')

/** How long a rotated key keeps working, in ms: 0 to 30 days. */
export const gracePeriodMs = z
  .number()
  .int()
  .min(0, 'must be 0 to 30 days in ms')
  .max(30 * DAY, 'must be 0 to 30 days in ms')

const INSTANT_MESSAGE = `must be ms since 1970 (an integer from 0 to ${MAX_INSTANT_MS}), a Date or an ISO 8601 date-time, not before 1970`

const isoDateTime = z.iso.datetime({ offset: true })

/**
 * An instant as `tb.keys` takes it: ms since the epoch, a `Date` or an ISO 8601 string, each
 * to ms, then held to what a `Date` can show from 1970 on, with one message for every form.
 */
export const instant = z.preprocess(
  (v) =>
    v instanceof Date
      ? v.getTime()
      : typeof v === 'string' && isoDateTime.safeParse(v).success
        ? Date.parse(v)
        : v,
  z
    .number({ error: INSTANT_MESSAGE })
    .int({ error: INSTANT_MESSAGE, abort: true })
    .min(0, { error: INSTANT_MESSAGE })
    .max(MAX_INSTANT_MS, { error: INSTANT_MESSAGE }),
)

/** An instant as a JSON body gives it: an ISO 8601 date-time from 1970 on, to ms since the epoch. */
export const isoInstant = z.iso
  .datetime({ offset: true, message: 'must be an ISO 8601 date-time' })
  .transform((s) => Date.parse(s))
  .pipe(z.number().min(0, 'must not be before 1970-01-01T00:00:00Z'))

/** Time blocks' `start` and `end` given as ISO strings (as they are shown) become ms. */
function blocksInMs(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v
  const blocks = (v as Record<string, unknown>)['timeBlocks']
  if (!Array.isArray(blocks)) return v
  const ms = (t: unknown) =>
    typeof t === 'string' && !Number.isNaN(Date.parse(t)) ? Date.parse(t) : t
  return {
    ...v,
    timeBlocks: blocks.map((b) =>
      typeof b === 'object' && b !== null
        ? {
            ...b,
            start: ms((b as Record<string, unknown>)['start']),
            end: ms((b as Record<string, unknown>)['end']),
          }
        : b,
    ),
  }
}

/**
 * Key limits as a JSON body gives them: `limitsSchema` (strict, field by field), with time
 * blocks as ISO strings or ms since the epoch.
 */
export const keyLimitsJson = z.preprocess(blocksInMs, limitsSchema)

/** The fields a caller sets on a new key, with their defaults; `at` reads `expiresAt`. */
export function newKeyFields<T extends z.ZodType<number, unknown>>(at: T) {
  return {
    name: keyName.default('Default'),
    expiresInDays: expiresInDays.optional(),
    expiresAt: at.nullable().optional(),
    category: keyCategory.default(null),
    scopes: keyScopes.default([]),
    metadata: keyMetadata.default({}),
  }
}

/** A new key's expiry is given one way, `expiresInDays` or `expiresAt`: `.refine(...oneExpiry)`. */
export const oneExpiry: [
  (v: { expiresInDays?: number | undefined; expiresAt?: number | null | undefined }) => boolean,
  { message: string; path: string[] },
] = [
  (v) => v.expiresInDays === undefined || v.expiresAt == null,
  { message: 'give expiresInDays or expiresAt, not both', path: ['expiresAt'] },
]

/** The fields a change to a key may set; `at` reads `expiresAt`, `limits` the key limits. */
export function keyPatchFields<T extends z.ZodType<number, unknown>, L extends z.ZodType>(
  at: T,
  limits: L,
) {
  return {
    name: keyName.optional(),
    active: z.boolean().optional(),
    category: keyCategory.optional(),
    scopes: keyScopes.optional(),
    metadata: keyMetadata.optional(),
    limits: limits.optional(),
    expiresAt: at.nullable().optional(),
  }
}

/** `tb.keys.rotate`'s options, and the body of `POST /keys/:id/rotate`. */
export const rotateKeySchema = z.object({ gracePeriodMs: gracePeriodMs.default(0) }).strict()

/** The body of `POST /keys` (JSON): a consumption key of the caller's account. */
export const createKeyBody = z
  .object({ ...newKeyFields(isoInstant), limits: keyLimitsJson.default({}) })
  .strict()
  .refine(...oneExpiry)

/** The body of `POST /management-keys` (JSON): no category, no limits. */
export const createManagementKeyBody = z
  .object(newKeyFields(isoInstant))
  .omit({ category: true })
  .strict()
  .refine(...oneExpiry)

/** The body of `PATCH /keys/:id` (JSON): at least one field. */
export const updateKeyBody = z
  .object(keyPatchFields(isoInstant, keyLimitsJson))
  .strict()
  .refine((v) => Object.keys(v).length > 0, {
    message: 'give at least one field to change',
    // A body of unknown fields only is answered for those, not as an empty change.
    when: (payload) => payload.issues.length === 0,
  })
