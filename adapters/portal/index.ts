/**
 * @module tollbooth/portal
 *
 * `portal(tb, options)`: the developer portal, an embeddable page where a signed-in account
 * manages its API keys (create with alias, category, quotas and expiry; the secret shown
 * once; deactivate, reactivate, rotate, delete a never-used key; request logs), sees its usage
 * (current period and past months, by category, per day in a chart) and stores its BYOK
 * provider keys. A Hono app mounted at a base path of the user's choice, in Express and
 * Fastify through their `mountFetch`.
 *
 * One code path: every action of the page is a call of the management API, which the portal
 * mounts under `<base>/api` with session credentials only (`managementApi(tb, { auth })`).
 * The portal adds what a browser session needs around it: the session cookie, the CSRF check,
 * the refusal of API keys, the page and its assets, and a per-day usage series for the
 * chart. A key's alias is unique in its account through the management API's
 * `uniqueKeyNames`, which `tb.keys` enforces where keys are created and renamed.
 */

import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { checkTollboothArg, reportClosedOnce, type Tollbooth } from '../../src/internal.js'
import { BODY_LIMIT_BYTES, errorResponse, refusal } from '../management/http.js'
import { managementApi } from '../management/index.js'
import { createSessionVerifier, storeMarks } from '../management/session.js'
import { jarFor, sessionCookie } from './cookies.js'
import { dailyUsageRoute } from './daily-usage.js'
import { refuseApiKeys, requireCsrf, securityHeaders } from './guard.js'
import { type PortalOptions, resolvePortalOptions } from './options.js'
import { pageRoutes } from './page.js'
import { checkedAuthenticate, createIdentify, sessionRoutes } from './session-routes.js'

export type { UsageDay } from './daily-usage.js'
export type { PortalAuthenticate, PortalOptions } from './options.js'

/**
 * The developer portal for `tb`, as a Hono app to mount under a base path.
 *
 * @param tb the tollbooth instance whose keys, usage and provider keys the portal manages
 * @param options.session session JWTs your sign-in issues (`{ secret }`, `{ jwksUrl }` or `{ jwks }`)
 * @param options.authenticate or your own session check: `(request) => ({ accountId }) | null`
 * @param [options.signInUrl] where a signed-out visitor is sent to sign in
 * @param [options.signOutUrl] where "Sign out" goes with `authenticate`
 * @param [options.title='Developer portal'] the page's title
 * @param [options.categories=['production','development','staging']] categories offered
 * @param [options.secureCookies='auto'] `Secure` cookies everywhere but on localhost over plain HTTP
 * @param [options.frameAncestors=["'self'"]] who may frame the portal (CSP `frame-ancestors`)
 * @throws {ConfigError} naming a bad option, at construction
 * @example
 * ```ts
 * const app = new Hono()
 * app.route('/portal', portal(tb, { session: { secret: process.env.SESSION_SECRET } }))
 * app.use('/v1/*', requireApiKey(tb, { cost: 1 }))
 * ```
 */
export function portal(tb: Tollbooth, options: PortalOptions): Hono {
  checkTollboothArg('portal', tb)
  const o = resolvePortalOptions(tb, options)
  const now = () => (tb.options.clock ? tb.options.clock.now() : Date.now())
  const verifier = o.session
    ? createSessionVerifier(
        o.session,
        now,
        { factory: 'portal', path: 'options.session' },
        storeMarks(tb),
      )
    : null
  const api = managementApi(tb, {
    auth: {
      managementKeys: false,
      consumptionKeys: false,
      ...(o.session ? { session: o.session } : {}),
      // Checked as the portal's option, so a bad answer is named for it, not the inner API.
      ...(o.authenticate ? { authenticate: checkedAuthenticate(o.authenticate) } : {}),
    },
    trustProxy: o.trustProxy,
    // Aliases are unique per account (`002_2f2523503321cfc2.txt`, "Unique label per
    // account"): checked by tb.keys on every create and rename, whatever path reached it.
    uniqueKeyNames: true,
  })
  const identify = createIdentify(o, verifier)
  const report = reportClosedOnce(
    tb.storage,
    tb.options.onError ??
      ((err: unknown) =>
        console.error('[tollbooth] portal:', err instanceof Error ? err.message : err)),
  )

  /** Hands a request to the management API: path below `/api`, the session as a Bearer. */
  async function portalApi(c: Context): Promise<Response> {
    const jar = jarFor(c.req.raw, o.cookieName, o.secureCookies)
    const headers = new Headers(c.req.raw.headers)
    headers.delete('authorization')
    headers.delete('content-length')
    // The portal's own CSRF check passed (requireCsrf): the inner call is the portal's, so
    // the management API's check of browser sessions has nothing to judge (and an `Origin:
    // null` of the page's no-referrer policy would read as another site's).
    headers.delete('origin')
    headers.delete('sec-fetch-site')
    const token = verifier ? sessionCookie(c, jar) : undefined
    if (token && o.authenticate) {
      // Who is signed in is decided once, as GET /api/session decides it: a session cookie
      // that does not verify gives way to authenticate(), here as there.
      const who = await identify(c)
      if (who && 'unavailable' in who) return refusal(who.denial, who.unavailable)
      if (who?.via === 'session') headers.set('authorization', `Bearer ${token}`)
    } else if (token) headers.set('authorization', `Bearer ${token}`)
    const url = new URL(c.req.url)
    url.pathname = `/${c.req.param('rest')!.split('/').map(encodeURIComponent).join('/')}`
    const method = c.req.method
    const body = method === 'GET' || method === 'HEAD' ? null : await c.req.arrayBuffer()
    return api.fetch(new Request(url, { method, headers, body, signal: c.req.raw.signal }), c.env)
  }

  const app = new Hono()
  app.use('*', securityHeaders(o))
  app.use('*', refuseApiKeys(tb))
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: BODY_LIMIT_BYTES,
      onError: () =>
        refusal('body_too_large', `Request body too large: at most ${BODY_LIMIT_BYTES} bytes`),
    }),
  )
  app.use('/api/*', requireCsrf(o))
  sessionRoutes(app, o, verifier, identify, now)
  dailyUsageRoute(app, tb, identify)
  app.all('/api/:rest{.+}', portalApi)
  pageRoutes(app, o.title)
  app.notFound((c) => refusal('not_found', `Not found: ${c.req.method} ${c.req.path}`))
  app.onError((err) => errorResponse(err, report, tb.storage))
  return app
}
