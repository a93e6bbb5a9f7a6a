/**
 * @module test/fault/webhook-cancel
 *
 * A Stripe `customer.subscription.deleted` whose tier write is lost to a dropped connection:
 * the webhook answers 500 so Stripe retries, and the retry must finish the cancellation (the
 * account back on the default tier). Applying a cancel writes the account's billing state
 * (the subscription, ended) first and its tier second; a connection that drops between the
 * two left the state saying "ended", which the retry took for a cancel already applied: it
 * answered 200 and the account kept the paid tier for good.
 *
 * On a private PostgreSQL: a trigger terminates its own backend (`pg_terminate_backend`, as a
 * failover or an operator would) the first time the account's tier is cleared, so the
 * connection drops in the middle of that one statement.
 */

import { describe, expect, it } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { privateStores } from '../support/fault.js'
import { proSubscription, webhookBilling } from '../support/webhook.js'

const SECRET = 'webhook-cancel-secret-webhook-cancel-secret'
const WHSEC = 'whsec_test_webhook_cancel'
const SCHEMA = 'tb_cancel'

const servers = privateStores()

describe('a subscription cancel whose tier write is lost', () => {
  it('answers 500, and the retry puts the account back on the default tier', async (ctx) => {
    const pool = servers.pool(await servers.postgres(ctx), { max: 4, connectionTimeoutMillis: 0 })
    await migrate({ pool, schema: SCHEMA })
    const storage = postgresStorage({ pool, schema: SCHEMA })
    const { tb, deliver } = webhookBilling(storage, { secret: SECRET, whsec: WHSEC })
    try {
      const s0 = Math.floor(Date.now() / 1000)
      const subscription = (status: string) => proSubscription(status, s0)

      const created = await deliver(
        'evt_created',
        'customer.subscription.created',
        subscription('active'),
        s0 - 60,
      )
      expect(created.status).toBe(200)
      expect((await tb.accounts.get('acct_1')).tier).toBe('pro')

      // The first statement that clears the account's tier loses its connection.
      await pool.query(`
        CREATE SEQUENCE "${SCHEMA}".tier_fault;
        CREATE FUNCTION "${SCHEMA}".tier_fault() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.tier IS NULL AND OLD.tier IS NOT NULL AND nextval('"${SCHEMA}".tier_fault') = 1 THEN
            PERFORM pg_terminate_backend(pg_backend_pid());
            PERFORM pg_sleep(5);
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER tier_fault BEFORE UPDATE ON "${SCHEMA}".accounts
          FOR EACH ROW EXECUTE FUNCTION "${SCHEMA}".tier_fault();
      `)

      const deleted = subscription('canceled')
      const first = await deliver('evt_deleted', 'customer.subscription.deleted', deleted, s0)
      expect(first.status).toBe(500)
      expect(first.body).toMatchObject({ code: 'webhook_failed' })
      // The fault did strike the tier write (the trigger ran once).
      const fired = await pool.query(`SELECT last_value, is_called FROM "${SCHEMA}".tier_fault`)
      expect(fired.rows[0]).toMatchObject({ is_called: true })

      // Stripe retries the same event: it must complete the cancellation.
      const retry = await deliver('evt_deleted', 'customer.subscription.deleted', deleted, s0)
      expect(retry.status).toBe(200)
      const account = await tb.accounts.get('acct_1')
      expect(account.tier).toBe('starter')
      expect(account.tierExpiresAt).toBeNull()
      // And once more (a replay): nothing changes.
      const replay = await deliver('evt_deleted', 'customer.subscription.deleted', deleted, s0)
      expect(replay.body).toMatchObject({ duplicate: true })
      expect((await tb.accounts.get('acct_1')).tier).toBe('starter')
    } finally {
      await tb.close()
      await storage.close?.()
    }
  }, 60_000)
})
