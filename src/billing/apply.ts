/**
 * @module billing/apply
 *
 * Applies a provider's {@link BillingChange}s to accounts through `tb.accounts`, the same for
 * every provider, with the two guarantees webhooks need:
 *
 * - **Order.** Providers deliver events late, twice and out of order. Each account keeps the
 *   subscription it follows and the time of the last change applied (in its metadata, under
 *   {@link BILLING_STATE_KEY}); an older change is skipped, a change of another subscription
 *   than the current one cannot cancel it, and an ended subscription never comes back (a
 *   suspended one, paused or unpaid, does, by a newer change of it).
 * - **Once.** A credit grant is applied once per `grantId` (a payment or an invoice), with a
 *   marker in the counter store, whatever the event that carries it.
 *
 * A subscription that ends, or that lapses unpaid past its `expiresAt`, leaves the account on
 * `options.defaultTier` (the tier in force when the record's tier is null or expired).
 */

import { ConflictError, InvalidRequestError } from '../errors.js'
import type { Tollbooth } from '../tollbooth.js'
import { createMarkers, MARKER_TTL_MS, markerKey } from './markers.js'
import type { AppliedChange, BillingChange } from './types.js'

/** The account metadata key where the billing state is kept. */
export const BILLING_STATE_KEY = 'tollbooth:billing'

/** What an account remembers of its subscription, to order late and repeated events. */
export interface BillingState {
  subscriptionId: string
  /** Time of the last change applied (the provider's event time, ms). */
  at: number
  /** True once the subscription ended: it is never revived by a later-delivered event. */
  ended: boolean
}

/** Changes of one account run one at a time in this process (read-modify-write of metadata). */
const queues = new WeakMap<object, Map<string, Promise<unknown>>>()

function serial<T>(tb: object, accountId: string, fn: () => Promise<T>): Promise<T> {
  let q = queues.get(tb)
  if (!q) {
    q = new Map()
    queues.set(tb, q)
  }
  const prev = q.get(accountId) ?? Promise.resolve()
  const run = prev.then(fn, fn)
  const tail = run.catch(() => {})
  q.set(accountId, tail)
  tail.then(() => {
    if (q.get(accountId) === tail) q.delete(accountId)
  })
  return run
}

/** How long an account's apply lock lives when its holder dies before releasing it. */
const LOCK_TTL_MS = 60_000
/** Pause between two tries to take an account's apply lock. */
const LOCK_POLL_MS = 20

/**
 * Runs `fn` holding the account's apply lock, a marker in the counter store: a tier change
 * is a read (the billing state) then writes, and two instances interleaving them let the
 * older change write last. Waits for the lock up to half the storage timeout (the webhook's
 * bound on the whole step), then throws a {@link ConflictError}: the provider retries.
 */
async function locked<T>(tb: Tollbooth, accountId: string, fn: () => Promise<T>): Promise<T> {
  const markers = createMarkers(tb.storage, () => tb.options.clock?.now() ?? Date.now())
  const key = markerKey(accountId, 'apply', 'lock')
  const tries = Math.max(1, Math.floor(tb.options.storageTimeoutMs / 2 / LOCK_POLL_MS))
  for (let i = 0; !(await markers.set(key, LOCK_TTL_MS)); i++) {
    if (i + 1 >= tries)
      throw new ConflictError(
        `Billing changes of account ${accountId} are being applied by another instance`,
      )
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS))
  }
  try {
    return await fn()
  } finally {
    // Left set when the store fails here: it lapses after LOCK_TTL_MS.
    await markers.clear(key).catch(() => {})
  }
}

function stateOf(metadata: Record<string, unknown>): BillingState | null {
  const s = metadata[BILLING_STATE_KEY] as Partial<BillingState> | undefined
  if (!s || typeof s.subscriptionId !== 'string' || typeof s.at !== 'number') return null
  return { subscriptionId: s.subscriptionId, at: s.at, ended: s.ended === true }
}

/**
 * Applies `changes` in order and reports what each did. Changes of one account are
 * serialized in this process, and a tier or cancel change holds the account's lock in the
 * counter store, so across instances too the newest change is the one that stays.
 *
 * @param [options.grantTtlMs=35 days] how long a credit grant id is remembered
 * @throws {InvalidRequestError} for a tier that is not a key of `options.plans` or a bad amount
 * @throws {ConflictError} when another instance holds the account's lock past half the
 *   storage timeout (the provider retries)
 * @throws whatever the storage throws; changes before the failing one stay applied, and
 *   applying the same changes again is safe
 */
export async function applyBillingChanges(
  tb: Tollbooth,
  changes: ReadonlyArray<BillingChange>,
  options: { grantTtlMs?: number } = {},
): Promise<AppliedChange[]> {
  const out: AppliedChange[] = []
  for (const change of changes) {
    out.push(await serial(tb, change.accountId, () => applyOne(tb, change, options)))
  }
  return out
}

async function applyOne(
  tb: Tollbooth,
  change: BillingChange,
  options: { grantTtlMs?: number },
): Promise<AppliedChange> {
  const id = change.accountId
  switch (change.type) {
    case 'customer': {
      const a = await tb.accounts.get(id)
      if (a.billingCustomerId === change.customerId)
        return { change, applied: false, reason: 'unchanged' }
      await tb.accounts.patch(id, { billingCustomerId: change.customerId })
      return { change, applied: true }
    }
    case 'credits': {
      const markers = createMarkers(tb.storage, () => tb.options.clock?.now() ?? Date.now())
      const key = markerKey(id, 'grant', change.grantId)
      if (!(await markers.set(key, options.grantTtlMs ?? MARKER_TTL_MS)))
        return { change, applied: false, reason: 'already-granted' }
      try {
        await tb.accounts.addCredits(id, change.amount)
      } catch (err) {
        await markers.clear(key).catch(() => {})
        throw err
      }
      return { change, applied: true }
    }
    case 'tier':
    case 'cancel': {
      if (change.type === 'tier' && !Object.hasOwn(tb.options.plans, change.tier)) {
        throw new InvalidRequestError(`Invalid request: tier: unknown tier "${change.tier}"`, [
          { path: 'tier', message: `must be one of ${Object.keys(tb.options.plans).join(', ')}` },
        ])
      }
      return locked(tb, id, () => applyState(tb, change))
    }
  }
}

/** A tier or cancel change, under the account's apply lock. */
async function applyState(
  tb: Tollbooth,
  change: Extract<BillingChange, { type: 'tier' | 'cancel' }>,
): Promise<AppliedChange> {
  const id = change.accountId
  const a = await tb.accounts.get(id)
  const state = stateOf(a.metadata)
  const same = state?.subscriptionId === change.subscriptionId
  if (same && state.ended) {
    // The cancel that ended it, again (the provider's retry): its state went first, so
    // the tier write after it may be what failed. Written again (to the same values).
    if (change.type === 'cancel' && change.at === state.at) {
      await tb.accounts.setTier(id, null, { expiresAt: null })
      return { change, applied: true }
    }
    return { change, applied: false, reason: 'ended' }
  }
  if (state && change.at < state.at) return { change, applied: false, reason: 'stale' }
  if (change.type === 'cancel' && state && !same)
    return { change, applied: false, reason: 'other-subscription' }
  const next: BillingState = {
    subscriptionId: change.subscriptionId,
    at: change.at,
    ended: change.type === 'cancel' && change.suspended !== true,
  }
  // The state goes first: if the tier write then fails, the provider's retry carries the
  // same `at`, which the rules above let through (a cancel's too), and completes it.
  await tb.accounts.patch(id, { metadata: { ...a.metadata, [BILLING_STATE_KEY]: next } })
  if (change.type === 'cancel') await tb.accounts.setTier(id, null, { expiresAt: null })
  else
    await tb.accounts.setTier(
      id,
      change.tier,
      change.expiresAt === undefined ? {} : { expiresAt: change.expiresAt },
    )
  return { change, applied: true }
}
