/**
 * @module test/examples/inference-fixture
 *
 * The inference example served for a test: on a manual clock at {@link T0} (a Tuesday, 14:30
 * UTC, inside the `pool-day` block), with a session token for `user_1`, a JSON client, and
 * helpers to top up, mint keys through the API and call the OpenAI-compatible route.
 */

import { createInferenceApi } from '../../examples/inference-api/app.js'
import { signSession } from '../../examples/shared/session.js'
import {
  type ManualClock,
  manualClock,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/internal.js'
import { type Client, clientOf, type Res, type Served, serveFastify, trackSettles } from './http.js'

export const SECRET = 'inference-example-secret-inference-example'
export const SESSION_SECRET = 'inference-example-session-secret-012345'
export const T0 = Date.UTC(2026, 0, 20, 14, 30)
export const USER = 'user_1'

export interface InferenceFixture {
  tb: Tollbooth
  clock: ManualClock
  api: Client
  served: Served
  /** A session token of {@link USER}. */
  session: string
  settles: { idle(): Promise<void> }
  /** `POST /api/billing/topup` as the user. */
  topUp(usd: number): Promise<Res>
  /** `POST /api/keys/credit` as the user; the plaintext key. */
  creditKey(body?: Record<string, unknown>): Promise<string>
  /** `POST /v1/chat/completions` with `key` and one user message. */
  chat(key: string, content?: string, extra?: Record<string, unknown>): Promise<Res>
  close(): Promise<void>
}

export async function startInference(
  options: { failedAuth?: TollboothOptions['failedAuth'] } = {},
): Promise<InferenceFixture> {
  const clock = manualClock(T0)
  const { app, tb } = await createInferenceApi({
    secret: SECRET,
    sessionSecret: SESSION_SECRET,
    clock,
    ...options,
  })
  const settles = trackSettles(tb)
  const served = await serveFastify(app)
  const api = clientOf(served)
  const session = await signSession(SESSION_SECRET, USER, { now: T0, ttlSeconds: 30 * 86_400 })
  let n = 0
  return {
    tb,
    clock,
    api,
    served,
    session,
    settles,
    topUp: (usd) => api('POST', '/api/billing/topup', { token: session, json: { amount: usd } }),
    async creditKey(body = {}) {
      const r = await api('POST', '/api/keys/credit', {
        token: session,
        json: { name: `client_${++n}`, ...body },
      })
      if (r.status !== 201) throw new Error(`credit key: ${r.status} ${r.text}`)
      return r.body.data.apiKey as string
    },
    chat: (key, content = 'Hello', extra = {}) =>
      api('POST', '/v1/chat/completions', {
        token: key,
        json: { model: 'echo-1', messages: [{ role: 'user', content }], ...extra },
      }),
    close: () => served.close(),
  }
}

/** A message of `n` words: prompt n + 3 tokens, answer n + 2 ("Echo", ":", the words). */
export const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ')
