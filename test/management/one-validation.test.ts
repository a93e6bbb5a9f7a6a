/**
 * @module test/management/one-validation
 *
 * Each request body is validated once, with one wording. The management API parses a key or
 * provider-key body with the core's own schema (`src/keys/fields.ts`, `providerKeyBody`) and
 * hands the parsed value to the core's parsed-input entries, which do not validate it again;
 * `tb.keys` called directly runs the same schema fragments through the same `parseInput`.
 * So a bad field reads the same from the HTTP API and from `tb.keys`, and the parsed entries
 * take their input as it is.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type InvalidField,
  parsedKeyEntries,
  storeParsedProviderKey,
  type Tollbooth,
} from '../../src/internal.js'
import { client, makeTollbooth, type Served, serveManagement } from './servers.js'

/** The issues of a call that must fail with a 400. */
async function issuesOf(call: Promise<unknown>): Promise<InvalidField[]> {
  const err = (await call.then(
    () => {
      throw new Error('accepted')
    },
    (e: unknown) => e,
  )) as { status: number; issues: InvalidField[] }
  expect(err.status).toBe(400)
  return err.issues
}

describe('one validation of each body, one wording', () => {
  let tb: Tollbooth
  let served: Served
  let api: ReturnType<typeof client>
  let mk: string
  let id: string

  beforeAll(async () => {
    ;({ tb } = makeTollbooth())
    served = await serveManagement('hono', tb)
    api = client(served)
    mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
    id = (await tb.keys.create({ accountId: 'acct_a', name: 'k' })).record.id
  })
  afterAll(() => served.close())

  /** The same bad field on `POST /keys`, `PATCH /keys/:id` and `tb.keys`: the same issue. */
  it.each<[string, Record<string, unknown>, InvalidField]>([
    ['an unknown field', { bogus: 1 }, { path: '(root)', message: 'unknown field(s) "bogus"' }],
    [
      'an unknown field inside limits',
      { limits: { quotas: { daily: 5 }, burst: 2 } },
      { path: 'limits', message: 'unknown field(s) "burst"' },
    ],
    ['a bad name', { name: ' ' }, { path: 'name', message: 'must be 1-100 characters' }],
    [
      'a bad limit',
      { limits: { rateLimits: [{ limit: 0, windowMs: 1000 }] } },
      { path: 'limits.rateLimits.0.limit', message: 'Too small: expected number to be >0' },
    ],
  ])('%s', async (_, body, issue) => {
    const http = issue.path === '(root)' ? { ...issue, path: '(body)' } : issue
    const created = await api('POST', '/keys', { token: mk, json: body })
    expect(created.status).toBe(400)
    expect(created.body.issues).toEqual([http])
    const patched = await api('PATCH', `/keys/${id}`, { token: mk, json: body })
    expect(patched.body.issues).toEqual([http])

    expect(await issuesOf(tb.keys.create({ accountId: 'acct_a', ...body }))).toEqual([issue])
    expect(await issuesOf(tb.keys.update(id, body))).toEqual([issue])
  })

  it('words an unknown field of the rotate and provider-key bodies the same way', async () => {
    const rotated = await api('POST', `/keys/${id}/rotate`, { token: mk, json: { grace: 1 } })
    expect(rotated.body.issues).toEqual([{ path: '(body)', message: 'unknown field(s) "grace"' }])
    expect(await issuesOf(tb.keys.rotate(id, { grace: 1 } as never))).toEqual([
      { path: '(root)', message: 'unknown field(s) "grace"' },
    ])
    const json = { provider: 'elevenlabs', apiKey: 'sk_0123456789', label: 'x' }
    const stored = await api('POST', '/provider-keys', { token: mk, json })
    expect(stored.body.issues).toEqual([{ path: '(body)', message: 'unknown field(s) "label"' }])
    expect(await issuesOf(tb.providerKeys.store('acct_a', json as never))).toEqual([
      { path: '(root)', message: 'unknown field(s) "label"' },
    ])
  })

  /**
   * The same bad list option as a query of the management API and as an option of the core's
   * list: the same issue. Before, `tb.keys.list` and `tb.usage.logs` said `Too small: expected
   * number to be >=1` where `GET /keys?limit=0` (and `tb.ipBlocks.list`) said `must be an
   * integer from 1 to 100`.
   */
  it.each<[string, string, Record<string, unknown>, InvalidField]>([
    [
      'limit 0',
      'limit=0',
      { limit: 0 },
      { path: 'limit', message: 'must be an integer from 1 to 100' },
    ],
    [
      'limit 101',
      'limit=101',
      { limit: 101 },
      { path: 'limit', message: 'must be an integer from 1 to 100' },
    ],
    [
      'a category over 64 characters',
      `category=${'x'.repeat(65)}`,
      { category: 'x'.repeat(65) },
      { path: 'category', message: 'must be 1-64 characters' },
    ],
    [
      'a blank category',
      'category=%20',
      { category: ' ' },
      { path: 'category', message: 'must be 1-64 characters' },
    ],
  ])('a list option: %s', async (_, query, options, issue) => {
    const keys = await api('GET', `/keys?${query}`, { token: mk })
    expect([keys.status, keys.body.issues]).toEqual([400, [issue]])
    const logs = await api('GET', `/keys/${id}/logs?${query}`, { token: mk })
    expect([logs.status, logs.body.issues]).toEqual([400, [issue]])
    expect(await issuesOf(tb.keys.list('acct_a', options))).toEqual([issue])
    expect(await issuesOf(tb.usage.logs(id, options))).toEqual([issue])
    if (issue.path === 'limit') expect(await issuesOf(tb.ipBlocks.list(options))).toEqual([issue])
    else {
      const usage = await api('GET', `/usage?${query}`, { token: mk })
      expect([usage.status, usage.body.issues]).toEqual([400, [issue]])
      expect(await issuesOf(tb.usage.get('acct_a', options))).toEqual([issue])
    }
  })

  it('the parsed-input entries the management API calls take their input as it is', async () => {
    // tb.keys.create trims a name (its schema's transform); the parsed entry, given a value
    // its caller has parsed, runs no schema, so the name stays as given.
    const keys = parsedKeyEntries(tb.keys)
    const draft = {
      accountId: 'acct_a',
      name: '  as given  ',
      kind: 'consumption' as const,
      category: null,
      scopes: [],
      metadata: {},
      limits: {},
      active: true,
    }
    expect((await keys.create(draft, {})).record.name).toBe('  as given  ')
    expect((await tb.keys.create({ ...draft })).record.name).toBe('as given')
    expect((await keys.update(id, { name: '  kept  ' }, {})).name).toBe('  kept  ')
    expect((await tb.keys.update(id, { name: '  kept  ' })).name).toBe('kept')
    const view = await storeParsedProviderKey(tb.providerKeys, 'acct_a', {
      provider: 'elevenlabs',
      apiKey: 'sk_0123456789',
    })
    expect(view.provider).toBe('elevenlabs')

    // Over HTTP the body is parsed once: the name is trimmed (by the body schema) and stored.
    const r = await api('POST', '/keys', { token: mk, json: { name: '  over http  ' } })
    expect(r.status).toBe(201)
    expect(r.body.name).toBe('over http')
  })
})
