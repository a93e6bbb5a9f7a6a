/**
 * @module test/package/options
 *
 * One format for a bad option, whatever the factory: each is validated by the core's
 * `parseOptions` and throws a `ConfigError` that names the factory, the option, what it must
 * be and what it got. One bad option per factory here; the suites of each factory test
 * the rest.
 */

import { Redis } from 'ioredis'
import { Pool } from 'pg'
import Stripe from 'stripe'
import { describe, expect, it } from 'vitest'
import { managementApi } from '../../adapters/management/index.js'
import { portal } from '../../adapters/portal/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage, upgradeUsageTotals } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { stripeBilling } from '../../adapters/stripe/index.js'
import { ConfigError, createTollbooth, memoryStorage } from '../../src/index.js'

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
      'stripeBilling: options.toleranceSec must be an integer >= 0 (seconds), got -5',
    ],
    [
      'managementApi',
      () => managementApi(tb, { uniqueKeyNames: 'yes' as never }),
      'managementApi: options.uniqueKeyNames must be a boolean, got "yes"',
    ],
    [
      'managementApi, session options',
      () => managementApi(tb, { auth: { session: { secret: SECRET, clockToleranceMs: -1 } } }),
      'managementApi: options.auth.session.clockToleranceMs must be an integer >= 0 (milliseconds), got -1',
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
