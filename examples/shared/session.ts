/**
 * @module examples/shared/session
 *
 * The session tokens of the examples' account routes: HS256 JWTs whose `sub` is the account
 * id, signed and verified with jose. In a real product they come from your sign-in (Better
 * Auth, Auth.js, Clerk, …); the examples print one at start so the routes can be tried.
 */

import { jwtVerify, SignJWT } from 'jose'

const encode = (secret: string) => new TextEncoder().encode(secret)

/**
 * Signs a session token for `accountId`.
 *
 * @param secret the session secret (at least 32 characters)
 * @param [options.ttlSeconds=86400] lifetime in seconds
 * @param [options.now=Date.now()] the time of issue in ms (the tests' manual clock)
 */
export async function signSession(
  secret: string,
  accountId: string,
  options: { ttlSeconds?: number; now?: number } = {},
): Promise<string> {
  const iat = Math.floor((options.now ?? Date.now()) / 1000)
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(accountId)
    .setIssuedAt(iat)
    .setExpirationTime(iat + (options.ttlSeconds ?? 86_400))
    .sign(encode(secret))
}

/** The outcome of {@link verifySession}: the account, or why the token was refused. */
export type SessionCheck = { ok: true; accountId: string } | { ok: false; message: string }

/**
 * Verifies a session token at `now` (ms): signature (HS256 only), expiry, and a `sub` claim.
 */
export async function verifySession(
  secret: string,
  token: string,
  now: number,
): Promise<SessionCheck> {
  try {
    const { payload } = await jwtVerify(token, encode(secret), {
      algorithms: ['HS256'],
      currentDate: new Date(now),
    })
    if (typeof payload.sub !== 'string' || payload.sub === '')
      return { ok: false, message: 'Invalid session token: no subject' }
    return { ok: true, accountId: payload.sub }
  } catch (err) {
    const expired = (err as { code?: string }).code === 'ERR_JWT_EXPIRED'
    return { ok: false, message: expired ? 'Session token expired' : 'Invalid session token' }
  }
}

/** True when `token` has the shape of a compact JWT (three base64url parts). */
export const looksLikeJwt = (token: string): boolean =>
  token.length < 8192 && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header || !/^bearer /i.test(header)) return undefined
  return header.slice(7).trim() || undefined
}
