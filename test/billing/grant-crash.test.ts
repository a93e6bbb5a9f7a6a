/**
 * @module test/billing/grant-crash
 *
 * A credit grant (`applyBillingChanges` of a `credits` change, as a paid checkout's webhook
 * brings it) whose instance stopped before its credit reached the store, then applied again
 * by another instance (the provider's retry of the event): credited once, 10, on memory,
 * SQLite, Redis and PostgreSQL. Before, the grant's "already granted" marker was a counter-store
 * claim made before the credit, a store call of its own: the retry was skipped as
 * `already-granted` and the payment never credited (balance 0) for the marker's 35 days.
 */

import { describe, expect, test } from 'vitest'
import { applyBillingChanges } from '../../src/billing/apply.js'
import { createMarkers, markerKey } from '../../src/billing/markers.js'
import { createTollbooth, memoryStorage, type Storage, type Tollbooth } from '../../src/internal.js'
import { fourStores, withoutTopUp } from '../support/stores.js'

const SECRET = 'grant-crash-secret-grant-crash-secret-0001'
const stores = await fourStores('billing-grant-crash')

/**
 * `storage` whose instance stops at its credit: the store's call that adds to the balance
 * (`addBalance` or `topUp`) is never made and never returns, as in a process that died there.
 */
function stoppedAtCredit(storage: Storage, reached: () => void): Storage {
  const a = storage.accounts
  const stop = () => {
    reached()
    return new Promise<never>(() => {})
  }
  return {
    ...storage,
    accounts: {
      get: (id) => a.get(id),
      ensure: (d) => a.ensure(d),
      update: (id, patch, ifPeriodStart) => a.update(id, patch, ifPeriodStart),
      addBalance: stop,
      topUp: stop,
    },
  }
}

const grant = {
  type: 'credits',
  accountId: 'acct_g',
  amount: 10,
  grantId: 'cs_paid_1',
  reason: 'top-up',
} as const

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`a credit grant cut before its credit: ${name}`, () => {
    /** Runs `run` with an instance on a new storage of this store, closed after. */
    async function withTb(run: (tb: Tollbooth, storage: Storage) => Promise<void>) {
      const storage = await make!()
      const tb = createTollbooth({ secret: SECRET, storage })
      try {
        await run(tb, storage)
      } finally {
        await tb.close()
      }
    }

    test("another instance's retry of the event credits it, once", async () => {
      const storage = await make!()
      let reached: () => void = () => {}
      const atCredit = new Promise<void>((r) => {
        reached = r
      })
      const first: Tollbooth = createTollbooth({
        secret: SECRET,
        storage: stoppedAtCredit(storage, reached),
      })
      const tb = createTollbooth({ secret: SECRET, storage })
      try {
        void applyBillingChanges(first, [grant]).catch(() => {})
        await atCredit
        const retried = await applyBillingChanges(tb, [grant])
        expect(retried[0]).toMatchObject({ applied: true })
        expect((await tb.accounts.get('acct_g')).balance).toBe(10)
        const again = await applyBillingChanges(tb, [grant])
        expect(again[0]).toMatchObject({ applied: false, reason: 'already-granted' })
        expect((await tb.accounts.get('acct_g')).balance).toBe(10)
      } finally {
        await tb.close()
      }
    })

    test('a grant an earlier version marked (its counter-store marker) is not credited again', async () => {
      await withTb(async (tb, storage) => {
        await tb.accounts.addCredits('acct_g', 10)
        const markers = createMarkers(storage, () => Date.now())
        expect(await markers.set(markerKey('acct_g', 'grant', grant.grantId))).toBe(true)
        const out = await applyBillingChanges(tb, [grant])
        expect(out[0]).toMatchObject({ applied: false, reason: 'already-granted' })
        expect((await tb.accounts.get('acct_g')).balance).toBe(10)
      })
    })

    test('a grant applied again with another amount is already granted, not an error', async () => {
      // The same invoice delivered again after the application's `grants` changed (a deploy
      // between Stripe's retries).
      await withTb(async (tb) => {
        expect((await applyBillingChanges(tb, [grant]))[0]).toMatchObject({ applied: true })
        const again = { ...grant, amount: 12 }
        const out = await applyBillingChanges(tb, [again]).catch((e: unknown) => e)
        expect(out).toEqual([{ change: again, applied: false, reason: 'already-granted' }])
        expect((await tb.accounts.get('acct_g')).balance).toBe(10)
      })
    })

    test("a grant is once per account, as an application's idempotency key is", async () => {
      // A grant id with another account is that account's grant (the markers of versions
      // before topUp were kept per account too), credited once there.
      await withTb(async (tb) => {
        const other = { ...grant, accountId: 'acct_h' }
        const out = await applyBillingChanges(tb, [grant, other, grant, other])
        expect(out.map((r) => r.applied)).toEqual([true, true, false, false])
        expect((await tb.accounts.get('acct_g')).balance).toBe(10)
        expect((await tb.accounts.get('acct_h')).balance).toBe(10)
      })
    })
  })

test('a storage whose accounts store has no topUp (written before it) still grants, once', async () => {
  const tb = createTollbooth({ secret: SECRET, storage: withoutTopUp(memoryStorage()) })
  try {
    const first = await applyBillingChanges(tb, [grant]).catch((e: unknown) => e)
    expect(first).toEqual([{ change: grant, applied: true }])
    const again = await applyBillingChanges(tb, [grant])
    expect(again[0]).toMatchObject({ applied: false, reason: 'already-granted' })
    expect((await tb.accounts.get('acct_g')).balance).toBe(10)
  } finally {
    await tb.close()
  }
})
