import { describe, expect, it, vi } from 'vitest'
import {
  ConfigError,
  createTollbooth,
  type Denial,
  isTollboothError,
  memoryStorage,
} from '../../src/index.js'
import { request, SECRET, setup } from '../support/core.js'

const body = (d: unknown) => JSON.parse((d as Denial).body)

describe('denials', () => {
  it('refuses a request without a key: 401 with a bare Bearer challenge', async () => {
    const { tb } = setup()
    const d = (await tb.authenticate(request())) as Denial
    expect(d).toMatchObject({ allowed: false, status: 401, code: 'missing_api_key' })
    expect(d.headers['WWW-Authenticate']).toBe('Bearer')
    expect(body(d)).toEqual({ error: 'Missing API Key', code: 'missing_api_key' })
  })

  it('refuses a malformed key with no storage call', async () => {
    const storage = memoryStorage()
    let lookups = 0
    const getByHash = storage.keys.getByHash
    storage.keys.getByHash = (h) => {
      lookups++
      return getByHash(h)
    }
    const tb = createTollbooth({ secret: SECRET, storage })
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    for (const bad of [
      'nope',
      `${key}x`,
      key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A'),
      `pk_${key}`,
    ]) {
      const d = (await tb.authenticate(request(bad))) as Denial
      expect(d.status).toBe(401)
      expect(body(d)).toEqual({ error: 'Invalid API Key', code: 'invalid_api_key' })
      expect(d.headers['WWW-Authenticate']).toBe('Bearer error="invalid_token"')
    }
    expect(lookups).toBe(0)
  })

  it('refuses an unknown well-formed key, and remembers the miss', async () => {
    const storage = memoryStorage()
    let lookups = 0
    const getByHash = storage.keys.getByHash
    storage.keys.getByHash = (h) => {
      lookups++
      return getByHash(h)
    }
    const tb = createTollbooth({ secret: SECRET, storage })
    const { tb: other } = setup()
    const { key } = await other.keys.create({ accountId: 'acct_1' })
    for (let i = 0; i < 5; i++)
      expect(await tb.authenticate(request(key))).toMatchObject({
        status: 401,
        message: 'Invalid API Key',
      })
    expect(lookups).toBe(1)
  })

  it('answers inactive and expired keys with the seed strings', async () => {
    const { tb, clock } = setup()
    const inactive = await tb.keys.create({ accountId: 'acct_1', active: false })
    expect(body(await tb.authenticate(request(inactive.key)))).toEqual({
      error: 'Inactive API Key',
      code: 'inactive_api_key',
    })
    const expiring = await tb.keys.create({ accountId: 'acct_1', expiresInDays: 1 })
    expect((await tb.authenticate(request(expiring.key))).allowed).toBe(true)
    clock.advance(86_400_000)
    const d = await tb.authenticate(request(expiring.key))
    expect(d).toMatchObject({ status: 401 })
    expect(body(d)).toEqual({ error: 'Expired API Key', code: 'expired_api_key' })
  })

  it('refuses the wrong key kind with 403, both ways', async () => {
    const { tb } = setup()
    const mk = await tb.keys.create({ accountId: 'acct_1', kind: 'management' })
    const ck = await tb.keys.create({ accountId: 'acct_1' })
    expect(mk.key.startsWith('mk_live_')).toBe(true)
    expect(await tb.authenticate(request(mk.key))).toMatchObject({
      status: 403,
      code: 'wrong_key_kind',
    })
    const mgmt = tb.route({ kind: 'management' })
    expect(await tb.authenticate(request(ck.key), mgmt)).toMatchObject({
      status: 403,
      code: 'wrong_key_kind',
    })
    expect((await tb.authenticate(request(mk.key), mgmt)).allowed).toBe(true)
  })

  it('refuses a key missing a required scope with 403', async () => {
    const { tb } = setup()
    const route = tb.route({ scopes: ['keys:write'] })
    const without = await tb.keys.create({ accountId: 'acct_1', scopes: ['keys:read'] })
    const withScope = await tb.keys.create({
      accountId: 'acct_1',
      scopes: ['keys:read', 'keys:write'],
    })
    expect(body(await tb.authenticate(request(without.key), route))).toEqual({
      error: 'Missing scope: keys:write',
      code: 'insufficient_scope',
    })
    expect((await tb.authenticate(request(withScope.key), route)).allowed).toBe(true)
  })

  it('reads the key from x-api-key, and from a custom source', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    expect((await tb.authenticate({ ...request(), headers: { 'x-api-key': key } })).allowed).toBe(
      true,
    )
    const custom = tb.route({
      keySources: [(r) => new URLSearchParams(r.path.split('?')[1]).get('key') ?? undefined],
    })
    expect((await tb.authenticate({ ...request(), path: `/x?key=${key}` }, custom)).allowed).toBe(
      true,
    )
    expect((await tb.authenticate(request(key), custom)).allowed).toBe(false)
  })

  it('echoes a valid incoming X-Request-Id and generates one otherwise', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    const a = await tb.authenticate(request(key, { headers: { 'x-request-id': 'trace-123' } }))
    expect(a.requestId).toBe('trace-123')
    expect(a.headers['X-Request-Id']).toBe('trace-123')
    const b = await tb.authenticate(
      request(key, { headers: { 'x-request-id': 'bad id with spaces' } }),
    )
    expect(b.requestId).toMatch(/^req_/)
    const c = await tb.authenticate(request())
    expect(c.headers['X-Request-Id']).toMatch(/^req_/)
    expect(c.requestId).not.toBe(b.requestId)
  })

  it('drops a cached key at once on revoke, deactivate and update', async () => {
    const { tb } = setup({ cache: { ttlMs: 3_600_000, negativeTtlMs: 3_600_000, max: 100 } })
    const a = await tb.keys.create({ accountId: 'acct_1' })
    expect((await tb.authenticate(request(a.key))).allowed).toBe(true)
    await tb.keys.update(a.record.id, { active: false })
    expect(await tb.authenticate(request(a.key))).toMatchObject({ message: 'Inactive API Key' })
    await tb.keys.update(a.record.id, { active: true })
    expect((await tb.authenticate(request(a.key))).allowed).toBe(true)
    await tb.keys.update(a.record.id, { scopes: [], limits: { quotas: { total: 1 } } })
    expect((await tb.authenticate(request(a.key))).allowed).toBe(true)
    expect((await tb.authenticate(request(a.key))).allowed).toBe(false)
    const b = await tb.keys.create({ accountId: 'acct_1' })
    expect((await tb.authenticate(request(b.key))).allowed).toBe(true)
    await tb.keys.revoke(b.record.id)
    expect(await tb.authenticate(request(b.key))).toMatchObject({ message: 'Invalid API Key' })
  })

  it('fails closed with 503 when storage does not answer', async () => {
    const storage = memoryStorage()
    const tb = createTollbooth({ secret: SECRET, storage, storageTimeoutMs: 50 })
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { quotas: { daily: 10 } } })
    // As if the counters were remote: the timeout guard applies.
    storage.counters = { ...storage.counters, inProcess: undefined } as never
    const tb2 = createTollbooth({
      secret: SECRET,
      storage,
      storageTimeoutMs: 50,
      onError: () => {},
    })
    storage.counters.consume = () => new Promise(() => {})
    const d = await tb2.authenticate(request(key))
    expect(d).toMatchObject({ allowed: false, status: 503, code: 'storage_unavailable' })
    const open = createTollbooth({
      secret: SECRET,
      storage,
      storageTimeoutMs: 50,
      failOpen: true,
      onError: () => {},
    })
    expect((await open.authenticate(request(key))).allowed).toBe(true)
  })
})

describe('configuration errors', () => {
  it('names an unknown option', () => {
    expect(() => createTollbooth({ secret: SECRET, sekret: 1 } as never)).toThrow(
      /^createTollbooth: options\.sekret is not an option$/,
    )
  })

  it('names each bad option and what was expected', () => {
    const err = (() => {
      try {
        createTollbooth({
          secret: 'short',
          cache: { ttlMs: -5 },
          prefixes: { consumption: 'bad prefix!' },
        } as never)
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(err).toBeInstanceOf(ConfigError)
    expect(isTollboothError(err)).toBe(true)
    const msg = (err as Error).message
    expect(msg).toMatch(/^createTollbooth: options\.secret must be at least 32 characters/)
    expect(msg).toMatch(/options\.cache/)
    // A union matched by type reports the bad field inside it.
    expect(() =>
      createTollbooth({ secret: SECRET, cache: { memoizeKeys: 'yes' } } as never),
    ).toThrow(/options\.cache\.memoizeKeys/)
    expect(msg).toMatch(/options\.prefixes\.consumption/)
  })

  it('requires a secret outside tests', () => {
    const env = process.env.NODE_ENV
    process.env.NODE_ENV = 'production'
    try {
      // @ts-expect-error: the type requires a secret too
      expect(() => createTollbooth({})).toThrow(/options\.secret is required/)
    } finally {
      process.env.NODE_ENV = env
    }
  })

  it('checks route options once, at construction', () => {
    const { tb } = setup()
    expect(() => tb.route({ cost: -1 })).toThrow(/tb\.route: options\.cost/)
    expect(() => tb.route({ kind: 'admin' } as never)).toThrow(/tb\.route: options\.kind/)
    expect(() => tb.route({ byok: ['nope'] })).toThrow(/unknown provider "nope"/)
  })
})

describe('warnings', () => {
  it('warns once when X-Forwarded-For arrives with trustProxy off, and never fails the request', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      for (let i = 0; i < 3; i++) {
        const d = await tb.authenticate(
          request(key, { headers: { 'x-forwarded-for': '198.51.100.9' } }),
        )
        expect(d.allowed).toBe(true)
      }
      const calls = warn.mock.calls.filter((c) =>
        String(c[0]).includes('TOLLBOOTH_UNTRUSTED_FORWARDED_FOR'),
      )
      expect(calls).toHaveLength(1)
    } finally {
      warn.mockRestore()
    }
  })
})
