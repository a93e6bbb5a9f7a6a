/**
 * The PDF API example (`examples/pdf-api`, Express) against `003_a3f67200bbf2a6b6.txt`: the
 * session-only account API in the seed's exact shapes (list as an array, create as
 * `{ key, plaintext }`, revoke 204, usage with a per-operation breakdown and reset date,
 * profile), the five operations as usage categories, and the monthly limit of 500, over real
 * HTTP on a manual clock.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createPdfApi } from '../../examples/pdf-api/app.js'
import { signSession } from '../../examples/shared/session.js'
import { manualClock } from '../../src/internal.js'
import { type Client, clientOf, repeat, type Served, serveExpress, trackSettles } from './http.js'

const SECRET = 'pdf-example-secret-pdf-example-secret-0000'
const SESSION_SECRET = 'pdf-example-session-secret-0123456789abc'
const T0 = Date.UTC(2026, 1, 25, 10, 0, 0)

let served: Served | undefined
afterEach(async () => {
  await served?.close()
  served = undefined
})

async function start() {
  const clock = manualClock(T0)
  const pdf = createPdfApi({ secret: SECRET, sessionSecret: SESSION_SECRET, clock })
  const settles = trackSettles(pdf.tb)
  served = await serveExpress(pdf.app)
  const api: Client = clientOf(served)
  const token = await signSession(SESSION_SECRET, 'user_42', { now: T0, ttlSeconds: 90 * 86_400 })
  return { ...pdf, clock, api, settles, token }
}

const compress = (api: Client, key: string) =>
  api('POST', '/api/v1/compress', { token: key, json: { file: 'https://example.com/a.pdf' } })

describe('pdf-api example: 003 account API', () => {
  it('replays the seed: keys, operations, usage by month, profile, revoke', async () => {
    const { tb, api, clock, settles, token } = await start()
    await tb.accounts.setTier('user_42', 'pro')

    expect((await api('GET', '/api/v1/account/keys', { token })).body).toEqual([])
    // curl -X POST /api/v1/account/keys -H "Authorization: Bearer YOUR_TOKEN" -d '{"name":"CI Pipeline"}'
    const created = await api('POST', '/api/v1/account/keys', {
      token,
      json: { name: 'CI Pipeline' },
    })
    expect(created.status).toBe(201)
    expect(created.body).toEqual({
      key: {
        id: expect.stringMatching(/^key_/),
        name: 'CI Pipeline',
        prefix: created.body.plaintext.slice(0, 13),
        createdAt: '2026-02-25T10:00:00.000Z',
        lastUsedAt: null,
      },
      plaintext: expect.stringMatching(/^pdf_live_[A-Za-z0-9]{30,}$/),
    })
    expect(created.body.key.prefix).toMatch(/^pdf_live_[A-Za-z0-9]{4}$/)
    const key = created.body.plaintext as string
    // The name is optional ("" by default) and at most 100 characters.
    clock.advance(1000)
    const unnamed = await api('POST', '/api/v1/account/keys', { token, json: {} })
    expect([unnamed.status, unnamed.body.key.name]).toEqual([201, ''])
    const long = await api('POST', '/api/v1/account/keys', {
      token,
      json: { name: 'x'.repeat(101) },
    })
    expect([long.status, long.body.issues[0].path]).toEqual([400, 'name'])

    // January: 2 operations; February (the current month): 15 merges, 12 compress, ...
    clock.set(Date.UTC(2026, 0, 10))
    await repeat(2, () => compress(api, key))
    clock.set(T0)
    const ops: Array<[string, string, object, number]> = [
      ['merge', '/api/v1/merge', { files: ['https://e.com/a.pdf', 'https://e.com/b.pdf'] }, 15],
      ['compress', '/api/v1/compress', { file: 'https://e.com/a.pdf', quality: 'high' }, 12],
      ['accessibilityCheck', '/api/v1/accessibility-check', { file: 'https://e.com/a.pdf' }, 10],
      ['split', '/api/v1/split', { file: 'https://e.com/a.pdf', ranges: ['1-3', '4-'] }, 5],
      ['rotate', '/api/v1/rotate', { file: 'https://e.com/a.pdf', degrees: 90 }, 5],
    ]
    for (const [operation, path, body, n] of ops) {
      const answers = await repeat(n, () => api('POST', path, { token: key, json: body }))
      expect(answers.map((r) => r.status)).toEqual(Array(n).fill(200))
      expect(answers[0]!.body.operation).toBe(operation)
    }
    // A bad body is a 400 naming the field, and is not counted.
    const bad = await api('POST', '/api/v1/rotate', {
      token: key,
      json: { file: 'x', degrees: 45 },
    })
    expect(bad.status).toBe(400)
    expect(bad.body.issues.map((i: { path: string }) => i.path)).toEqual(['file', 'degrees'])

    // GET /api/v1/account/usage
    await settles.idle()
    const usage = await api('GET', '/api/v1/account/usage', { token })
    expect(usage.status).toBe(200)
    expect(usage.body).toEqual({
      current: 47,
      limit: 500,
      resetDate: '2026-03-01T00:00:00.000Z',
      breakdown: [
        { operation: 'merge', count: 15 },
        { operation: 'compress', count: 12 },
        { operation: 'accessibilityCheck', count: 10 },
        { operation: 'split', count: 5 },
        { operation: 'rotate', count: 5 },
      ],
    })
    // curl "/api/v1/account/usage?month=2026-01"
    const january = await api('GET', '/api/v1/account/usage?month=2026-01', { token })
    expect(january.body).toEqual({
      current: 2,
      limit: 500,
      resetDate: '2026-02-01T00:00:00.000Z',
      breakdown: [{ operation: 'compress', count: 2 }],
    })
    const badMonth = await api('GET', '/api/v1/account/usage?month=2026-13', { token })
    expect([badMonth.status, badMonth.body.error]).toEqual([
      400,
      'Invalid request query: month: must be YYYY-MM',
    ])

    // GET /api/v1/account/profile
    expect((await api('GET', '/api/v1/account/profile', { token })).body).toEqual({ tier: 'pro' })

    // GET /api/v1/account/keys: the active keys, newest first, never the plaintext.
    await tb.flush()
    const list = await api('GET', '/api/v1/account/keys', { token })
    expect(list.body).toEqual([
      expect.objectContaining({ id: unnamed.body.key.id, name: '', lastUsedAt: null }),
      {
        id: created.body.key.id,
        name: 'CI Pipeline',
        prefix: created.body.key.prefix,
        createdAt: '2026-02-25T10:00:00.000Z',
        lastUsedAt: '2026-02-25T10:00:00.000Z',
      },
    ])
    expect(list.text).not.toContain(key)

    // curl -X DELETE /api/v1/account/keys/key_3 -> 204; immediately unusable, history kept.
    const revoked = await api('DELETE', `/api/v1/account/keys/${created.body.key.id}`, { token })
    expect([revoked.status, revoked.text]).toEqual([204, ''])
    expect((await compress(api, key)).body).toEqual({
      error: 'Invalid API Key',
      code: 'invalid_api_key',
    })
    expect((await api('GET', '/api/v1/account/keys', { token })).body).toHaveLength(1)
    expect((await tb.keys.get(created.body.key.id)).revokedAt).toBe(T0)
    expect((await api('GET', '/api/v1/account/usage', { token })).body.current).toBe(47)
  })

  it('takes session tokens only on the account routes', async () => {
    const { tb, api, token } = await start()
    const key = (await tb.keys.create({ accountId: 'user_42' })).key
    const asKey = await api('GET', '/api/v1/account/keys', { token: key })
    expect(asKey.status).toBe(403)
    expect(asKey.body).toEqual({
      error: 'API key authentication is not supported for account endpoints; use a session token',
      code: 'session_required',
    })
    const none = await api('GET', '/api/v1/account/profile')
    expect([none.status, none.headers.get('www-authenticate')]).toEqual([401, 'Bearer'])
    const forged = await signSession('some-other-secret-some-other-secret-00', 'user_42', {
      now: T0,
    })
    expect((await api('GET', '/api/v1/account/keys', { token: forged })).status).toBe(401)
    const expired = await signSession(SESSION_SECRET, 'user_42', { now: T0 - 2 * 86_400_000 })
    const old = await api('GET', '/api/v1/account/keys', { token: expired })
    expect([old.status, old.body.error]).toEqual([401, 'Session token expired'])
    // A session token is not an API key on the operations.
    expect((await api('POST', '/api/v1/merge', { token, json: {} })).status).toBe(401)
    // Another account's key is not found.
    const other = await tb.keys.create({ accountId: 'user_7' })
    const theirs = await api('DELETE', `/api/v1/account/keys/${other.record.id}`, { token })
    expect([theirs.status, theirs.body.code]).toEqual([404, 'not_found'])
    expect((await compress(api, other.key)).status).toBe(200)
    // The profile of an account on the default plan.
    expect((await api('GET', '/api/v1/account/profile', { token })).body).toEqual({ tier: 'free' })
  })
})

describe('pdf-api example: monthly limit', () => {
  it('allows 500 operations a month on pro, then 402 until the 1st', async () => {
    const { tb, api, clock } = await start()
    await tb.accounts.setTier('user_42', 'pro')
    const key = (await tb.keys.create({ accountId: 'user_42' })).key
    const month = await repeat(500, () => compress(api, key))
    expect(month.filter((r) => r.status === 200)).toHaveLength(500)
    const refused = await compress(api, key)
    expect([refused.status, refused.body]).toEqual([
      402,
      { error: 'Insufficient credits', code: 'insufficient_credits' },
    ])
    clock.set(Date.UTC(2026, 2, 1))
    expect((await compress(api, key)).status).toBe(200)
  })

  it('answers the 501st operation with Retry-After: the seconds until resetDate', async () => {
    const { tb, api, clock, settles, token } = await start()
    await tb.accounts.setTier('user_42', 'pro')
    const key = (await tb.keys.create({ accountId: 'user_42' })).key
    await repeat(500, () => compress(api, key))
    await settles.idle()
    clock.set(T0 + 90_500) // mid-second: the wait rounds up
    const refused = await compress(api, key)
    expect(refused.status).toBe(402)
    const usage = await api('GET', '/api/v1/account/usage', { token })
    expect(usage.body).toMatchObject({ current: 500, limit: 500 })
    const reset = Date.parse(usage.body.resetDate)
    expect(reset).toBe(Date.UTC(2026, 2, 1))
    expect(refused.headers.get('retry-after')).toBe(
      String(Math.ceil((reset - (T0 + 90_500)) / 1000)),
    )
  })
})
