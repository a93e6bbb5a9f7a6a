/**
 * @module test/regressions/hostile-input-stores
 *
 * Values the programmatic API and the management API took without a check, on every store
 * (memory, SQLite, Redis, PostgreSQL): each is now refused with an `InvalidRequestError` (a
 * 400 naming the field over HTTP) before a store sees it, so no store keeps what another
 * refuses and nothing is written.
 *
 * - An instant beyond what a `Date` holds (a time block's end, a key's `expiresAt` in ms):
 *   stored, after which every view of the key (`GET /keys`, `GET /keys/:id`) threw
 *   `Invalid time value`, a 500 for the whole account's key list.
 * - `tb.ipBlocks`' limit, cursor and address, and `GET /ip-blocks?cursor=`: a NUL answered
 *   500 on PostgreSQL only (`invalid byte sequence`), a limit of -5 or 1.5 threw a different
 *   error on each store (a `TypeError` on memory, a `RangeError`, a database error).
 * - A query parameter named `__proto__` (`GET /keys?__proto__=1`, the portal's
 *   `/api/usage/daily?__proto__=1`): set the prototype of the record the query was read into
 *   instead of a field, so the strict query schemas never saw it and the request was served
 *   as if it were not there (`DELETE /keys/:id?permanent=true&__proto__=1` deleted the key),
 *   where any other unknown parameter (`?constructor=1`) is a 400 naming it.
 * - `tb.accounts.setTier`'s `expiresAt` (1.5, NaN, a string, 1e300) and `addCredits` of
 *   1e308 twice: PostgreSQL refused them with a database error after the account was made,
 *   the other stores kept them (a tier expiring at NaN, a balance of Infinity).
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { portal } from '../../adapters/portal/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import {
  InvalidRequestError,
  memoryStorage,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import { client, makeTollbooth, type Served, serveManagement } from '../management/servers.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { serveHono } from '../support/servers.js'

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
    name: 'sqlite',
    skip: false,
    make: async () => ({ storage: sqliteStorage({ path: ':memory:' }), cleanup: async () => {} }),
  },
  {
    name: 'redis',
    skip: redis === null,
    make: async () => {
      const prefix = testPrefix('hostile')
      return {
        storage: redisStorage({ client: redis!, keyPrefix: prefix }),
        cleanup: async () => {
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
      return { storage: postgresStorage({ pool: pgPool, schema }), cleanup: drop }
    },
  },
]

afterAll(async () => {
  await pgPool?.end()
  await redis?.quit()
})

/** The paths of the issues of an `InvalidRequestError` `err`, failing if it is not one. */
function issuePaths(err: unknown): string[] {
  expect(err).toBeInstanceOf(InvalidRequestError)
  return (err as InvalidRequestError).issues.map((i) => i.path)
}

/** The latest instant a `Date` holds, in ms since 1970 (ECMAScript's time value bound). */
const DATE_MAX = 8.64e15

for (const store of STORES) {
  describe.skipIf(store.skip)(`hostile values on ${store.name}`, () => {
    let tb: Tollbooth
    let storage: Storage
    let served: Served
    let cleanup: () => Promise<void>
    let api: ReturnType<typeof client>
    let mk: string
    /** A management key of the operator (scope `ip-blocks`). */
    let opk: string
    let keyId: string
    let before: unknown

    beforeAll(async () => {
      const s = await store.make()
      cleanup = s.cleanup
      storage = s.storage
      tb = makeTollbooth({ storage }).tb
      served = await serveManagement('hono', tb)
      api = client(served)
      mk = (await tb.keys.create({ accountId: 'acct_h', kind: 'management' })).key
      opk = (
        await tb.keys.create({ accountId: 'acct_op', kind: 'management', scopes: ['ip-blocks'] })
      ).key
      const created = await api('POST', '/keys', { token: mk, json: { name: 'Good' } })
      expect(created.status).toBe(201)
      keyId = created.body.id
      before = (await api('GET', '/keys', { token: mk })).body
    })

    afterAll(async () => {
      await served?.close()
      await tb?.close()
      await cleanup?.()
    })

    /** The account's keys list as before, and the key reads as before. */
    async function unchanged() {
      const list = await api('GET', '/keys', { token: mk })
      expect(list.status, list.text).toBe(200)
      expect(list.body).toEqual(before)
    }

    it('a time block past the last instant a Date holds: 400 naming it, nothing stored', async () => {
      for (const end of [DATE_MAX + 1, Number.MAX_SAFE_INTEGER]) {
        const limits = { timeBlocks: [{ start: 0, end }] }
        const patch = await api('PATCH', `/keys/${keyId}`, { token: mk, json: { limits } })
        expect(patch.status, patch.text).toBe(400)
        expect(patch.body.issues.map((i: { path: string }) => i.path)).toEqual([
          'limits.timeBlocks.0.end',
        ])
        const post = await api('POST', '/keys', { token: mk, json: { limits } })
        expect(post.status, post.text).toBe(400)
        await unchanged()
        const err = await tb.keys.create({ accountId: 'acct_h', limits }).catch((e) => e)
        expect(issuePaths(err)).toEqual(['limits.timeBlocks.0.end'])
        await unchanged()
      }
      // The last instant itself is a time block like any other.
      const last = await api('PATCH', `/keys/${keyId}`, {
        token: mk,
        json: { limits: { timeBlocks: [{ start: 0, end: DATE_MAX }] } },
      })
      expect(last.status, last.text).toBe(200)
      expect(last.body.limits.timeBlocks).toEqual([
        { start: '1970-01-01T00:00:00.000Z', end: '+275760-09-13T00:00:00.000Z' },
      ])
      const reset = await api('PATCH', `/keys/${keyId}`, { token: mk, json: { limits: {} } })
      expect(reset.status, reset.text).toBe(200)
      await unchanged()
    })

    it('a key expiring past the last instant a Date holds: refused by tb.keys', async () => {
      for (const expiresAt of [DATE_MAX + 1, Number.MAX_SAFE_INTEGER]) {
        const err = await tb.keys.create({ accountId: 'acct_h', expiresAt }).catch((e) => e)
        expect(issuePaths(err)).toEqual(['expiresAt'])
        const upd = await tb.keys.update(keyId, { expiresAt }).catch((e) => e)
        expect(issuePaths(upd)).toEqual(['expiresAt'])
        await unchanged()
      }
    })

    it('an expiry before 1970 or not an instant: refused naming expiresAt, in one message', async () => {
      const bad: unknown[] = [-1, 1.5, Number.NaN, new Date(-1), new Date('x')]
      for (const expiresAt of [...bad, '0000-01-01T00:00:00Z', 'soon']) {
        for (const call of [
          () => tb.keys.create({ accountId: 'acct_h', expiresAt: expiresAt as number }),
          () => tb.keys.update(keyId, { expiresAt: expiresAt as number }),
        ]) {
          const err = await call().catch((e) => e)
          expect(issuePaths(err), String(expiresAt)).toEqual(['expiresAt'])
          // The field's own rule, not zod's "Invalid input" of a union of three forms.
          expect((err as InvalidRequestError).issues[0]!.message).toMatch(/ms since 1970/)
        }
      }
      for (const expiresAt of ['0000-01-01T00:00:00Z', '1969-12-31T23:59:59.999Z']) {
        const post = await api('POST', '/keys', { token: mk, json: { name: 'Old', expiresAt } })
        expect(post.status, post.text).toBe(400)
        expect(post.body.issues).toEqual([
          { path: 'expiresAt', message: 'must not be before 1970-01-01T00:00:00Z' },
        ])
        const patch = await api('PATCH', `/keys/${keyId}`, { token: mk, json: { expiresAt } })
        expect(patch.status, patch.text).toBe(400)
      }
      await unchanged()
    })

    it('a scope given twice is kept once, in the order given', async () => {
      const scopes = ['usage', 'keys', 'usage', 'keys']
      const made = await tb.keys.create({ accountId: 'acct_s', kind: 'management', scopes })
      expect(made.record.scopes).toEqual(['usage', 'keys'])
      const updated = await tb.keys.update(made.record.id, { scopes: ['a', 'a'] })
      expect(updated.scopes).toEqual(['a'])
      expect((await tb.keys.get(made.record.id))?.scopes).toEqual(['a'])
    })

    it('a provider key with a control character: 400 naming apiKey, never echoing it, nothing stored', async () => {
      const listed = (await api('GET', '/provider-keys', { token: mk })).body
      for (const apiKey of ['sk-abcdefgh\r\nX-Evil: 1', 'sk-abcdefgh\tx', 'sk-abcdefgh\u007f']) {
        const r = await api('POST', '/provider-keys', {
          token: mk,
          json: { provider: 'openai', apiKey },
        })
        expect(r.status, r.text).toBe(400)
        expect(r.body.issues.map((i: { path: string }) => i.path)).toEqual(['apiKey'])
        expect(r.text).not.toContain('abcdefgh')
        const err = await tb.providerKeys
          .store('acct_h', { provider: 'openai', apiKey })
          .catch((e) => e)
        expect(issuePaths(err)).toEqual(['apiKey'])
        expect(String(err.message)).not.toContain('abcdefgh')
      }
      expect((await api('GET', '/provider-keys', { token: mk })).body).toEqual(listed)
    })

    it('a bad limit, cursor or address of tb.ipBlocks: an InvalidRequestError naming it', async () => {
      for (const [options, field] of [
        [{ limit: -5 }, 'limit'],
        [{ limit: 0 }, 'limit'],
        [{ limit: 1.5 }, 'limit'],
        [{ limit: Number.NaN }, 'limit'],
        [{ limit: 101 }, 'limit'],
        [{ cursor: '\u0000' }, 'cursor'],
        [{ cursor: 'a\ud800' }, 'cursor'],
        [{ cursor: 'x'.repeat(65) }, 'cursor'],
        [{ lmit: 5 }, '(root)'],
      ] as const) {
        const err = await tb.ipBlocks.list(options as never).catch((e) => e)
        expect(issuePaths(err), JSON.stringify(options)).toEqual([field])
      }
      for (const ip of ['\u0000', '1.2.3.4\u0000', 'a\ud800', 'not an ip', '', 5]) {
        for (const call of [tb.ipBlocks.get, tb.ipBlocks.lift]) {
          const err = await call(ip as never).catch((e: unknown) => e)
          expect(issuePaths(err), JSON.stringify(ip)).toEqual(['(ip)'])
        }
      }
      expect(await tb.ipBlocks.list({ limit: 100, cursor: null })).toEqual({
        data: [],
        nextCursor: null,
      })
      expect(await tb.ipBlocks.get('2001:DB8::1')).toBeNull()
    })

    it('an address is looked up and lifted as the guard keys it (IPv4-mapped IPv6 as IPv4)', async () => {
      const { tb: guarded } = makeTollbooth({ storage, failedAuth: { limit: 2 } })
      const bad = { headers: { authorization: 'Bearer nope' }, method: 'GET', path: '/v1/x' }
      for (let i = 0; i < 2; i++)
        await guarded.authenticate({ ...bad, ip: '::ffff:203.0.113.9' }, guarded.route())
      expect((await guarded.ipBlocks.get('203.0.113.9'))?.ip).toBe('203.0.113.9')
      expect((await guarded.ipBlocks.get('::FFFF:203.0.113.9'))?.ip).toBe('203.0.113.9')
      expect(await guarded.ipBlocks.lift('::ffff:203.0.113.9')).toBe(true)
      expect(await guarded.ipBlocks.get('203.0.113.9')).toBeNull()
      await guarded.close()
    })

    it('GET /ip-blocks with a NUL or a lone surrogate in the cursor: 400 naming it', async () => {
      for (const cursor of ['%00', 'a%00', '%ED%A0%80']) {
        const r = await api('GET', `/ip-blocks?cursor=${cursor}`, { token: opk })
        // `%ED%A0%80` is not UTF-8: the query's decoder makes it U+FFFD, a cursor like any other.
        if (cursor === '%ED%A0%80') {
          expect(r.status, r.text).toBe(200)
          continue
        }
        expect(r.status, `${cursor}: ${r.text}`).toBe(400)
        expect(r.body.issues.map((i: { path: string }) => i.path)).toEqual(['cursor'])
      }
    })

    it('a query parameter named __proto__ or constructor: 400 naming it, nothing changed', async () => {
      const routes: Array<[string, string, string]> = [
        ['GET', '/keys', mk],
        ['GET', '/management-keys', mk],
        ['GET', `/keys/${keyId}`, mk],
        ['GET', `/keys/${keyId}/logs`, mk],
        ['GET', '/usage', mk],
        ['GET', '/provider-keys', mk],
        ['GET', '/billing/subscription', mk],
        ['GET', '/ip-blocks', opk],
        ['DELETE', `/keys/${keyId}`, mk],
        ['DELETE', `/keys/${keyId}?permanent=true`, mk],
      ]
      for (const name of ['__proto__', 'constructor'])
        for (const [method, path, token] of routes) {
          const q = `${path.includes('?') ? '&' : '?'}${name}=1`
          const r = await api(method, `${path}${q}`, { token })
          expect([r.status, r.body], `${method} ${path}${q}`).toEqual([
            400,
            {
              error: `Invalid request query: unknown field(s) "${name}"`,
              code: 'invalid_request',
              issues: [{ path: '(query)', message: `unknown field(s) "${name}"` }],
            },
          ])
        }
      await unchanged()
      expect((await tb.keys.get(keyId))?.revokedAt).toBeNull()
      // The portal reads its own queries the same way.
      const app = portal(tb, { authenticate: () => ({ accountId: 'acct_q' }) })
      const page = await serveHono(app)
      try {
        for (const path of ['/api/usage/daily', '/api/usage', '/api/keys']) {
          const r = await fetch(`${page.url}${path}?__proto__=1`)
          expect([r.status, await r.json()], path).toEqual([
            400,
            {
              error: 'Invalid request query: unknown field(s) "__proto__"',
              code: 'invalid_request',
              issues: [{ path: '(query)', message: 'unknown field(s) "__proto__"' }],
            },
          ])
        }
      } finally {
        await page.close()
      }
    })

    it("keys.delete's options are strict: a misspelt or non-boolean evenIfUsed is refused, the key kept", async () => {
      // Before, each was taken without a word (a non-boolean read as false, a misspelt name
      // unread): the first call deleted the key.
      const { record } = await tb.keys.create({ accountId: 'acct_del', name: 'Kept' })
      const refused = async (options: unknown) =>
        issuePaths(await tb.keys.delete(record.id, {}, options as never).catch((e) => e))
      expect(await refused({ evenIfUsed: 'false' })).toEqual(['evenIfUsed'])
      expect(await refused({ evenIfUsed: 1 })).toEqual(['evenIfUsed'])
      expect(await refused({ evenIfUsd: true })).toEqual(['(root)'])
      expect(await refused('yes')).toEqual(['(root)'])
      expect((await tb.keys.get(record.id)).name).toBe('Kept')
      await tb.keys.delete(record.id, {}, { evenIfUsed: false })
      expect(await tb.keys.get(record.id).catch((e) => e.code)).toBe('not_found')
    })

    it("setTier's expiresAt must be an instant in ms; the account keeps its tier", async () => {
      const account = 'acct_tier'
      await tb.accounts.setTier(account, 'pro', { expiresAt: DATE_MAX })
      for (const expiresAt of [1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e300, 'soon']) {
        const err = await tb.accounts
          .setTier(account, null, { expiresAt: expiresAt as never })
          .catch((e) => e)
        expect(issuePaths(err), String(expiresAt)).toEqual(['expiresAt'])
      }
      const err = await tb.accounts
        .setTier(account, null, { expires: 5 } as never)
        .catch((e: unknown) => e)
      expect(issuePaths(err)).toEqual(['(root)'])
      const a = await tb.accounts.get(account)
      expect([a.tier, a.tierExpiresAt]).toEqual(['pro', DATE_MAX])
      // Never-seen accounts are not made by a refused call.
      const fresh = await tb.accounts
        .setTier('acct_never', 'pro', { expiresAt: 1.5 })
        .catch((e: unknown) => e)
      expect(fresh).toBeInstanceOf(InvalidRequestError)
      expect(await storage.accounts.get('acct_never')).toBeNull()
    })

    it('addCredits beyond 2^53 is refused: a balance never becomes Infinity', async () => {
      const account = 'acct_credits'
      await tb.accounts.addCredits(account, Number.MAX_SAFE_INTEGER)
      for (const amount of [Number.MAX_SAFE_INTEGER + 2, 1e308, Number.MAX_VALUE]) {
        const err = await tb.accounts.addCredits(account, amount).catch((e: unknown) => e)
        expect(issuePaths(err), String(amount)).toEqual(['amount'])
      }
      expect((await tb.accounts.get(account)).balance).toBe(Number.MAX_SAFE_INTEGER)
    })
  })
}
