/**
 * @module tollbooth/management/schemas
 *
 * The zod schemas of every body and query the management API takes. They are strict (an
 * unknown field is a 400 that names it) and they list only what a caller may set: the account
 * and the key kind come from the credential and the route, never from the body. The key
 * bodies are the core's (`src/keys/fields.ts`), parsed here once and handed to `tb.keys`
 * as they are; text and metadata use the core's own rules (`text`, `metadataSchema` of
 * `src/input.ts`: valid Unicode, no NUL, metadata bounded in depth and size).
 */

import { z } from 'zod'
import { categoryText, pageSize, text } from '../../src/internal.js'

export {
  createKeyBody,
  createManagementKeyBody,
  providerKeyBody,
  rotateKeySchema as rotateBody,
  updateKeyBody,
} from '../../src/internal.js'

const httpUrl = z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' })

/** `POST /billing/checkout`. */
export const checkoutBody = z
  .object({
    tier: text(z.string().min(1).max(64)).optional(),
    /** Prepaid credits to buy (a top-up) instead of a tier. */
    credits: z.number().int().positive().max(1e12).optional(),
    successUrl: httpUrl,
    cancelUrl: httpUrl,
  })
  .strict()
  .refine((b) => (b.tier === undefined) !== (b.credits === undefined), {
    message: 'give either tier (a subscription) or credits (a top-up)',
    path: ['tier'],
  })

/** `POST /billing/portal` (the body is optional). */
export const portalBody = z.object({ returnUrl: httpUrl.optional() }).strict()

/** `?limit=`: the core's page size, from its digits (anything else is missed as it is). */
const pageLimit = z
  .string()
  .transform((v) => (/^\d{1,3}$/.test(v) ? Number(v) : Number.NaN))
  .pipe(pageSize)
const flag = z
  .enum(['true', 'false'], { message: 'must be true or false' })
  .transform((v) => v === 'true')

/** `GET /keys`, `GET /management-keys`. */
export const listQuery = z
  .object({
    limit: pageLimit.optional(),
    cursor: text(z.string().min(1).max(200)).optional(),
    includeRevoked: flag.optional(),
    /** Only the keys tagged with this category (`002`'s dashboard filters). */
    category: categoryText.optional(),
  })
  .strict()

/** `GET /ip-blocks`: the core's rules for the cursor (`tb.ipBlocks.list` parses it again). */
export const ipBlocksQuery = z
  .object({ limit: pageLimit.optional(), cursor: text(z.string().min(1).max(64)).optional() })
  .strict()

/** An address in `/ip-blocks/:ip`, as the guard keys it (the core's `ipAddressSchema`). */
export { ipAddressSchema as ipParam } from '../../src/internal.js'

/** `GET /keys/:id/logs`. */
export const logsQuery = z
  .object({
    limit: pageLimit.optional(),
    cursor: text(z.string().min(1).max(300)).optional(),
    /** Only the requests of this usage category. */
    category: categoryText.optional(),
  })
  .strict()

/** `DELETE /keys/:id`. */
export const deleteQuery = z.object({ permanent: flag.optional() }).strict()

/** Routes that take no query parameters. */
export const noQuery = z.object({}).strict()
