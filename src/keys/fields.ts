/**
 * @module keys/fields
 *
 * The fields of a key as every entry takes them, defined once: `tb.keys.create`/`update`/
 * `rotate` and the management API (and so the portal, which runs on it) build their schemas
 * from these, so a name, a category or an expiry follows one rule with one message wherever
 * it is given. Key limits are `limitsSchema` of `src/options.ts`.
 */

import { z } from 'zod'
import { metadataSchema, text } from '../input.js'

const DAY = 86_400_000

/** A key's name: 1-100 characters after trimming, valid Unicode without NUL. */
export const keyName = text(
  z.string().trim().min(1, 'must be 1-100 characters').max(100, 'must be 1-100 characters'),
)

/** A key's category (a free label, e.g. `production`), or null for none. */
export const keyCategory = text(z.string().trim().min(1).max(64)).nullable()

/** A key's scopes: at most 100, each 1-128 characters. */
export const keyScopes = z.array(text(z.string().min(1).max(128))).max(100)

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
