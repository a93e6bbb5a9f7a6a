/**
 * @module test/storage/redis-account-upgrade
 *
 * A Redis account as versions before each closed month's figures were kept stored it (its
 * JSON without `closedPeriods`, rolled over into February by that version): nothing to
 * upgrade; January, closed before, shows no carryover nor balance, February, closed after,
 * its figures as its rollover closed it.
 */

import type { Redis } from 'ioredis'
import { afterAll, describe, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import { expectUpgradedAccount, OLD_ACCOUNT } from '../support/account-upgrade.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'

const client = await connectRedis()

describe.skipIf(!client)('a Redis account of the previous version', () => {
  const redis: Redis = client!
  const prefix = testPrefix('account-upgrade')
  afterAll(async () => {
    await deletePrefix(redis, prefix)
    redis.disconnect()
  })

  it('reads a month closed before as unknown, and keeps the next one closed', async () => {
    const a = OLD_ACCOUNT
    const old = {
      id: a.id,
      tier: null,
      carryover: a.carryover,
      periodStart: a.periodStart,
      tierExpiresAt: null,
      billingCustomerId: null,
      metadata: {},
    }
    await redis.hset(`${prefix}account:${a.id}`, 'j', JSON.stringify(old), 'b', String(a.balance))
    const storage = redisStorage({ client: redis, keyPrefix: prefix })
    await storage.usage.record([
      makeEvent({ accountId: a.id, time: a.janHour, units: a.janUnits, category: 'tts' }),
    ])
    await expectUpgradedAccount(storage)
  })
})
