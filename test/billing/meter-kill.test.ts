/**
 * A process holding metered overage in its meter's queue is killed (SIGKILL, its process
 * group) before it sends any: the next process on the same Redis finds the overage in the
 * meter's journal at start and sends the stand-in Stripe exactly the missing meter events,
 * once each, without anyone calling `reconcile`. Skipped when Redis is down, unless
 * TOLLBOOTH_REQUIRE_SERVICES=1.
 */

import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it, vi } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { stripeBilling } from '../../adapters/stripe/index.js'
import { createTollbooth } from '../../src/internal.js'
import { startInstance } from '../multi-instance/spawn.js'
import { connectRedis, deletePrefix, testPrefix } from '../support/redis.js'
import { type FakeStripe, startFakeStripe } from './stripe-server.js'

const CHILD = fileURLToPath(new URL('./meter-process.ts', import.meta.url))
const SECRET = 'billing-suite-secret-billing-suite-secret-0005'
const redis = await connectRedis()
const prefix = testPrefix('meterkill')
let fake: FakeStripe

beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(async () => {
  await fake.close()
  if (redis) await deletePrefix(redis, prefix)
  await redis?.quit()
})

it.skipIf(!redis)(
  'overage of a killed process reaches Stripe from the next one, once each',
  async () => {
    const account = `acct_${Math.random().toString(36).slice(2, 10)}`
    const child = await startInstance(
      'meter',
      {
        TB_SECRET: SECRET,
        TB_PREFIX: prefix,
        TB_ACCOUNT: account,
        STRIPE_PORT: String(fake.port),
      },
      CHILD,
    )
    const exited = new Promise((r) => child.proc.once('exit', r))
    process.kill(-child.proc.pid!, 'SIGKILL')
    await exited
    await child.stop()
    const meterCalls = () => fake.requests.filter((r) => r.path === '/v1/billing/meter_events')
    expect(meterCalls()).toHaveLength(0) // it died holding all three

    const storage = redisStorage({ client: redis!, keyPrefix: prefix })
    const tb = createTollbooth({
      secret: SECRET,
      storage,
      plans: { pro: { monthlyCredits: 10, allowOverage: true } },
    })
    const billing = stripeBilling(tb, {
      stripe: fake.client(),
      webhookSecret: 'whsec_test_secret_kill_0005',
      tiers: { pro: { priceId: 'price_pro' } },
      meterEventName: 'api_overage',
    })
    try {
      await vi.waitFor(() => expect(fake.meterEvents).toHaveLength(3), { timeout: 10_000 })
      await billing.heal()
      const customer = (await tb.accounts.get(account)).billingCustomerId
      expect(fake.meterEvents.every((e) => e.customer === customer)).toBe(true)
      expect(fake.meterEvents.map((e) => e.value).sort()).toEqual([2, 4, 4])
      expect(meterCalls()).toHaveLength(3) // none sent twice
      // Every admitted request's usage was recorded before the kill, and all of its overage billed.
      const rec = await billing.reconcile(account)
      expect(rec.recorded).toEqual({ events: 3, overage: 10 })
      expect(rec.drift).toBe(0)
      expect((await tb.accounts.get(account)).credits.used).toBe(20)
    } finally {
      await billing.close()
      await tb.close()
    }
  },
  30_000,
)
