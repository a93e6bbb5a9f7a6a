/**
 * @module test/management/fixture
 *
 * The per-test setup of the endpoint suites: a fresh tollbooth and the management API under
 * `/v1` in one framework, a management key for `acct_a` and one for `acct_b`, and helpers to
 * create a key and call the product route.
 */

import { afterEach, beforeEach, expect } from 'vitest'
import type { ManualClock, Tollbooth } from '../../src/index.js'
import { client, type Framework, makeTollbooth, type Served, serveManagement } from './servers.js'

export interface Fixture {
  tb: Tollbooth
  clock: ManualClock
  api: ReturnType<typeof client>
  /** A management key of `acct_a`. */
  mk: string
  /** A management key of `acct_b`. */
  otherMk: string
  /** `POST /v1/synthesize` with a consumption key. */
  synthesize(key: string, headers?: Record<string, string>): ReturnType<ReturnType<typeof client>>
  /** `POST /v1/keys` (201 expected). */
  create(body?: unknown, token?: string): Promise<{ id: string; key: string }>
}

/** Registers beforeEach/afterEach hooks and returns the fixture they fill in. */
export function useManagement(framework: Framework): Fixture {
  let served: Served
  const f = {} as Fixture
  beforeEach(async () => {
    const { tb, clock } = makeTollbooth()
    served = await serveManagement(framework, tb)
    const api = client(served)
    Object.assign(f, {
      tb,
      clock,
      api,
      mk: (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key,
      otherMk: (await tb.keys.create({ accountId: 'acct_b', kind: 'management' })).key,
      synthesize: (key: string, headers: Record<string, string> = {}) =>
        api('POST', '/synthesize', { token: key, json: { text: 'hi' }, headers }),
      async create(body: unknown = {}, token = f.mk) {
        const r = await api('POST', '/keys', { token, json: body })
        expect(r.status).toBe(201)
        return r.body as { id: string; key: string }
      },
    })
  })
  afterEach(() => served.close())
  return f
}
