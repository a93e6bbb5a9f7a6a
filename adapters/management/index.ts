/**
 * @module tollbooth/management
 *
 * `managementApi(tb)`: the management REST API as a Hono app, mounted at a base path of the
 * user's choice: keys and management keys (create, list, get, update, revoke, delete if
 * unused, rotate, request logs), usage, stored provider keys, billing, and the failed-auth
 * guard's IP blocks (operators only). The same app runs
 * in Express and Fastify through their `mountFetch` helpers, so there is one code path.
 *
 * Routes are registered one by one, with no `*` middleware, so mounting the app at `/v1`
 * beside the product's own `/v1/*` routes leaves those untouched. Every body and query is
 * validated (400 `invalid_request` with `issues`), every answer is JSON with ISO times, and
 * errors are `{ error, code }`.
 */

import { type Context, Hono } from 'hono'
import { z } from 'zod'
import {
  checkTollboothArg,
  fnOption,
  objectOption,
  parseOptions,
  reportClosedOnce,
  setBypassHeaders,
  setUsageHeaders,
  type Tollbooth,
  type TrustProxy,
  trustProxySchema,
} from '../../src/internal.js'
import { accountRoutes } from './account-routes.js'
import { createAuthenticator, type Guard, type ManagementAuthOptions, nodeSocket } from './auth.js'
import { type BillingProvider, billingRoutes } from './billing.js'
import { errorResponse, refusal } from './http.js'
import { ipBlockRoutes } from './ip-block-routes.js'
import { keyRoutes } from './key-routes.js'

export type { KeyAccess, ManagementAuthOptions, Principal } from './auth.js'
export type { BillingProvider, CheckoutInput, PortalInput } from './billing.js'
export { IP_BLOCKS_SCOPE } from './ip-block-routes.js'
export type { SessionOptions } from './session.js'
export { SAVE_KEY_MESSAGE } from './views.js'

/** Options of {@link managementApi}. */
export interface ManagementOptions {
  /** Who may call it. Default: management keys, and session JWTs when `auth.session` is set. */
  auth?: ManagementAuthOptions
  /** Checkout and portal sessions; without it those routes answer 501. */
  billing?: BillingProvider
  /** The proxies in front, for the failed-auth guard: as the route option (see `TrustProxy`). */
  trustProxy?: TrustProxy
  /** The client's socket address; by default read from the Node bindings (`c.env.incoming`). */
  socketAddress?: (c: Context) => string | null | undefined
  /**
   * Key names are aliases, unique per account (a 409 naming `name` on a create or rename
   * that repeats one, compared without case). Checked by `tb.keys` itself, so no path
   * spelling can go around it. Default false; the portal sets it.
   */
  uniqueKeyNames?: boolean
}

const keyAccess = z.union([
  z.boolean(),
  z.object({ scopes: z.array(z.string().min(1).max(128)).max(20).optional() }).strict(),
])
const optionsSchema = z
  .object({
    auth: z
      .object({
        managementKeys: keyAccess.optional(),
        consumptionKeys: keyAccess.optional(),
        session: objectOption<object>(
          (v) => typeof v === 'object' && v !== null,
          'must be an object',
        ).optional(),
        authenticate: fnOption<never>().optional(),
      })
      .strict()
      .refine(
        (a) =>
          a.managementKeys !== false ||
          (a.consumptionKeys ?? false) !== false ||
          a.session !== undefined ||
          a.authenticate !== undefined,
        { message: 'accepts no credential: allow a key kind, or give session or authenticate' },
      )
      .optional(),
    billing: objectOption<BillingProvider>(
      (v) =>
        typeof v === 'object' &&
        v !== null &&
        typeof (v as BillingProvider).checkout === 'function' &&
        typeof (v as BillingProvider).portal === 'function' &&
        typeof (v as BillingProvider).webhook === 'function',
      'must be a BillingProvider with checkout, portal and webhook, e.g. stripeBilling(tb, …)',
    ).optional(),
    trustProxy: trustProxySchema.optional(),
    socketAddress: fnOption<never>().optional(),
    uniqueKeyNames: z.boolean().optional(),
  })
  .strict()

/**
 * The management API for `tb`, as a Hono app to mount under a base path.
 *
 * @param tb the tollbooth instance whose keys, usage, accounts and provider keys it manages
 * @param [options.auth] who may call it (management keys, consumption keys, sessions, your own check)
 * @param [options.billing] checkout and portal provider (else 501 on those routes)
 * @param [options.uniqueKeyNames=false] key names unique per account, without case (409)
 * @throws {ConfigError} naming a bad option, at construction
 * @example
 * ```ts
 * const app = new Hono()
 * app.route('/v1', managementApi(tb, { auth: { session: { secret: process.env.SESSION_SECRET } } }))
 * app.use('/v1/*', requireApiKey(tb, { cost: 1 }))   // the product's routes, after it
 * ```
 */
/** Marks a management route, so tollbooth/hono's requireApiKey can tell it is placed in front of one. */
function markManagementRoute<T extends object>(handler: T): T {
  Object.defineProperty(handler, Symbol.for('tollbooth.managementRoute'), { value: true })
  return handler
}

export function managementApi(tb: Tollbooth, options: ManagementOptions = {}): Hono {
  checkTollboothArg('managementApi', tb)
  parseOptions('managementApi', optionsSchema, options)
  const report = reportClosedOnce(
    tb.storage,
    tb.options.onError ??
      ((err: unknown) =>
        console.error('[tollbooth] management API:', err instanceof Error ? err.message : err)),
  )
  const authenticate = createAuthenticator(tb, options.auth ?? {}, {
    trustProxy: options.trustProxy ?? false,
    socketAddress: options.socketAddress ?? nodeSocket,
  })

  const guard: Guard = (handler) =>
    markManagementRoute(async function managementRoute(c) {
      let auth: Awaited<ReturnType<typeof authenticate>>
      try {
        auth = await authenticate(c)
      } catch (err) {
        return errorResponse(err, report, tb.storage)
      }
      if (!auth.ok) return auth.response
      let res: Response
      try {
        res = await handler(c, auth.principal)
      } catch (err) {
        res = errorResponse(err, report, tb.storage)
      }
      for (const name in auth.headers) res.headers.set(name, auth.headers[name]!)
      // After a 503 the store is not asked again: the answer would wait a second timeout.
      if (usageHeaders && res.status !== 503)
        await addUsageHeaders(res.headers, auth.principal.accountId)
      auth.done(res.status)
      return res
    })

  const usageHeaders = tb.options.headers.usage
  /**
   * The usage family on every authenticated answer (`001`: "every authenticated response
   * includes usage information"): the account's credits of the current period after the call.
   * Management calls are not charged, so `X-Usage-Bypassed` is false. A store that does not
   * answer within `storageTimeoutMs` leaves them out rather than holding the answer back.
   */
  const addUsageHeaders = async (headers: Headers, accountId: string): Promise<void> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      const account = await Promise.race([
        tb.accounts.get(accountId),
        new Promise<null>((r) => {
          timer = setTimeout(() => r(null), tb.options.storageTimeoutMs)
        }),
      ])
      if (!account) return
      const out: Record<string, string> = {}
      setUsageHeaders(out, account.credits.used, account.credits.limit)
      setBypassHeaders(out, false, null)
      for (const name in out) headers.set(name, out[name]!)
    } catch {
      // The answer stands without the figures.
    } finally {
      clearTimeout(timer)
    }
  }

  const app = new Hono()
  keyRoutes(app, tb, guard, { uniqueName: options.uniqueKeyNames === true })
  accountRoutes(app, tb, guard)
  billingRoutes(app, tb, guard, options.billing, report)
  ipBlockRoutes(app, tb, guard)
  // Used only when the app is served on its own (or through mountFetch), never by app.route().
  app.notFound((c) => refusal('not_found', `Not found: ${c.req.method} ${c.req.path}`))
  app.onError((err) => errorResponse(err, report, tb.storage))
  return app
}
