/**
 * @module test/package/options
 *
 * One format for a bad option, whatever the factory: each is validated by the core's
 * `parseOptions` and throws a `ConfigError` that names the factory, the option, what it must
 * be and what it got. One bad option per factory here; the suites of each factory test
 * the rest.
 */

import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { Pool } from 'pg'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requireApiKey as expressGuard } from '../../adapters/express/index.js'
import { mountFetch as expressMount } from '../../adapters/express/mount.js'
import { requireApiKey as fastifyGuard } from '../../adapters/fastify/index.js'
import { mountFetch as fastifyMount } from '../../adapters/fastify/mount.js'
import { requireApiKey as honoGuard } from '../../adapters/hono/index.js'
import { managementApi } from '../../adapters/management/index.js'
import { portal } from '../../adapters/portal/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage, upgradeUsageTotals } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { stripeBilling } from '../../adapters/stripe/index.js'
import type { Admission } from '../../src/decision.js'
import {
  ConfigError,
  createTollbooth,
  isTollboothError,
  memoryStorage,
  providerVerifiers,
  type Tollbooth,
  type TollboothRequest,
} from '../../src/index.js'
import { serveHono } from '../support/servers.js'

const SECRET = 'options-suite-secret-0123456789abcdefghij'

function thrown(f: () => unknown): ConfigError {
  try {
    f()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).code).toBe('config_invalid')
    return err as ConfigError
  }
  throw new Error('nothing thrown')
}

describe('a bad option', () => {
  const tb = createTollbooth({ secret: SECRET, plans: { pro: { monthlyCredits: 100 } } })
  const client = new Redis({ lazyConnect: true })
  const pool = new Pool({ max: 1 })

  it.each<[string, () => unknown, string]>([
    [
      'createTollbooth',
      () => createTollbooth({ secret: SECRET, storageTimeoutMs: 0 }),
      'createTollbooth: options.storageTimeoutMs must be an integer >= 1 (milliseconds), got 0',
    ],
    [
      'createTollbooth, an unknown option',
      () => createTollbooth({ secret: SECRET, sekret: 1 } as never),
      'createTollbooth: options.sekret is not an option',
    ],
    [
      'createTollbooth, a secret (never shown)',
      () => createTollbooth({ secret: 'hunter2' }),
      'createTollbooth: options.secret must be at least 32 characters (e.g. `openssl rand -base64 32`), got a string of 7 characters',
    ],
    ['route options', () => tb.route({ cost: -1 }), 'tb.route: options.cost must be >= 0, got -1'],
    [
      'memoryStorage',
      () => memoryStorage({ maxEvents: 0 }),
      'memoryStorage: options.maxEvents must be an integer >= 1, got 0',
    ],
    [
      // Before: taken, and a call that waited 250 ms for the client was sent after its
      // caller had been answered 503 at 200 ms.
      'createTollbooth, a storageTimeoutMs not above the storage’s wait before sending',
      () =>
        createTollbooth({
          secret: SECRET,
          storage: redisStorage({ client, reconnectWaitMs: 250 }),
          storageTimeoutMs: 200,
        }),
      "createTollbooth: options.storageTimeoutMs must be above the storage's redisStorage({ reconnectWaitMs }), 250 ms (a call of the storage may be sent, or commit, that long after it was made: after its caller was answered 503) (milliseconds), got 200",
    ],
    [
      // Before: taken, and an admission waiting on a row lock committed after its caller had
      // been answered 503 (test/fault/postgres-deadline). Without the option, the deadline
      // follows storageTimeoutMs.
      'createTollbooth, a storageTimeoutMs not above postgresStorage’s statementTimeoutMs',
      () =>
        createTollbooth({
          secret: SECRET,
          storage: postgresStorage({ pool, statementTimeoutMs: 1750 }),
          storageTimeoutMs: 1000,
        }),
      "createTollbooth: options.storageTimeoutMs must be above the storage's postgresStorage({ statementTimeoutMs }), 1750 ms (a call of the storage may be sent, or commit, that long after it was made: after its caller was answered 503) (milliseconds), got 1000",
    ],
    [
      // The README's combination: PostgreSQL for keys and usage, Redis counting. The
      // storage's sendWait is PostgreSQL's (none); the counters' wait was not seen.
      'createTollbooth, Redis counters in a PostgreSQL storage, storageTimeoutMs not above their reconnectWaitMs',
      () =>
        createTollbooth({
          secret: SECRET,
          storage: {
            ...postgresStorage({ pool }),
            counters: redisStorage({ client, reconnectWaitMs: 250 }).counters,
          },
          storageTimeoutMs: 200,
        }),
      "createTollbooth: options.storageTimeoutMs must be above the storage's redisStorage({ reconnectWaitMs }), 250 ms (a call of the storage may be sent, or commit, that long after it was made: after its caller was answered 503) (milliseconds), got 200",
    ],
    [
      'redisStorage',
      () => redisStorage({ client, settleBatchMs: -1 }),
      'redisStorage: options.settleBatchMs must be an integer >= 0 (milliseconds), got -1',
    ],
    [
      'postgresStorage',
      () => postgresStorage({ pool, statementTimeoutMs: 1.5 }),
      'postgresStorage: options.statementTimeoutMs must be an integer >= 1 (milliseconds), got 1.5',
    ],
    [
      'sqliteStorage',
      () => sqliteStorage({ path: ':memory:', busyTimeoutMs: -1 }),
      'sqliteStorage: options.busyTimeoutMs must be an integer >= 0 (milliseconds), got -1',
    ],
    [
      'stripeBilling',
      () =>
        stripeBilling(tb, {
          stripe: new Stripe('sk_test_options'),
          webhookSecret: 'whsec_options',
          tiers: { pro: { priceId: 'price_pro' } },
          toleranceSec: -5,
        }),
      'stripeBilling: options.toleranceSec must be an integer >= 1 (seconds), got -5',
    ],
    [
      // Past 2^31 - 1 ms, Node runs a timer after 1 ms: a healing pass every millisecond.
      'stripeBilling, healing interval past a timer',
      () =>
        stripeBilling(tb, {
          stripe: new Stripe('sk_test_options'),
          webhookSecret: 'whsec_options',
          tiers: { pro: { priceId: 'price_pro' } },
          meterEventName: 'api_overage',
          meter: { healIntervalMs: 30 * 86_400_000 },
        }),
      'stripeBilling: options.meter.healIntervalMs must be an integer from 0 to 2147483647 (milliseconds), got 2592000000',
    ],
    [
      'managementApi',
      () => managementApi(tb, { uniqueKeyNames: 'yes' as never }),
      'managementApi: options.uniqueKeyNames must be a boolean, got "yes"',
    ],
    [
      'managementApi, session options',
      () => managementApi(tb, { auth: { session: { secret: SECRET, clockToleranceMs: -1 } } }),
      'managementApi: options.auth.session.clockToleranceMs must be an integer from 0 to 3600000 (milliseconds), got -1',
    ],
    [
      'managementApi, not a tollbooth instance',
      () => managementApi({} as never),
      'managementApi: tb must be a tollbooth instance from createTollbooth(), got an object',
    ],
    [
      'portal',
      () => portal(tb, { authenticate: () => null, secureCookies: 'sometimes' as never }),
      'portal: options.secureCookies must be a boolean or "auto", got "sometimes"',
    ],
  ])('%s', (_, make, message) => {
    expect(thrown(make).message).toBe(message)
  })

  // The string given by mistake where a client goes is the URL or key it should have been made
  // from: its password, or the Stripe secret key, was quoted in the error (57 characters of it).
  const PASSWORD = 'Pg-Passw0rd-never-shown'
  const STRIPE_KEY = `sk_test_51${'Qx7'.repeat(30)}`
  it.each<[string, () => unknown, string]>([
    [
      'postgresStorage, a connection URL for the pool',
      () => postgresStorage({ pool: `postgres://app:${PASSWORD}@db.internal:5432/prod` as never }),
      'postgresStorage: options.pool must be a pg Pool (new Pool({ connectionString })), got a string of 60 characters',
    ],
    [
      'redisStorage, a Redis URL for the client',
      () => redisStorage({ client: `redis://:${PASSWORD}@cache.internal:6379` as never }),
      'redisStorage: options.client must be an ioredis Redis or Cluster instance, got a string of 52 characters',
    ],
    [
      'createTollbooth, a Redis URL for the storage',
      () => createTollbooth({ secret: SECRET, storage: `rediss://u:${PASSWORD}@c:6380` as never }),
      'createTollbooth: options.storage must be a Storage (keys, counters, usage, accounts, secrets, ipBlocks), e.g. memoryStorage(), got a string of 41 characters',
    ],
    [
      'sqliteStorage, a libsql URL for the database',
      () => sqliteStorage({ database: `libsql://db.turso.io?authToken=${PASSWORD}` as never }),
      'sqliteStorage: options.database must be a better-sqlite3 or libsql Database (new Database(path)), got a string of 54 characters',
    ],
    [
      'stripeBilling, the secret key for the client',
      () =>
        stripeBilling(tb, {
          stripe: STRIPE_KEY as never,
          webhookSecret: 'whsec_options',
          tiers: { pro: { priceId: 'price_pro' } },
        }),
      'stripeBilling: options.stripe must be a Stripe client (new Stripe(process.env.STRIPE_SECRET_KEY)), got a string of 100 characters',
    ],
    [
      'portal, the session secret for the session options',
      () => portal(tb, { session: PASSWORD as never }),
      `portal: options.session must be an object, got a string of ${PASSWORD.length} characters`,
    ],
    [
      'managementApi, the session secret for the session options',
      () => managementApi(tb, { auth: { session: PASSWORD as never } }),
      `managementApi: options.auth.session must be an object, got a string of ${PASSWORD.length} characters`,
    ],
    [
      'managementApi, the Stripe key for the billing provider',
      () => managementApi(tb, { billing: STRIPE_KEY as never }),
      'managementApi: options.billing must be a BillingProvider with checkout, portal and webhook, e.g. stripeBilling(tb, …), got a string of 100 characters',
    ],
    [
      'managementApi, a URL with a password in a text option',
      () =>
        managementApi(tb, {
          auth: { session: { jwksUrl: `ftp://keys:${PASSWORD}@idp.internal/jwks.json` } },
        }),
      'managementApi: options.auth.session.jwksUrl must be a valid URL, got "ftp://***@idp.internal/jwks.json"',
    ],
  ])('never shows a password or key: %s', (_, make, message) => {
    const text = thrown(make).message
    expect(text).toBe(message)
    expect(text).not.toContain(PASSWORD)
    expect(text).not.toContain(STRIPE_KEY.slice(0, 16))
  })

  it('is named the same way by an async factory', async () => {
    const err = await upgradeUsageTotals({ client, keyPrefix: '{x}' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toBe(
      'upgradeUsageTotals: options.keyPrefix must be a string without braces (tollbooth sets the hash tags), got "{x}"',
    )
  })

  it('lists every bad option of one call', () => {
    const err = thrown(() =>
      createTollbooth({ secret: SECRET, failOpen: 'no' as never, usage: { maxBatch: 0 } }),
    )
    expect(err.message).toBe(
      'createTollbooth: options.failOpen must be a boolean, got "no"; options.usage.maxBatch must be an integer >= 1, got 0',
    )
  })
})

/**
 * A bad argument given in code (to a method, or returned by a function given as an option) is
 * a ConfigError in the format of a bad option: `<function>: <argument> must …, got …`, a string
 * shown by its length only. Each of these was a TypeError or a RangeError, in its own wording
 * (`charge(units): units must be a finite number >= 0, got NaN`) or JavaScript's (`Cannot read
 * properties of undefined`), or was taken without a word (a listener that is no function).
 */
describe('a bad argument', () => {
  const tb = createTollbooth({ secret: SECRET })
  let key = ''
  let apiKey: Admission
  const request = (): TollboothRequest => ({
    headers: { authorization: `Bearer ${key}` },
    ip: '127.0.0.1',
    method: 'POST',
    path: '/v1/chat',
  })
  beforeAll(async () => {
    key = (await tb.keys.create({ accountId: 'acct_args', name: 'args' })).key
    const d = await tb.authenticate(request())
    if (!d.allowed) throw new Error(`not admitted: ${d.message}`)
    apiKey = d
  })
  /** What `f` throws or rejects with, as `code: message` when it is a tollbooth error. */
  async function refusal(f: () => unknown): Promise<unknown> {
    try {
      await f()
    } catch (err) {
      return isTollboothError(err) ? `${err.code}: ${err.message}` : err
    }
    return 'not refused'
  }
  const price = (cost: unknown) => tb.route({ cost: () => cost as number })
  /**
   * What the management API or the portal, given an `authenticate` option that returns `who`,
   * reports to `onError` for a request it answers 500 `internal_error` (over HTTP).
   */
  async function reported(
    mount: (tb: Tollbooth, who: () => never) => Hono,
    paths: string[],
    who: unknown,
  ) {
    const seen: unknown[] = []
    const t = createTollbooth({ secret: SECRET, onError: (err) => seen.push(err) })
    const served = await serveHono(
      new Hono().route(
        '/',
        mount(t, () => who as never),
      ),
    )
    try {
      for (const path of paths) {
        const res = await fetch(`${served.url}${path}`)
        expect([res.status, await res.json()]).toEqual([
          500,
          { error: 'Internal server error', code: 'internal_error' },
        ])
      }
    } finally {
      await served.close()
      await t.close()
    }
    // Each path reports the same error.
    expect(seen.map((e) => (e as Error).message)).toEqual(
      paths.map(() => (seen[0] as Error).message),
    )
    throw seen[0]
  }
  const management = (who: unknown) =>
    reported((t, authenticate) => managementApi(t, { auth: { authenticate } }), ['/keys'], who)
  const inPortal = (who: unknown) =>
    reported((t, authenticate) => portal(t, { authenticate }), ['/api/session', '/api/keys'], who)
  const record = { tier: 'pro', tierExpiresAt: null, balance: 5, carryover: 0 }
  const keyId = async () => (await tb.keys.list('acct_args')).data[0]!.id
  let billing: ReturnType<typeof stripeBilling> | undefined
  const billingOf = () =>
    (billing ??= stripeBilling(
      createTollbooth({ secret: SECRET, plans: { pro: { monthlyCredits: 1 } } }),
      {
        stripe: new Stripe('sk_test_options_suite', { maxNetworkRetries: 0 }),
        webhookSecret: 'whsec_options_suite_0001',
        tiers: { pro: { priceId: 'price_pro' } },
      },
    ))
  afterAll(async () => {
    await billing?.close()
  })

  it.each<[string, () => unknown, string]>([
    [
      'charge(NaN)',
      () => apiKey.charge(Number.NaN),
      'apiKey.charge: units must be a finite number >= 0, got NaN',
    ],
    [
      'charge(-1)',
      () => apiKey.charge(-1),
      'apiKey.charge: units must be a finite number >= 0, got -1',
    ],
    [
      'charge(text)',
      () => apiKey.charge('12' as never),
      'apiKey.charge: units must be a finite number >= 0, got a string of 2 characters',
    ],
    [
      'report()',
      () => apiKey.report(undefined as never),
      'apiKey.report: report must be an object, got undefined',
    ],
    [
      'report cost',
      () => apiKey.report({ cost: -1 }),
      'apiKey.report: report.cost must be a finite number >= 0, got -1',
    ],
    [
      'report tokens',
      () => apiKey.report({ tokens: Infinity }),
      'apiKey.report: report.tokens must be a finite number >= 0, got Infinity',
    ],
    [
      'report provider',
      () => apiKey.report({ provider: 42 as never }),
      'apiKey.report: report.provider must be a string, got 42',
    ],
    [
      'report category',
      () => apiKey.report({ category: null as never }),
      'apiKey.report: report.category must be a string, got null',
    ],
    [
      'providerKey',
      () => apiKey.providerKey(undefined as never),
      'apiKey.providerKey: provider must be a string, got undefined',
    ],
    [
      'keys.addRule',
      () => tb.keys.addRule({} as never),
      'tb.keys.addRule: rule must be a function of the key draft, got an object',
    ],
    [
      'a cost function',
      () => tb.authenticate(request(), price(Number.NaN)),
      'tb.route: options.cost(request) must return a finite number >= 0, got NaN',
    ],
    [
      'a cost function, text',
      () => tb.authenticate(request(), price('sk-9')),
      'tb.route: options.cost(request) must return a finite number >= 0, got a string of 4 characters',
    ],
    [
      'a tokens function',
      () => tb.authenticate(request(), tb.route({ tokens: () => -2 })),
      'tb.route: options.tokens(request) must return a finite number >= 0, got -2',
    ],
    [
      'providerVerifiers timeout',
      () => providerVerifiers({ timeoutMs: 0 }),
      'providerVerifiers: options.timeoutMs must be an integer >= 1 (milliseconds), got 0',
    ],
    [
      'providerVerifiers base URL',
      () => providerVerifiers({ baseUrls: { openai: '127.0.0.1:8080' } }),
      'providerVerifiers: options.baseUrls.openai must be an http(s) URL, got "127.0.0.1:8080"',
    ],
    [
      'providerVerifiers, an unknown option',
      () => providerVerifiers({ timeout: 100 } as never),
      'providerVerifiers: options.timeout is not an option',
    ],
    [
      'express mountFetch',
      () => expressMount(42 as never),
      'mountFetch: handler must be a function of a Request, e.g. app.fetch, got 42',
    ],
    [
      'fastify mountFetch, a URL',
      () => fastifyMount('https://u:pw@api.internal' as never),
      'mountFetch: handler must be a function of a Request, e.g. app.fetch, got a string of 25 characters',
    ],
    [
      'authenticate, no request',
      () => tb.authenticate(undefined as never),
      'tb.authenticate: request must be a request ({ headers, ip, method, path }), got undefined',
    ],
    [
      'authenticate, route options for the route',
      () => tb.authenticate(request(), { cost: 5 } as never),
      'tb.authenticate: route must be a route from tb.route(options), got an object',
    ],
    [
      'decide, a route name for the route',
      () => tb.decide(request(), 'chat' as never),
      'tb.decide: route must be a route from tb.route(options), got a string of 4 characters',
    ],
    [
      'settle, no outcome',
      () => tb.settle(apiKey, undefined as never),
      'tb.settle: outcome must be an outcome ({ status }), got undefined',
    ],
    [
      'settle, no decision',
      () => tb.settle(undefined as never, { status: 200 }),
      'tb.settle: decision must be a decision of tb.authenticate(), got undefined',
    ],
    [
      'onUsageFlushed',
      () => tb.onUsageFlushed(undefined as never),
      'tb.onUsageFlushed: listener must be a function of the batch of usage events, got undefined',
    ],
    [
      'onUsageWriting',
      () => tb.onUsageWriting('audit' as never),
      'tb.onUsageWriting: listener must be a function of the batch of usage events, got a string of 5 characters',
    ],
    [
      // Taken, then a TypeError on every request (each answered 500).
      'requireApiKey of hono, a header name for socketAddress',
      () => honoGuard(tb, { socketAddress: 'x-real-ip' as never }),
      'requireApiKey: options.socketAddress must be a function of the Hono context, e.g. (c) => getConnInfo(c).remote.address, got a string of 9 characters',
    ],
    [
      'managementApi, authenticate returning a bad accountId',
      () => management({ accountId: 'acct 1' }),
      'managementApi: options.auth.authenticate(request).accountId must be 1-128 of A-Z a-z 0-9 . _ : @ | -, got a string of 6 characters',
    ],
    [
      'managementApi, authenticate returning an id alone',
      () => management('acct_1'),
      'managementApi: options.auth.authenticate(request) must return { accountId }, null or undefined, got a string of 6 characters',
    ],
    [
      'portal, authenticate returning a bad accountId',
      () => inPortal({ accountId: 42 }),
      'portal: options.authenticate(request).accountId must be 1-128 of A-Z a-z 0-9 . _ : @ | -, got 42',
    ],
    [
      'portal, authenticate returning an id alone',
      () => inPortal(true),
      'portal: options.authenticate(request) must return { accountId }, null or undefined, got true',
    ],
    [
      'accounts.effectiveTier, no record',
      () => tb.accounts.effectiveTier(undefined as never, 0),
      'tb.accounts.effectiveTier: record must be an account record, got undefined',
    ],
    [
      'accounts.effectiveTier, a time as text',
      () => tb.accounts.effectiveTier(record as never, '2026-01-01' as never),
      'tb.accounts.effectiveTier: now must be a time (ms since 1970), got a string of 10 characters',
    ],
    [
      'accounts.creditLimit, an account id for the record',
      () => tb.accounts.creditLimit('acct_1' as never, null),
      'tb.accounts.creditLimit: record must be an account record, got a string of 6 characters',
    ],
    [
      'accounts.creditLimit, a record without its figures',
      () => tb.accounts.creditLimit({ tier: null } as never, null),
      'tb.accounts.creditLimit: record must be an account record, got an object',
    ],
    [
      'accounts.creditLimit, a tier name for the plan',
      () => tb.accounts.creditLimit(record as never, 'pro' as never),
      'tb.accounts.creditLimit: plan must be a plan (tb.options.plans[tier]) or null, got a string of 3 characters',
    ],
    [
      // Before, the misspelt name went unread: the key was answered, whatever its account.
      'keys.get, a misspelt scope',
      async () => tb.keys.get(await keyId(), { accountID: 'acct_other' } as never),
      'tb.keys.get: scope.accountID is not an option',
    ],
    [
      'usage.logs, a misspelt scope',
      async () => tb.usage.logs(await keyId(), {}, { account: 'acct_other' } as never),
      'tb.usage.logs: scope.account is not an option',
    ],
    [
      // An account id read from a session or `res.locals` that was never set (`as string`, as
      // examples/pdf-api writes it): before, the key was revoked whatever its account.
      'keys.revoke, a scope whose accountId is undefined',
      async () => tb.keys.revoke(await keyId(), { accountId: undefined as unknown as string }),
      'tb.keys.revoke: scope.accountId must be 1-128 of A-Z a-z 0-9 . _ : @ | -, got undefined',
    ],
    [
      'usage.logs, a scope whose accountId is undefined',
      async () => tb.usage.logs(await keyId(), {}, { accountId: undefined as unknown as string }),
      'tb.usage.logs: scope.accountId must be 1-128 of A-Z a-z 0-9 . _ : @ | -, got undefined',
    ],
    [
      'keys.revoke, an account id for the scope',
      async () => tb.keys.revoke(await keyId(), 'acct_args' as never),
      'tb.keys.revoke: scope must be an object, got a string of 9 characters',
    ],
    [
      'keys.update, a bad account id in the scope',
      async () => tb.keys.update(await keyId(), { name: 'n' }, { accountId: 'a b' }),
      'tb.keys.update: scope.accountId must be 1-128 of A-Z a-z 0-9 . _ : @ | -, got "a b"',
    ],
    [
      // Before, answered, the string spread as its period (`{"0":"2","1":"0",…}`).
      'accounts.get, a month for the period',
      () => tb.accounts.get('acct_args', '2026-03' as never),
      "tb.accounts.get: period must be a period ({ id, start, end }, e.g. a usage report's period), got a string of 7 characters",
    ],
    [
      // Before, answered with `{ month }` as its period and the credits of no period.
      'accounts.statement, options for the period',
      () => tb.accounts.statement('acct_args', { month: '2026-03' } as never),
      "tb.accounts.statement: period must be a period ({ id, start, end }, e.g. a usage report's period), got an object",
    ],
    [
      'billing.handleRequest, no request',
      () => billingOf().handleRequest(undefined as never),
      'billing.handleRequest: request must be a fetch Request (e.g. c.req.raw), got undefined',
    ],
    [
      'billing.handleRequest, Express request options',
      () => billingOf().handleRequest({ body: {}, headers: {} } as never),
      'billing.handleRequest: request must be a fetch Request (e.g. c.req.raw), got an object',
    ],
    // Checked before it closes anything.
    [
      'close({ waitMs: -1 })',
      () => tb.close({ waitMs: -1 }),
      'tb.close: options.waitMs must be an integer >= 0 (milliseconds), got -1',
    ],
    ['close(1)', () => tb.close(1 as never), 'tb.close: options must be an object, got 1'],
    // A misspelt name (the wait of a SIGTERM handler) was taken as none: 10 s waited.
    [
      'close({ wait: 0 })',
      () => tb.close({ wait: 0 } as never),
      'tb.close: options.wait is not an option',
    ],
    [
      'close({ waitMs: 1.5 })',
      () => tb.close({ waitMs: 1.5 }),
      'tb.close: options.waitMs must be an integer >= 0 (milliseconds), got 1.5',
    ],
    // The route's options given where the instance goes (tb left out).
    ...[honoGuard, expressGuard, fastifyGuard].map((guard, i): [string, () => unknown, string] => [
      `requireApiKey of ${['hono', 'express', 'fastify'][i]}, options for tb`,
      () => guard({ cost: 1 } as never),
      'requireApiKey: tb must be a tollbooth instance from createTollbooth(), got an object',
    ]),
  ])('%s', async (_, call, message) => {
    expect(await refusal(call)).toBe(`config_invalid: ${message}`)
  })
})
