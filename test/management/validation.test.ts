/**
 * Every kind of bad input to the management API, in each framework: a 400
 * `{ error, code: "invalid_request", issues: [{ path, message }] }` naming the field (413 for
 * a body too large), and nothing changed behind it.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Tollbooth } from '../../src/index.js'
import { client, FRAMEWORKS, makeTollbooth, type Served, serveManagement } from './servers.js'

interface Case {
  method: string
  path: string
  json?: unknown
  raw?: string
  issues: Array<{ path: string; message: string | RegExp }>
  status?: number
}

const long = 'x'.repeat(101)

const CASES: Case[] = [
  // POST /keys
  {
    method: 'POST',
    path: '/keys',
    json: { name: '' },
    issues: [{ path: 'name', message: 'must be 1-100 characters' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { name: long },
    issues: [{ path: 'name', message: 'must be 1-100 characters' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { expiresInDays: 0 },
    issues: [{ path: 'expiresInDays', message: 'must be 1-365' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { expiresInDays: 366 },
    issues: [{ path: 'expiresInDays', message: 'must be 1-365' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { expiresInDays: 1.5 },
    issues: [{ path: 'expiresInDays', message: 'must be a whole number of days' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { expiresInDays: '90' },
    issues: [{ path: 'expiresInDays', message: /expected number/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { name: 'a', accountId: 'acct_b', kind: 'management' },
    issues: [{ path: '(body)', message: 'unknown field(s) "accountId", "kind"' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { expiresAt: 'tomorrow' },
    issues: [{ path: 'expiresAt', message: 'must be an ISO 8601 date-time' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { expiresInDays: 5, expiresAt: '2026-05-01T00:00:00Z' },
    issues: [{ path: 'expiresAt', message: 'give expiresInDays or expiresAt, not both' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { limits: { quotas: { daily: -1 } } },
    issues: [{ path: 'limits.quotas.daily', message: /expected number to be >0/i }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { limits: { bogus: 1 } },
    issues: [{ path: 'limits', message: /"bogus"/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { scopes: 'all' },
    issues: [{ path: 'scopes', message: /expected array/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    raw: '{"name": "x"',
    issues: [{ path: '(body)', message: /must be valid JSON/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    raw: 'name=x',
    issues: [{ path: '(body)', message: /must be valid JSON/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: [1],
    issues: [{ path: '(body)', message: /expected object/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: 'Production Key',
    issues: [{ path: '(body)', message: /expected object/ }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: null,
    issues: [{ path: '(body)', message: /expected object/ }],
  },
  {
    method: 'POST',
    path: '/keys?name=x',
    json: {},
    issues: [{ path: '(query)', message: 'unknown field(s) "name"' }],
  },
  {
    method: 'POST',
    path: '/keys',
    json: { name: 'x'.repeat(70_000) },
    status: 413,
    issues: [],
  },
  // GET /keys
  {
    method: 'GET',
    path: '/keys?limit=0',
    issues: [{ path: 'limit', message: 'must be an integer from 1 to 100' }],
  },
  {
    method: 'GET',
    path: '/keys?limit=101',
    issues: [{ path: 'limit', message: 'must be an integer from 1 to 100' }],
  },
  {
    method: 'GET',
    path: '/keys?limit=ten',
    issues: [{ path: 'limit', message: 'must be an integer from 1 to 100' }],
  },
  {
    method: 'GET',
    path: '/keys?cursor=',
    issues: [{ path: 'cursor', message: /expected string to have >=1/i }],
  },
  {
    method: 'GET',
    path: '/keys?includeRevoked=yes',
    issues: [{ path: 'includeRevoked', message: 'must be true or false' }],
  },
  {
    method: 'GET',
    path: '/keys?page=2',
    issues: [{ path: '(query)', message: 'unknown field(s) "page"' }],
  },
  {
    method: 'GET',
    path: '/keys/ID?verbose=1',
    issues: [{ path: '(query)', message: 'unknown field(s) "verbose"' }],
  },
  // PATCH, DELETE, rotate, logs
  {
    method: 'PATCH',
    path: '/keys/ID',
    json: {},
    issues: [{ path: '(body)', message: 'give at least one field to change' }],
  },
  {
    method: 'PATCH',
    path: '/keys/ID',
    issues: [{ path: '(body)', message: 'give at least one field to change' }],
  },
  {
    method: 'PATCH',
    path: '/keys/ID',
    json: { active: 'no' },
    issues: [{ path: 'active', message: /expected boolean/ }],
  },
  {
    method: 'PATCH',
    path: '/keys/ID',
    json: { name: 'n', accountId: 'acct_b' },
    issues: [{ path: '(body)', message: 'unknown field(s) "accountId"' }],
  },
  {
    method: 'DELETE',
    path: '/keys/ID?permanent=yes',
    issues: [{ path: 'permanent', message: 'must be true or false' }],
  },
  {
    method: 'POST',
    path: '/keys/ID/rotate',
    json: { gracePeriodMs: -1 },
    issues: [{ path: 'gracePeriodMs', message: 'must be 0 to 30 days in ms' }],
  },
  {
    method: 'POST',
    path: '/keys/ID/rotate',
    json: { grace: 1 },
    issues: [{ path: '(body)', message: 'unknown field(s) "grace"' }],
  },
  {
    method: 'GET',
    path: '/keys/ID/logs?limit=0',
    issues: [{ path: 'limit', message: 'must be an integer from 1 to 100' }],
  },
  // management keys
  {
    method: 'POST',
    path: '/management-keys',
    json: { category: 'tts' },
    issues: [{ path: '(body)', message: 'unknown field(s) "category"' }],
  },
  // usage
  {
    method: 'GET',
    path: '/usage?month=2026-13',
    issues: [{ path: 'month', message: 'must be YYYY-MM' }],
  },
  {
    method: 'GET',
    path: '/usage?month=202601',
    issues: [{ path: 'month', message: 'must be YYYY-MM' }],
  },
  // provider keys
  {
    method: 'POST',
    path: '/provider-keys',
    json: { provider: 'elevenlabs' },
    issues: [{ path: 'apiKey', message: /expected string/ }],
  },
  {
    method: 'POST',
    path: '/provider-keys',
    json: { provider: 'elevenlabs', apiKey: 'short' },
    issues: [{ path: 'apiKey', message: 'must be at least 8 characters' }],
  },
  {
    method: 'POST',
    path: '/provider-keys',
    json: { provider: 'nope', apiKey: '12345678' },
    issues: [{ path: 'provider', message: /must be one of .*elevenlabs/ }],
  },
  {
    method: 'POST',
    path: '/provider-keys/elevenlabs/verify',
    json: { force: true },
    issues: [{ path: '(body)', message: 'unknown field(s) "force"' }],
  },
  {
    method: 'DELETE',
    path: '/provider-keys/nope',
    issues: [{ path: 'provider', message: /must be one of/ }],
  },
  // billing
  {
    method: 'POST',
    path: '/billing/checkout',
    json: { tier: 'pro', successUrl: 'javascript:alert(1)', cancelUrl: 'https://a.example' },
    issues: [{ path: 'successUrl', message: 'must be an http(s) URL' }],
  },
  {
    method: 'POST',
    path: '/billing/checkout',
    json: {},
    issues: [
      { path: 'successUrl', message: 'must be an http(s) URL' },
      { path: 'cancelUrl', message: 'must be an http(s) URL' },
    ],
  },
  {
    method: 'POST',
    path: '/billing/checkout',
    json: { successUrl: 'https://a.example', cancelUrl: 'https://a.example' },
    issues: [{ path: 'tier', message: 'give either tier (a subscription) or credits (a top-up)' }],
  },
  {
    method: 'POST',
    path: '/billing/checkout',
    json: { credits: -5, successUrl: 'https://a.example', cancelUrl: 'https://a.example' },
    issues: [{ path: 'credits', message: /expected number to be >0/ }],
  },
  {
    method: 'POST',
    path: '/billing/portal',
    json: { returnUrl: 'ftp://x.example' },
    issues: [{ path: 'returnUrl', message: 'must be an http(s) URL' }],
  },
]

describe.each(FRAMEWORKS)('bad input on %s', (framework) => {
  let tb: Tollbooth
  let served: Served
  let api: ReturnType<typeof client>
  let mk: string
  let id: string
  const billingCalls: unknown[] = []

  beforeAll(async () => {
    ;({ tb } = makeTollbooth())
    served = await serveManagement(framework, tb, {
      billing: {
        name: 'fake',
        async webhook() {
          return { status: 200, body: {}, applied: [] }
        },
        async checkout(i) {
          billingCalls.push(i)
          return { url: 'https://c.example', sessionId: 'cs' }
        },
        async portal(i) {
          billingCalls.push(i)
          return { url: 'https://p.example' }
        },
      },
    })
    api = client(served)
    mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    id = (await tb.keys.create({ accountId: 'acct_a', name: 'untouched' })).record.id
    await tb.providerKeys.store('acct_a', { provider: 'elevenlabs', apiKey: 'sk_untouched_1234' })
    // The calling key's lastUsedAt is the one thing a call changes: set it once (the clock
    // stands still), so the snapshots below see every other change.
    expect((await api('GET', '/keys', { token: mk })).status).toBe(200)
  })
  afterAll(() => served.close())

  /** Everything a bad request could have changed. */
  const snapshot = async () => {
    await tb.flush()
    return {
      keys: await tb.keys.list('acct_a', { includeRevoked: true, limit: 100 }),
      mks: await tb.keys.list('acct_a', { kind: 'management', includeRevoked: true, limit: 100 }),
      others: await tb.keys.list('acct_b', { includeRevoked: true, limit: 100 }),
      providers: await tb.providerKeys.list('acct_a'),
      billing: billingCalls.length,
    }
  }

  it.each(CASES.map((c) => [`${c.method} ${c.path.slice(0, 60)}`, c] as const))(
    '%s -> 400 naming the field, nothing changed',
    async (_, c) => {
      const before = await snapshot()
      const r = await api(c.method, c.path.replace('ID', id), {
        token: mk,
        ...(c.json !== undefined ? { json: c.json } : {}),
        ...(c.raw !== undefined
          ? { raw: c.raw, headers: { 'content-type': 'application/json' } }
          : {}),
      })
      if (c.status === 413) {
        expect(r.status).toBe(413)
        expect(r.body).toEqual({
          error: expect.stringMatching(/too large/),
          code: 'invalid_request',
        })
      } else {
        expect(r.status).toBe(400)
        expect(r.body).toEqual({
          error: expect.stringMatching(/^Invalid request/),
          code: 'invalid_request',
          issues: c.issues.map((i) => ({
            path: i.path,
            message: typeof i.message === 'string' ? i.message : expect.stringMatching(i.message),
          })),
        })
        for (const i of c.issues)
          if (!i.path.startsWith('(')) expect(r.body.error).toContain(i.path)
      }
      expect(await snapshot()).toEqual(before)
    },
  )
})
