/**
 * @module tollbooth/portal/options
 *
 * The options of `portal(tb, options)`, validated once with zod: how a visitor signs in (a
 * session JWT that the portal keeps in a cookie, or the integrator's own `authenticate`), what
 * the page offers (title, key categories, providers), and how its cookies and frame policy
 * are set. A bad option throws a `ConfigError` naming it.
 */

import { z } from 'zod'
import {
  DEFAULT_PROVIDERS,
  fnOption,
  objectOption,
  parseOptions,
  type Tollbooth,
  type TrustProxy,
  trustProxySchema,
} from '../../src/internal.js'
import type { SessionOptions } from '../management/index.js'

/** Who is signed in: the account, or null to show the sign-in page. */
export type PortalAuthenticate = (
  request: Request,
) => Promise<{ accountId: string } | null> | { accountId: string } | null

/** Options of `portal()`. Give `session`, `authenticate`, or both. */
export interface PortalOptions {
  /**
   * Session JWTs (verified with jose, as the management API does): your sign-in issues one,
   * the portal's sign-in (`POST <base>/api/session`) checks it and keeps it in an HttpOnly
   * cookie. `session.cookie` is not taken: the portal names its own cookie. A session lasts
   * at most `session.maxAgeMs` from its `iat` (7 days by default; a token needs `iat`), and
   * signing out ends it for every instance sharing the store.
   */
  session?: Omit<SessionOptions, 'cookie'>
  /** Your own check of your own session (e.g. your auth library's cookie on the request). */
  authenticate?: PortalAuthenticate
  /** Where "Sign in" sends a signed-out visitor (your application's sign-in page). */
  signInUrl?: string
  /** Where "Sign out" sends a visitor signed in through `authenticate`. */
  signOutUrl?: string
  /** Shown as the page title and heading. Default `Developer portal`. */
  title?: string
  /** Key categories offered first; any other free-text label may be typed. */
  categories?: string[]
  /** Providers offered for stored provider keys. Default: the instance's BYOK providers. */
  providers?: string[]
  /** Base name of the portal's cookies (`<name>` and `<name>-csrf`). Default `tollbooth-portal`. */
  cookieName?: string
  /**
   * `Secure` cookies: `'auto'` (the default) sets them everywhere but on localhost over plain
   * HTTP (a proxy's `X-Forwarded-Proto: https` or `Forwarded: proto=https` counts as HTTPS).
   */
  secureCookies?: boolean | 'auto'
  /** CSP `frame-ancestors`: who may show the portal in a frame. Default `["'self'"]`. */
  frameAncestors?: string[]
  /** The proxies in front, for the failed-auth guard: as the route option (see `TrustProxy`). */
  trustProxy?: TrustProxy
}

/** The options after validation and defaults. */
export interface ResolvedPortalOptions {
  session: Omit<SessionOptions, 'cookie'> | null
  authenticate: PortalAuthenticate | null
  signInUrl: string | null
  signOutUrl: string | null
  title: string
  categories: string[]
  providers: string[]
  cookieName: string
  secureCookies: boolean | 'auto'
  frameAncestors: string[]
  trustProxy: TrustProxy
}

const COOKIE_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/
const CSP_SOURCE = /^(?:'self'|'none'|https?:\/\/[A-Za-z0-9.*:[\]-]+|[A-Za-z0-9.*-]+(?::\d+)?)$/
/**
 * A path of this site, or an http(s) URL. Judged as a browser reads it (the WHATWG URL
 * parser): `//host`, `/\host` or `/<tab>/host` start with a slash but lead to another site.
 */
const isPathOrHttpUrl = (u: string): boolean => {
  const base = 'http://portal.invalid/'
  try {
    if (u.startsWith('/')) return new URL(u, base).host === 'portal.invalid'
    return /^https?:\/\//i.test(u) && URL.canParse(u)
  } catch {
    return false
  }
}
const url = z.string().refine(isPathOrHttpUrl, 'must be a path or an http(s) URL')
const label = z.string().trim().min(1).max(64)

const schema = z
  .object({
    session: objectOption<object>((v) => typeof v === 'object' && v !== null, 'must be an object')
      .refine((v) => !('cookie' in v), {
        message: 'must not set cookie: the portal names its own (use the cookieName option)',
      })
      .optional(),
    authenticate: fnOption<PortalAuthenticate>().optional(),
    signInUrl: url.optional(),
    signOutUrl: url.optional(),
    title: z.string().trim().min(1).max(80).default('Developer portal'),
    categories: z.array(label).max(20).default(['production', 'development', 'staging']),
    providers: z.array(label).max(50).optional(),
    cookieName: z.string().regex(COOKIE_NAME, 'must be a cookie name').default('tollbooth-portal'),
    secureCookies: z.union([z.boolean(), z.literal('auto')]).default('auto'),
    frameAncestors: z
      .array(z.string().regex(CSP_SOURCE, "must be a CSP source such as 'self' or https://host"))
      .min(1)
      .default(["'self'"]),
    trustProxy: trustProxySchema.default(false),
  })
  .strict()
  .refine((o) => o.session !== undefined || o.authenticate !== undefined, {
    message: 'must give session (session JWTs) or authenticate (your own session check), or both',
  })

/**
 * Validates `options` once.
 *
 * @throws {ConfigError} naming every bad or unknown option
 */
export function resolvePortalOptions(tb: Tollbooth, options: PortalOptions): ResolvedPortalOptions {
  const o = parseOptions('portal', schema, options ?? {})
  return {
    session: (o.session as Omit<SessionOptions, 'cookie'> | undefined) ?? null,
    authenticate: o.authenticate ?? null,
    signInUrl: o.signInUrl ?? null,
    signOutUrl: o.signOutUrl ?? null,
    title: o.title,
    categories: o.categories,
    providers: o.providers ?? Object.keys(tb.options.providers ?? DEFAULT_PROVIDERS),
    cookieName: o.cookieName,
    secureCookies: o.secureCookies,
    frameAncestors: o.frameAncestors,
    trustProxy: o.trustProxy,
  }
}
