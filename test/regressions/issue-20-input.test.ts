/**
 * @module test/regressions/issue-20-input
 *
 * Issue 20, items 13 and 14, over HTTP on every store (memory, Redis, PostgreSQL): a lone
 * UTF-16 surrogate, a NUL byte, metadata nested 20,000 deep or too large, and the names of
 * `Object.prototype`'s members as ids, names, providers and tiers each answer 400 naming the
 * field (404 where a name is only looked up), change nothing, and leave `GET /keys` and
 * `GET /usage` answering 200 for the account. The same through the programmatic API. Issue
 * 22: the same for every other route's body, query and path (negative, fractional, huge and
 * `1e400` numbers, bodies 10,000 deep, over-long strings), with the same answer on each store.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import {
  ConfigError,
  InvalidRequestError,
  isTollboothError,
  memoryStorage,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import { client, makeTollbooth, type Served, serveManagement } from '../management/servers.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

/** A product request with `key`. */
const product = (key: string) => ({
  headers: { authorization: `Bearer ${key}` },
  ip: null,
  method: 'POST',
  path: '/v1/synthesize',
})

/** The names every plain object answers for without owning them. */
const PROTO_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']

/** `[[[…]]]` nested `depth` deep as JSON text: 2 bytes a level, so 20,000 fit in the body limit. */
const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`

/** An object nested `depth` deep, built without recursion. */
function deepObject(depth: number): Record<string, unknown> {
  const root: Record<string, unknown> = {}
  let at = root
  for (let i = 0; i < depth; i++) {
    const next: Record<string, unknown> = {}
    at['a'] = next
    at = next
  }
  return root
}

interface BadBody {
  what: string
  /** JSON text of the body (so a lone surrogate goes out as the escape `\ud800`). */
  raw: string
  field: string | RegExp
}

const j = (v: unknown) => JSON.stringify(v)

/** Bodies for `POST /keys` and `PATCH /keys/:id`, each with the field the 400 must name. */
const BAD_KEY_BODIES: BadBody[] = [
  { what: 'a lone high surrogate in name', raw: j({ name: 'a\ud800b' }), field: 'name' },
  { what: 'a lone low surrogate in name', raw: j({ name: '\udc00' }), field: 'name' },
  { what: 'a NUL byte in name', raw: j({ name: 'a\u0000b' }), field: 'name' },
  { what: 'a lone surrogate in category', raw: j({ category: '\ud83d' }), field: 'category' },
  { what: 'a NUL byte in category', raw: j({ category: 'x\u0000' }), field: 'category' },
  { what: 'a lone surrogate in a scope', raw: j({ scopes: ['ok', '\ud800'] }), field: 'scopes.1' },
  { what: 'a NUL byte in a scope', raw: j({ scopes: ['\u0000'] }), field: 'scopes.0' },
  {
    what: 'a lone surrogate in a metadata value',
    raw: j({ metadata: { note: 'x\udfff' } }),
    field: 'metadata.note',
  },
  {
    what: 'a lone surrogate in a metadata name',
    raw: j({ metadata: { ['\ud800']: 1 } }),
    field: /^metadata/,
  },
  {
    what: 'a NUL byte deep in metadata',
    raw: j({ metadata: { a: [{ b: 'x\u0000' }] } }),
    field: 'metadata.a.0.b',
  },
  {
    what: 'metadata nested 20,000 deep',
    raw: `{"metadata":{"a":${deepArray(20_000)}}}`,
    field: /^metadata/,
  },
  { what: 'metadata nested 9 deep', raw: j({ metadata: deepObject(9) }), field: /^metadata/ },
  {
    what: 'a metadata name "__proto__"',
    raw: '{"metadata":{"a":{"__proto__":{"admin":true}}}}',
    field: 'metadata.a',
  },
  {
    what: 'a limits field "__proto__"',
    raw: '{"limits":{"__proto__":{"quotas":{"daily":1}}}}',
    field: 'limits',
  },
  {
    what: 'metadata over 8 KiB',
    raw: j({ metadata: { blob: 'x'.repeat(9000) } }),
    field: 'metadata',
  },
]

/**
 * Hostile values in the bodies, queries and paths of the other routes (the key bodies above
 * are sent to both `POST /keys` and `PATCH /keys/:id`): each a 400 naming the field, the same
 * answer on every store. `:id` is the account's consumption key, `:mid` its management key.
 */
const BAD_REQUESTS: Array<{ method: string; path: string; raw?: string; field: string }> = [
  { method: 'POST', path: '/management-keys', raw: j({ name: 'a\ud800' }), field: 'name' },
  { method: 'POST', path: '/management-keys', raw: j({ scopes: ['\u0000'] }), field: 'scopes.0' },
  {
    method: 'POST',
    path: '/management-keys',
    raw: `{"metadata":{"a":${deepArray(10_000)}}}`,
    field: 'metadata.a',
  },
  {
    method: 'POST',
    path: '/management-keys',
    raw: '{"expiresInDays":1e400}',
    field: 'expiresInDays',
  },
  {
    method: 'POST',
    path: '/management-keys',
    raw: '{"expiresInDays":1.5}',
    field: 'expiresInDays',
  },
  { method: 'POST', path: '/management-keys', raw: '{"category":"x"}', field: '(body)' },
  { method: 'PATCH', path: '/management-keys/:mid', raw: j({ name: 'a\u0000' }), field: 'name' },
  {
    method: 'PATCH',
    path: '/management-keys/:mid',
    raw: '{"metadata":{"__proto__":{"admin":true}}}',
    field: 'metadata',
  },
  { method: 'POST', path: '/keys/:id/rotate', raw: '{"gracePeriodMs":-1}', field: 'gracePeriodMs' },
  {
    method: 'POST',
    path: '/keys/:id/rotate',
    raw: '{"gracePeriodMs":0.5}',
    field: 'gracePeriodMs',
  },
  {
    method: 'POST',
    path: '/keys/:id/rotate',
    raw: '{"gracePeriodMs":1e308}',
    field: 'gracePeriodMs',
  },
  {
    method: 'POST',
    path: '/keys/:id/rotate',
    raw: j({ gracePeriodMs: '\ud800' }),
    field: 'gracePeriodMs',
  },
  { method: 'POST', path: '/keys/:id/rotate', raw: deepArray(10_000), field: '(body)' },
  {
    method: 'POST',
    path: '/keys',
    raw: '{"limits":{"quotas":{"daily":-1}}}',
    field: 'limits.quotas.daily',
  },
  {
    method: 'POST',
    path: '/keys',
    raw: '{"limits":{"quotas":{"daily":1.5}}}',
    field: 'limits.quotas.daily',
  },
  {
    method: 'POST',
    path: '/keys',
    raw: '{"limits":{"quotas":{"daily":1e400}}}',
    field: 'limits.quotas.daily',
  },
  {
    method: 'POST',
    path: '/keys',
    raw: '{"limits":{"rateLimits":[{"limit":1e308,"windowMs":1000}]}}',
    field: 'limits.rateLimits.0.limit',
  },
  { method: 'POST', path: '/keys', raw: '{"limits":{"budget":-0.5}}', field: 'limits.budget' },
  {
    method: 'POST',
    path: '/keys',
    raw: '{"limits":{"concurrency":2.5}}',
    field: 'limits.concurrency',
  },
  { method: 'POST', path: '/keys', raw: '{"expiresInDays":-1}', field: 'expiresInDays' },
  { method: 'POST', path: '/keys', raw: deepArray(10_000), field: '(body)' },
  { method: 'POST', path: '/keys', raw: '{"__proto__":{"name":"x"}}', field: '(body)' },
  { method: 'POST', path: '/keys', raw: '{"constructor":{"name":"x"}}', field: '(body)' },
  { method: 'POST', path: '/keys', raw: j({ name: 'x'.repeat(101) }), field: 'name' },
  {
    method: 'POST',
    path: '/provider-keys',
    raw: j({ provider: 'openai\u0000', apiKey: 'sk-0123456789' }),
    field: 'provider',
  },
  {
    method: 'POST',
    path: '/provider-keys',
    raw: j({ provider: 'openai', apiKey: 'sk-0123456789\ud800' }),
    field: 'apiKey',
  },
  {
    method: 'POST',
    path: '/provider-keys',
    raw: j({ provider: 'openai', apiKey: 'x'.repeat(4097) }),
    field: 'apiKey',
  },
  { method: 'POST', path: '/provider-keys/openai/verify', raw: deepArray(10_000), field: '(body)' },
  // Queries of the lists and of /usage.
  ...(
    [
      ['/keys?limit=-1', 'limit'],
      ['/keys?limit=1.5', 'limit'],
      ['/keys?limit=1e308', 'limit'],
      ['/keys?cursor=a%00', 'cursor'],
      [`/keys?category=${'x'.repeat(65)}`, 'category'],
      ['/keys?includeRevoked=__proto__', 'includeRevoked'],
      ['/management-keys?limit=0', 'limit'],
      ['/keys/:id/logs?limit=101', 'limit'],
      ['/keys/:id/logs?category=%00', 'category'],
      ['/usage?month=2026-03%00', 'month'],
      ['/usage?month=__proto__', 'month'],
      ['/usage?groupBy=constructor', 'groupBy'],
      ['/usage?keyCategory=a%00', 'keyCategory'],
      [`/usage?category=${'x'.repeat(10_000)}`, 'category'],
    ] as const
  ).map(([path, field]) => ({ method: 'GET', path, field })),
  { method: 'DELETE', path: '/keys/:id?permanent=__proto__', field: 'permanent' },
  { method: 'DELETE', path: '/provider-keys/a%00', field: 'provider' },
]

/** Each answer of {@link BAD_REQUESTS} on the first store, which every other store must give. */
const firstAnswers = new Map<string, string>()

interface StoreCase {
  name: string
  skip: boolean
  make(): Promise<{ storage: Storage; cleanup(): Promise<void> }>
}

const redis = await connectRedis()
let pgPool: pg.Pool | null = null

const STORES: StoreCase[] = [
  {
    name: 'memory',
    skip: false,
    make: async () => ({ storage: memoryStorage(), cleanup: async () => {} }),
  },
  {
    name: 'redis',
    skip: redis === null,
    make: async () => {
      const prefix = testPrefix('input')
      const storage = redisStorage({ client: redis!, keyPrefix: prefix })
      return {
        storage,
        cleanup: async () => {
          await storage.close?.()
          await deletePrefix(redis!, prefix)
        },
      }
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    make: async () => {
      pgPool ??= newPool(5)
      const { schema, drop } = await freshSchema(pgPool)
      const storage = postgresStorage({ pool: pgPool, schema })
      return {
        storage,
        cleanup: async () => {
          await storage.close?.()
          await drop()
        },
      }
    },
  },
]

afterAll(async () => {
  await pgPool?.end()
  await redis?.quit()
})

describe('configuration names like members of Object.prototype', () => {
  it('throws a ConfigError for defaultTier or a byok provider named like one', () => {
    for (const name of PROTO_NAMES) {
      expect(() => makeTollbooth({ defaultTier: name }), name).toThrow(ConfigError)
      expect(() => makeTollbooth({ defaultTier: name }), name).toThrow(/defaultTier/)
      const { tb } = makeTollbooth()
      expect(() => tb.route({ byok: [name] }), name).toThrow(/unknown provider/)
    }
  })
})

for (const store of STORES) {
  describe.skipIf(store.skip)(`hostile input on ${store.name}`, () => {
    let tb: Tollbooth
    let storage: Storage
    let served: Served
    let cleanup: () => Promise<void>
    let api: ReturnType<typeof client>
    let mk: string
    let mkId: string
    let keyId: string
    let before: unknown

    beforeAll(async () => {
      const s = await store.make()
      cleanup = s.cleanup
      storage = s.storage
      // A permanent delete of an unused key on a store with a change feed waits out other
      // instances' out-box (`usage.flushIntervalMs` + `storageTimeoutMs`, 3 s by default).
      tb = makeTollbooth({ storage, storageTimeoutMs: 1500, usage: { flushIntervalMs: 100 } }).tb
      served = await serveManagement('hono', tb)
      api = client(served)
      const made = await tb.keys.create({ accountId: 'acct_in', kind: 'management' })
      mk = made.key
      mkId = made.record.id
      const created = await api('POST', '/keys', {
        token: mk,
        json: { name: 'Good', category: 'production', metadata: { plan: 'a' } },
      })
      expect(created.status).toBe(201)
      keyId = created.body.id
      before = (await api('GET', '/keys', { token: mk })).body
    })

    afterAll(async () => {
      await served?.close()
      await tb?.close()
      await cleanup?.()
    })

    /** Every answer so far left the account readable and its keys as they were. */
    async function unchanged() {
      const keys = await api('GET', '/keys', { token: mk })
      expect(keys.status).toBe(200)
      expect(keys.body).toEqual(before)
      expect((await api('GET', '/usage', { token: mk })).status).toBe(200)
      expect((await api('GET', '/provider-keys', { token: mk })).body).toEqual({ data: [] })
    }

    const expectField = (body: { code: string; issues: { path: string }[] }, field: unknown) => {
      expect(body.code).toBe('invalid_request')
      const paths = body.issues.map((i) => i.path)
      if (field instanceof RegExp) expect(paths.some((p) => field.test(p))).toBe(true)
      else expect(paths).toContain(field)
    }

    for (const bad of BAD_KEY_BODIES) {
      it(`POST /keys with ${bad.what}: 400 naming the field, nothing stored`, async () => {
        const r = await api('POST', '/keys', {
          token: mk,
          raw: bad.raw,
          headers: { 'content-type': 'application/json' },
        })
        expect(r.status, r.text).toBe(400)
        expectField(r.body, bad.field)
        await unchanged()
      })

      it(`PATCH /keys/:id with ${bad.what}: 400 naming the field, nothing changed`, async () => {
        const r = await api('PATCH', `/keys/${keyId}`, {
          token: mk,
          raw: bad.raw,
          headers: { 'content-type': 'application/json' },
        })
        expect(r.status, r.text).toBe(400)
        expectField(r.body, bad.field)
        await unchanged()
      })
    }

    it('every other route: a hostile body, query or path is a 400 naming the field, the same on every store', async () => {
      const managementKeys = async () =>
        (await tb.keys.list('acct_in', { kind: 'management', includeRevoked: true })).data.map(
          (k) => [k.id, k.name, k.metadata, k.scopes, k.expiresAt, k.revokedAt],
        )
      const keysBefore = await managementKeys()
      for (const bad of BAD_REQUESTS) {
        const path = bad.path.replace(':mid', mkId).replace(':id', keyId)
        const label = `${bad.method} ${bad.path} ${bad.raw?.slice(0, 60) ?? ''}`
        const r = await api(bad.method, path, {
          token: mk,
          ...(bad.raw === undefined
            ? {}
            : { raw: bad.raw, headers: { 'content-type': 'application/json' } }),
        })
        expect(r.status, `${label}: ${r.text}`).toBe(400)
        expect(r.body.code, label).toBe('invalid_request')
        // The field, or a value within it (`metadata.a.0.0…` of metadata nested too deep).
        const named = r.body.issues.some(
          (i: { path: string }) => i.path === bad.field || i.path.startsWith(`${bad.field}.`),
        )
        expect(named, `${label}: ${r.text.slice(0, 300)}`).toBe(true)
        const answer = r.text.replaceAll(keyId, ':id').replaceAll(mkId, ':mid')
        if (!firstAnswers.has(label)) firstAnswers.set(label, answer)
        expect(answer, label).toBe(firstAnswers.get(label))
      }
      await unchanged()
      expect(await managementKeys()).toEqual(keysBefore)
    })

    for (const name of PROTO_NAMES) {
      it(`provider "${name}": 400 naming provider on store, verify and delete`, async () => {
        const stored = await api('POST', '/provider-keys', {
          token: mk,
          json: { provider: name, apiKey: 'sk_some_provider_key' },
        })
        expect(stored.status, stored.text).toBe(400)
        expectField(stored.body, 'provider')
        const verify = await api('POST', `/provider-keys/${encodeURIComponent(name)}/verify`, {
          token: mk,
        })
        expect(verify.status, verify.text).toBe(400)
        const del = await api('DELETE', `/provider-keys/${encodeURIComponent(name)}`, {
          token: mk,
        })
        expect(del.status, del.text).toBe(400)
        await unchanged()
      })

      it(`key id "${name}": 404 on get, patch, delete, rotate and logs`, async () => {
        const id = encodeURIComponent(name)
        for (const [method, path, json] of [
          ['GET', `/keys/${id}`, undefined],
          ['PATCH', `/keys/${id}`, { name: 'x' }],
          ['DELETE', `/keys/${id}`, undefined],
          ['POST', `/keys/${id}/rotate`, {}],
          ['GET', `/keys/${id}/logs`, undefined],
        ] as const) {
          const r = await api(method, path, { token: mk, ...(json ? { json } : {}) })
          expect(r.status, `${method} ${path}: ${r.text}`).toBe(404)
        }
        await unchanged()
      })

      it(`"${name}" as a key's name, category and scope is stored as given`, async () => {
        // `__proto__` as a metadata name is refused (above); the others are ordinary names.
        const metadata = name === '__proto__' ? {} : { [name]: name }
        const r = await api('POST', '/keys', {
          token: mk,
          json: { name, category: name, scopes: [name], metadata },
        })
        expect(r.status, r.text).toBe(201)
        expect(r.body.name).toBe(name)
        const got = await api('GET', `/keys/${r.body.id}`, { token: mk })
        expect(got.body.category).toBe(name)
        expect(got.body.scopes).toEqual([name])
        expect(got.body.metadata).toEqual(metadata)
        if (name !== '__proto__') expect(Object.hasOwn(got.body.metadata, name)).toBe(true)
        expect(
          (await api('DELETE', `/keys/${r.body.id}?permanent=true`, { token: mk })).status,
        ).toBe(204)
        await unchanged()
      })

      it(`tier "${name}": setTier throws naming the tier; the account keeps working`, async () => {
        const account = `tier_${PROTO_NAMES.indexOf(name)}`
        const { key } = await tb.keys.create({ accountId: account })
        const err = await tb.accounts.setTier(account, name).catch((e: unknown) => e)
        expect(isTollboothError(err) && err.code).toBe('invalid_request')
        expect((err as InvalidRequestError).issues.map((i) => i.path)).toEqual(['tier'])
        expect((err as Error).message).toContain(name)
        expect((await tb.accounts.get(account)).tier).toBe('pro')
        const d = await tb.authenticate(product(key), tb.route({ cost: 1 }))
        expect(d.allowed && d.accountId).toBe(account)
        if (d.allowed) await tb.settle(d, { status: 200 })
      })

      it(`account id "${name}": an account like any other`, async () => {
        // `constructor` etc. match the account id pattern: they must be ordinary accounts.
        const created = await tb.keys.create({ accountId: name, name: 'k' })
        const d = await tb.authenticate(product(created.key), tb.route({ cost: 1 }))
        expect(d.allowed).toBe(true)
        if (d.allowed) await tb.settle(d, { status: 200 })
        expect((await tb.accounts.get(name)).tier).toBe('pro')
        expect((await tb.keys.list(name)).data.map((k) => k.id)).toEqual([created.record.id])
      })
    }

    it('a NUL in a key id or a cursor: 404 or 400 naming the cursor, never a 500', async () => {
      for (const path of ['/keys/%00', '/keys/key_%00/logs', '/keys/%00/rotate']) {
        const r = await api(path.endsWith('rotate') ? 'POST' : 'GET', path, { token: mk })
        expect(r.status, `${path}: ${r.text}`).toBe(404)
      }
      const list = await api('GET', '/keys?cursor=%00', { token: mk })
      expect(list.status, list.text).toBe(400)
      expectField(list.body, 'cursor')
      const logs = await api('GET', `/keys/${keyId}/logs?cursor=a%00`, { token: mk })
      expect(logs.status, logs.text).toBe(400)
      expectField(logs.body, 'cursor')
      await unchanged()
    })

    it('a NUL in a request path is recorded as U+FFFD and never blocks usage recording', async () => {
      // Hono decodes `%00` in c.req.path; PostgreSQL text cannot hold it, and a refused batch
      // stays first in the out-box, so every later event of the instance waited behind it.
      const { key, record } = await tb.keys.create({ accountId: 'acct_path' })
      const send = (path: string) =>
        fetch(`${served.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}` },
        })
      expect((await send('/v1/synthesize%00x')).status).toBe(404)
      expect((await send('/v1/synthesize')).status).toBe(200)
      await tb.flush()
      const logs = await tb.usage.logs(record.id)
      expect(logs.data.map((e) => e.path).sort()).toEqual([
        '/v1/synthesize',
        '/v1/synthesize\ufffdx',
      ])
      expect((await tb.usage.get('acct_path')).requestCount).toBe(2)
    })

    it('a key stored with a lone surrogate by an earlier version still lists and can be fixed', async () => {
      // Redis's list script decoded every record with cjson, which refuses the escape
      // JSON.stringify writes for a lone surrogate: one such key made GET /keys a 500.
      const { record } = await tb.keys.create({ accountId: 'acct_old', name: 'placeholder' })
      // PostgreSQL's jsonb never took a lone surrogate; its text columns turn one into U+FFFD.
      const metadata = store.name === 'postgres' ? {} : { note: 'x\udc00' }
      await storage.keys.update(record.id, { name: 'old\ud800', metadata })
      const list = await tb.keys.list('acct_old')
      expect(list.data.map((k) => k.id)).toEqual([record.id])
      expect((await tb.keys.list('acct_old', { includeRevoked: true })).data).toHaveLength(1)
      const fixed = await tb.keys.update(record.id, { name: 'fixed', metadata: {} })
      expect([fixed.name, fixed.metadata]).toEqual(['fixed', {}])
      await tb.keys.revoke(record.id)
      await storage.keys.update(record.id, { name: 'again\udfff' })
      expect((await tb.keys.list('acct_old')).data).toEqual([])
      expect((await tb.keys.list('acct_old', { includeRevoked: true })).data).toHaveLength(1)
    })

    it('usage categories named like members of Object.prototype count as themselves', async () => {
      const { key } = await tb.keys.create({ accountId: 'acct_cat' })
      for (const category of PROTO_NAMES) {
        const d = await tb.authenticate(product(key), tb.route({ cost: 2, category }))
        expect(d.allowed).toBe(true)
        if (d.allowed) await tb.settle(d, { status: 200 })
      }
      await tb.flush()
      const u = await tb.usage.get('acct_cat')
      expect(u.requestCount).toBe(PROTO_NAMES.length)
      for (const category of PROTO_NAMES) {
        expect(Object.hasOwn(u.breakdown, category), category).toBe(true)
        expect(u.breakdown[category]).toBe(2)
        expect(u.requests[category]).toBe(1)
      }
      // Nothing leaked onto Object.prototype or Object.
      expect(({} as Record<string, unknown>)['requests']).toBeUndefined()
      expect((Object as unknown as Record<string, unknown>)['units']).toBeUndefined()
    })

    it('decision.providerKey of a name like a member of Object.prototype is undefined', async () => {
      const { key } = await tb.keys.create({ accountId: 'acct_byok' })
      const d = await tb.authenticate(
        { ...product(key), headers: { ...product(key).headers, 'x-provider-key-openai': 'sk-x' } },
        tb.route({ cost: 1, byok: true }),
      )
      expect(d.allowed).toBe(true)
      if (!d.allowed) return
      for (const name of PROTO_NAMES) expect(await d.providerKey(name), name).toBeUndefined()
      expect(await d.providerKey('openai')).toBe('sk-x')
      await tb.settle(d, { status: 200 })
    })

    it('the programmatic API refuses the same values with an InvalidRequestError', async () => {
      const cases: Array<[Record<string, unknown>, string | RegExp]> = [
        [{ name: '\ud800' }, 'name'],
        [{ name: 'a\u0000' }, 'name'],
        [{ category: '\udc00' }, 'category'],
        [{ scopes: ['\u0000'] }, 'scopes.0'],
        [{ metadata: { a: '\ud800' } }, 'metadata.a'],
        [{ metadata: deepObject(20_000) }, /^metadata/],
        [{ metadata: { big: 'x'.repeat(9000) } }, 'metadata'],
        [{ metadata: { n: 10n } }, 'metadata.n'],
        [{ metadata: { f: () => 1 } }, 'metadata.f'],
        [{ metadata: { d: new Date(0) } }, 'metadata.d'],
        [{ metadata: { x: Number.NaN } }, 'metadata.x'],
      ]
      for (const [input, field] of cases) {
        const err = await tb.keys
          .create({ accountId: 'acct_in', ...input } as never)
          .catch((e: unknown) => e)
        expect(err, JSON.stringify(Object.keys(input))).toBeInstanceOf(InvalidRequestError)
        const paths = (err as InvalidRequestError).issues.map((i) => i.path)
        if (field instanceof RegExp) expect(paths.some((p) => field.test(p))).toBe(true)
        else expect(paths).toContain(field)
        const upd = await tb.keys.update(keyId, input as never).catch((e: unknown) => e)
        expect(upd).toBeInstanceOf(InvalidRequestError)
      }
      for (const metadata of [{ a: '\ud800' }, deepObject(20_000), { big: 'x'.repeat(70_000) }]) {
        const err = await tb.accounts.patch('acct_in', { metadata }).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(InvalidRequestError)
        expect((err as InvalidRequestError).issues[0]!.path).toMatch(/^metadata/)
      }
      await unchanged()
    })
  })
}
