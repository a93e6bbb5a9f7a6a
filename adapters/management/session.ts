/**
 * @module tollbooth/management/session
 *
 * Session tokens for the management API: JWTs verified with jose `jwtVerify`, against a
 * shared secret (HS256/384/512) or a JWKS (a URL fetched and cached by `createRemoteJWKSet`,
 * or the user's own key resolver). The account is a claim (`sub` by default). Issuer,
 * audience and algorithms are checked when configured; time claims are checked at the
 * tollbooth clock's `now`, so tests move time instead of sleeping.
 *
 * A session has a bounded lifetime whatever the token says: it must carry `iat`, and ends
 * `maxAgeMs` after it (7 days by default) or at its `exp`, whichever comes first (jose's
 * `maxTokenAge`). A session signed out (`revoke`) ends at once: a mark in the counter store
 * (`claim`), named by a hash of the token and kept for what was left of its lifetime, which
 * every verification checks (one store read a session request; API keys never read it).
 */

import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes } from '@noble/hashes/utils.js'
import {
  base64url,
  createRemoteJWKSet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose'
import { z } from 'zod'
import {
  type CounterStore,
  type DenialName,
  fnOption,
  integer,
  isAccountId,
  parseOptions,
  type Tollbooth,
  withTimeout,
} from '../../src/internal.js'

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
  /**
   * Leeway for `exp`, `nbf` and `iat` against clocks that differ between the issuer and this
   * server, in ms (counted in whole seconds, as JWT times are). Default 5000.
   */
  clockToleranceMs?: number
  /**
   * The longest a session lasts, from its `iat`, in ms (whole seconds), whatever its `exp`:
   * a token without `iat` is refused. Default 7 days; at most 400 days.
   */
  maxAgeMs?: number
}

/** The outcome of verifying one token. */
export type SessionResult =
  | {
      ok: true
      accountId: string
      claims: Record<string, unknown>
      /** When the session ends (ms): its `exp`, or `iat` plus `maxAgeMs`, the earlier. */
      endsAt: number
    }
  | { ok: false; status: 401 | 503; message: string; denial: DenialName }

/** Where a verifier keeps its sign-out marks: the counter store's markers. */
export type SessionMarks = Pick<CounterStore, 'claim' | 'claimed'>

/**
 * The sign-out marks of `tb`: its counter store's markers, each call bounded by
 * `storageTimeoutMs` (a store that does not answer is a 503, not a request held open).
 */
export function storeMarks(tb: Tollbooth): SessionMarks {
  const counters = tb.storage.counters
  const ms = tb.options.storageTimeoutMs
  return {
    claim: (key, ttlMs, now) => withTimeout(counters.claim(key, ttlMs, now), ms),
    claimed: (key, now) => withTimeout(counters.claimed(key, now), ms),
  }
}

/** The default of `maxAgeMs`: 7 days. */
export const SESSION_MAX_AGE_MS = 7 * 86_400_000

/** The counter-store marker of a signed-out session: the account's hash tag, the token's hash. */
const endedKey = (accountId: string, token: string) =>
  `{${accountId}}:session-ended:${base64url.encode(sha256(utf8ToBytes(token)))}`

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
    clockToleranceMs: integer(0, 3_600_000).default(5000),
    maxAgeMs: integer(1000, 400 * 86_400_000).default(SESSION_MAX_AGE_MS),
  })
  .strict()
  .superRefine((o, ctx) => {
    const given = [o.secret, o.jwksUrl, o.jwks].filter((x) => x !== undefined).length
    // None: most often `secret: process.env.SESSION_SECRET!` with the variable unset.
    if (given === 0)
      ctx.addIssue({
        code: 'custom',
        path: ['secret'],
        message:
          'is required (at least 32 bytes, e.g. `openssl rand -base64 32`), unless jwksUrl or jwks is given',
      })
    else if (given > 1)
      ctx.addIssue({ code: 'custom', message: 'must have exactly one of secret, jwksUrl or jwks' })
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

/** A verifier of session tokens, and the sign-out that ends one. */
export interface SessionVerifier {
  /** The cookie the token may come in (management API option `session.cookie`). */
  cookie: string | undefined
  /** Verifies `token`: signature, claims, lifetime, and that it was not signed out. */
  verify(token: string): Promise<SessionResult>
  /**
   * Ends the session of `token` on every instance sharing the store, for what is left of its
   * lifetime. A token that does not verify has nothing to end (false). Throws when the store
   * cannot be reached (the session then goes on).
   */
  revoke(token: string): Promise<boolean>
}

const fail = (
  status: 401 | 503,
  message: string,
  denial: DenialName = status === 401 ? 'invalid_credentials' : 'session_keys_unavailable',
): SessionResult => ({ ok: false, status, message, denial })

/**
 * Validates the session options once and returns the verifier.
 *
 * @param [where] the factory and the path of the session options, named in a ConfigError
 * @param [marks] where sign-outs are kept (`storeMarks(tb)`); without it a signed-out token
 *   lives on until it ends
 * @throws {ConfigError} naming the bad option (e.g. a short secret, or no key source)
 */
export function createSessionVerifier(
  options: SessionOptions,
  now: () => number,
  where: { factory: string; path: string } = {
    factory: 'managementApi',
    path: 'options.auth.session',
  },
  marks: SessionMarks | null = null,
): SessionVerifier {
  const o = parseOptions(where.factory, schema, options, where.path)
  const secret = typeof o.secret === 'string' ? new TextEncoder().encode(o.secret) : o.secret
  const jwks = o.jwksUrl ? createRemoteJWKSet(new URL(String(o.jwksUrl))) : o.jwks
  const algorithms = o.algorithms ?? (secret ? ['HS256', 'HS384', 'HS512'] : undefined)
  const claim = o.accountClaim
  const toleranceS = Math.ceil(o.clockToleranceMs / 1000)
  const maxAgeS = Math.floor(o.maxAgeMs / 1000)

  /** The token checked by jose: signature, claims, and a lifetime bounded from `iat`. */
  async function check(token: string): Promise<SessionResult> {
    const checks = {
      ...(o.issuer ? { issuer: o.issuer } : {}),
      ...(o.audience ? { audience: o.audience } : {}),
      ...(algorithms ? { algorithms } : {}),
      clockTolerance: toleranceS,
      maxTokenAge: maxAgeS,
      currentDate: new Date(now()),
    }
    let payload: JWTPayload
    try {
      ;({ payload } = secret
        ? await jwtVerify(token, secret, checks)
        : await jwtVerify(token, jwks!, checks))
    } catch (err) {
      const code = (err as { code?: unknown }).code
      const c = (err as { claim?: string }).claim
      if (code === 'ERR_JWT_EXPIRED')
        return fail(
          401,
          c === 'iat'
            ? `Session token expired: issued more than ${maxAgeS} s ago (maxAgeMs)`
            : 'Session token expired',
        )
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
        if ((err as { reason?: string }).reason === 'missing')
          return fail(401, `Invalid session token: no "${c}" claim`)
        return fail(401, `Invalid session token: "${c}" claim check failed`)
      }
      if (typeof code === 'string' && TOKEN_FAULTS.has(code))
        return fail(401, 'Invalid session token')
      // The key set could not be fetched or read: not the caller's fault.
      return fail(503, 'Session keys unavailable; try again later')
    }
    const account = payload[claim]
    if (typeof account !== 'string' || account === '')
      return fail(401, `Invalid session token: no "${claim}" claim`)
    if (!isAccountId(account))
      return fail(401, 'Invalid session token: the account id is not valid')
    // `iat` is there: jose requires it with `maxTokenAge`.
    const end = Math.min(payload.exp ?? Infinity, payload.iat! + maxAgeS)
    return {
      ok: true,
      accountId: account,
      claims: payload as Record<string, unknown>,
      endsAt: end * 1000,
    }
  }

  async function verify(token: string): Promise<SessionResult> {
    const r = await check(token)
    if (!r.ok || marks === null) return r
    try {
      if (await marks.claimed(endedKey(r.accountId, token), now()))
        return fail(401, 'Session ended: signed out')
    } catch {
      return fail(503, 'Storage unavailable; try again later', 'storage_unavailable')
    }
    return r
  }

  async function revoke(token: string): Promise<boolean> {
    const r = await check(token)
    if (!r.ok || marks === null) return false
    // Kept past the last moment the token verifies (its end plus the clock tolerance).
    const ttlMs = r.endsAt + toleranceS * 1000 + 1000 - now()
    await marks.claim(endedKey(r.accountId, token), ttlMs, now())
    return true
  }

  return { cookie: o.cookie, verify, revoke }
}
