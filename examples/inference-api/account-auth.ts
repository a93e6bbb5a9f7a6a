/**
 * @module examples/inference-api/account-auth
 *
 * Who may call `/api/*` (`004_8209d5d9c76b9400.txt`: "All key management endpoints accept
 * either an auth token or a management key"): a session JWT from the dashboard's sign-in, or
 * an `mk_` management key. Management keys go through `tb.authenticate` on a management route,
 * so revocation, expiry, their own limits and the failed-auth IP guard apply, and each call is
 * logged for the key and settled when the response ends. A consumption key (`sk_`) is refused
 * with 403: "Management keys cannot be used for inference", and the reverse.
 *
 * Errors are `{ success: false, error, code }`, the seed's envelope.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Admission, Tollbooth } from '../../src/index.js'
import { bearerToken, looksLikeJwt, verifySession } from '../shared/session.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller of an `/api/*` route: their account and how they signed in. */
    account: { id: string; via: 'session' | 'management_key' }
  }
}

const ADMISSION = Symbol('account-auth.admission')
type WithAdmission = { [ADMISSION]?: Admission }

/** The seed's failure envelope. */
export function failure(reply: FastifyReply, status: number, error: string, code: string) {
  return reply.code(status).type('application/json').send({ success: false, error, code })
}

/**
 * Adds the hooks to `api` (an encapsulated context, e.g. the plugin registered at `/api`):
 * every route in it requires a session token or a management key.
 *
 * @param tb the tollbooth instance
 * @param sessionSecret verifies session tokens (HS256)
 */
export function accountAuth(api: FastifyInstance, tb: Tollbooth, sessionSecret: string): void {
  const route = tb.route({ kind: 'management', keySources: ['bearer'] })
  const now = () => tb.options.clock?.now() ?? Date.now()
  api.decorateRequest('account', null as unknown as FastifyRequest['account'])

  api.addHook('preHandler', async function requireAccount(request, reply) {
    const token = bearerToken(request.headers.authorization)
    if (!token) {
      reply.header('WWW-Authenticate', 'Bearer')
      return failure(
        reply,
        401,
        'Missing credentials: send a session token or a management key',
        'unauthorized',
      )
    }
    if (looksLikeJwt(token)) {
      const session = await verifySession(sessionSecret, token, now())
      if (!session.ok) {
        reply.header('WWW-Authenticate', 'Bearer error="invalid_token"')
        return failure(reply, 401, session.message, 'unauthorized')
      }
      request.account = { id: session.accountId, via: 'session' }
      return undefined
    }
    const q = request.url.indexOf('?')
    const decision = await tb.authenticate(
      {
        headers: request.headers,
        ip: request.ip,
        method: request.method,
        path: q === -1 ? request.url : request.url.slice(0, q),
      },
      route,
    )
    if (!decision.allowed) {
      reply.headers(decision.headers)
      const message =
        decision.code === 'wrong_key_kind'
          ? 'Consumption keys cannot be used for account management; use a management key (mk_) or a session token'
          : decision.message
      return failure(reply, decision.status, message, decision.code)
    }
    ;(request as WithAdmission)[ADMISSION] = decision
    reply.headers(decision.responseHeaders())
    request.account = { id: decision.accountId, via: 'management_key' }
    return undefined
  })

  // Settle the management key's request once it is answered (logged, lease released).
  api.addHook('onResponse', async (request, reply) => {
    const decision = (request as WithAdmission)[ADMISSION]
    if (decision) await tb.settle(decision, { status: reply.statusCode, category: 'management' })
  })
}
