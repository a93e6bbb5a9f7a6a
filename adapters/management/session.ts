/**
 * @module tollbooth/management/session
 *
 * Session tokens for the management API: JWTs verified with jose `jwtVerify`, against a
 * shared secret (HS256/384/512) or a JWKS (a URL fetched and cached by `createRemoteJWKSet`,
 * or the user's own key resolver). The account is a claim (`sub` by default). Issuer,
 * audience and algorithms are checked when configured; time claims are checked at the
 * tollbooth clock's `now`, so tests move time instead of sleeping.
 */

import { createRemoteJWKSet, type JWTVerifyGetKey, jwtVerify } from 'jose'
import { z } from 'zod'
import { fnOption, integer, parseOptions } from '../../src/internal.js'

/** How session tokens are verified. Give exactly one of `secret`, `jwksUrl` or `jwks`. */
export interface SessionOptions {
  /** Shared HMAC secret, at least 32 bytes (HS256, HS384 or HS512). */
  secret?: string | Uint8Array
  /** URL of the issuer's JSON Web Key Set (fetched on demand, cached by jose). */
  jwksUrl?: string | URL
  /** A key resolver, e.g. `createLocalJWKSet(jwks)`. */
  jwks?: JWTVerifyGetKey
  /** Required `iss` value(s). */
  issuer?: string | string[]
  /** Required `aud` value(s). */
  audience?: string | string[]
  /** Accepted `alg` values; default: those of the key (HS* for a secret). */
  algorithms?: string[]
  /** The claim holding the account id. Default `sub`. */
  accountClaim?: string
  /** Also read the token from this cookie when no `Authorization` header is sent. */
  cookie?: string
  /** Leeway for `exp` and `nbf`, in ms. Default 0. */
  clockToleranceMs?: number
}

/** The outcome of verifying one token. */
export type SessionResult =
  | { ok: true; accountId: string; claims: Record<string, unknown> }
  | { ok: false; status: 401 | 503; message: string }

const strings = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)])

const schema = z
  .object({
    secret: z
      .union([z.string(), z.instanceof(Uint8Array)])
      .refine((s) => (typeof s === 'string' ? new TextEncoder().encode(s) : s).byteLength >= 32, {
        message: 'must be at least 32 bytes',
      })
      .optional(),
    jwksUrl: z.union([z.url({ protocol: /^https?$/ }), z.instanceof(URL)]).optional(),
    jwks: fnOption<JWTVerifyGetKey>().optional(),
    issuer: strings.optional(),
    audience: strings.optional(),
    algorithms: z.array(z.string().min(1)).min(1).optional(),
    accountClaim: z.string().min(1).default('sub'),
    cookie: z
      .string()
      .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a cookie name')
      .optional(),
    clockToleranceMs: integer(0).default(0),
  })
  .strict()
  .refine((o) => [o.secret, o.jwksUrl, o.jwks].filter((x) => x !== undefined).length === 1, {
    message: 'must have exactly one of secret, jwksUrl or jwks',
  })

/** JOSE error codes that mean the token itself is bad (401), as opposed to the key source. */
const TOKEN_FAULTS = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
])

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** True when `token` has the shape of a compact JWS (three base64url parts). */
export const looksLikeJwt = (token: string): boolean =>
  token.length < 16_384 && JWT_SHAPE.test(token)

/**
 * Validates the session options once and returns the verifier.
 *
 * @param [where] the factory and the path of the session options, named in a ConfigError
 * @throws {ConfigError} naming the bad option (e.g. a short secret, or no key source)
 */
export function createSessionVerifier(
  options: SessionOptions,
  now: () => number,
  where: { factory: string; path: string } = {
    factory: 'managementApi',
    path: 'options.auth.session',
  },
): { cookie: string | undefined; verify(token: string): Promise<SessionResult> } {
  const o = parseOptions(where.factory, schema, options, where.path)
  const secret = typeof o.secret === 'string' ? new TextEncoder().encode(o.secret) : o.secret
  const jwks = o.jwksUrl ? createRemoteJWKSet(new URL(String(o.jwksUrl))) : o.jwks
  const algorithms = o.algorithms ?? (secret ? ['HS256', 'HS384', 'HS512'] : undefined)
  const claim = o.accountClaim

  async function verify(token: string): Promise<SessionResult> {
    const checks = {
      ...(o.issuer ? { issuer: o.issuer } : {}),
      ...(o.audience ? { audience: o.audience } : {}),
      ...(algorithms ? { algorithms } : {}),
      clockTolerance: Math.ceil(o.clockToleranceMs / 1000),
      currentDate: new Date(now()),
    }
    try {
      const { payload } = secret
        ? await jwtVerify(token, secret, checks)
        : await jwtVerify(token, jwks!, checks)
      const account = payload[claim]
      if (typeof account !== 'string' || account === '')
        return { ok: false, status: 401, message: `Invalid session token: no "${claim}" claim` }
      return { ok: true, accountId: account, claims: payload as Record<string, unknown> }
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (code === 'ERR_JWT_EXPIRED')
        return { ok: false, status: 401, message: 'Session token expired' }
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
        const c = (err as { claim?: string }).claim
        return {
          ok: false,
          status: 401,
          message: `Invalid session token: "${c}" claim check failed`,
        }
      }
      if (typeof code === 'string' && TOKEN_FAULTS.has(code))
        return { ok: false, status: 401, message: 'Invalid session token' }
      // The key set could not be fetched or read: not the caller's fault.
      return { ok: false, status: 503, message: 'Session keys unavailable; try again later' }
    }
  }

  return { cookie: o.cookie, verify }
}
