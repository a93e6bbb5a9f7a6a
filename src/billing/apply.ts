/**
 * @module billing/apply
 *
 * Applies a provider's {@link BillingChange}s to accounts through `tb.accounts` (without its
 * `storageTimeoutMs` bound: a change runs to its end once the store answers, the caller bounds
 * its wait), the same for every provider, with the two guarantees webhooks need:
 *
 * - **Order.** Providers deliver events late, twice and out of order. Each account keeps the
 *   subscription it follows and the time of the last change applied (in its metadata, under
 *   {@link BILLING_STATE_KEY}); an older change is skipped, a change of another subscription
 *   than the current one cannot cancel it, and an ended subscription never comes back (a
 *   suspended one, paused or unpaid, does, by a newer change of it). A provider's times can
 *   tie (Stripe's are whole seconds): two snapshots of one subscription with the same time
 *   that disagree cannot be ordered, so the provider is asked for the subscription's current
 *   state (`options.current`) and that is applied.
 * - **Once.** A credit grant is applied once per account and `grantId` (a payment or an
 *   invoice), whatever the event that carries it: the credit and the grant's record are one
 *   atomic step of the store (`AccountStore.topUp`, under the account's key `grant <grantId>`).
 *
 * A subscription that ends, or that lapses unpaid past its `expiresAt`, leaves the account on
 * `options.defaultTier` (the tier in force when the record's tier is null or expired).
 */

import { z } from 'zod'
import { unbounded } from '../bounded-calls.js'
import { ConflictError, InvalidRequestError } from '../errors.js'
import { creditAccount } from '../metering/accounts.js'
import { fnOption, integer, parseInput, parseOptions } from '../options.js'
import { IDEMPOTENCY_KEY_RULE, isIdempotencyKey } from '../request.js'
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
  /**
   * What the last snapshot applied at `at` set ({@link snapshotOf}): a snapshot of the same
   * time that sets something else is a tie the times cannot order.
   */
  last?: string
}

type StateChange = Extract<BillingChange, { type: 'tier' | 'cancel' }>

/** The asker of a subscription's current state at the provider (see `applyBillingChanges`). */
export type CurrentState = (change: StateChange) => Promise<StateChange | null>

/** What a tier or cancel change sets, as a string to compare two of them. */
const snapshotOf = (c: StateChange): string =>
  c.type === 'cancel'
    ? `cancel:${c.suspended === true}`
    : `tier:${c.tier}:${c.expiresAt === undefined ? '-' : c.expiresAt}`

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
  return {
    subscriptionId: s.subscriptionId,
    at: s.at,
    ended: s.ended === true,
    ...(typeof s.last === 'string' ? { last: s.last } : {}),
  }
}

/**
 * Applies `changes` in order and reports what each did. Changes of one account are
 * serialized in this process, and a tier or cancel change holds the account's lock in the
 * counter store, so across instances too the newest change is the one that stays.
 *
 * @param [options.grantTtlMs=35 days] how long a credit grant id is remembered (an integer >= 1)
 * @param [options.current] given when `changes` are snapshots of a subscription (the whole
 *   state at their time, as Stripe's `customer.subscription.*` events): asked for the
 *   subscription's current state (the provider's API, under the account's lock) when a tier
 *   or cancel change ties with the last snapshot applied (same subscription, same time) and
 *   sets something else; its answer is applied instead (null: the change as it is)
 * @throws {ConfigError} for a bad option, before any change is applied
 * @throws {InvalidRequestError} for a tier that is not a key of `options.plans`, a bad amount or
 *   a `grantId` that is not 1-255 printable ASCII characters
 * @throws {ConflictError} when another instance holds the account's lock past half the
 *   storage timeout (the provider retries)
 * @throws whatever the storage throws; changes before the failing one stay applied, and
 *   applying the same changes again is safe
 */
export async function applyBillingChanges(
  tb: Tollbooth,
  changes: ReadonlyArray<BillingChange>,
  options: { grantTtlMs?: number; current?: CurrentState } = {},
): Promise<AppliedChange[]> {
  // A record kept 0 ms (or NaN) would let every retry of a grant credit it again.
  parseOptions('applyBillingChanges', applyOptions, options)
  const out: AppliedChange[] = []
  for (const change of changes) {
    out.push(await serial(tb, change.accountId, () => applyOne(tb, change, options)))
  }
  return out
}

/**
 * A credit grant on a storage whose accounts store has no `topUp` (written before it): its
 * counter-store marker, then the credit, as before `topUp` (a process that dies between the
 * two leaves the grant uncredited until the marker expires; `topUp` has no such gap).
 */
async function grantByMarker(
  tb: Tollbooth,
  change: Extract<BillingChange, { type: 'credits' }>,
  marker: string,
  ttlMs: number,
): Promise<AppliedChange> {
  const markers = createMarkers(tb.storage, () => tb.options.clock?.now() ?? Date.now())
  if (!(await markers.set(marker, ttlMs)))
    return { change, applied: false, reason: 'already-granted' }
  try {
    await creditAccount(unbounded(tb.accounts), change.accountId, change.amount)
  } catch (err) {
    await markers.clear(marker).catch(() => {})
    throw err
  }
  return { change, applied: true }
}

const applyOptions = z
  .object({ grantTtlMs: integer(1).optional(), current: fnOption<CurrentState>().optional() })
  .strict()

const grantIdSchema = z.object({
  grantId: z.custom<string>(isIdempotencyKey, { message: IDEMPOTENCY_KEY_RULE }),
})

async function applyOne(
  tb: Tollbooth,
  change: BillingChange,
  options: { grantTtlMs?: number; current?: CurrentState },
): Promise<AppliedChange> {
  const id = change.accountId
  switch (change.type) {
    case 'customer': {
      const a = await unbounded(tb.accounts).get(id)
      if (a.billingCustomerId === change.customerId)
        return { change, applied: false, reason: 'unchanged' }
      await unbounded(tb.accounts).patch(id, { billingCustomerId: change.customerId })
      return { change, applied: true }
    }
    case 'credits': {
      // The grant's key in the store (`grant <grantId>`): what an idempotency key may be.
      parseInput(grantIdSchema, { grantId: change.grantId })
      // A grant applied by an earlier version kept only its counter-store marker.
      const markers = createMarkers(tb.storage, () => tb.options.clock?.now() ?? Date.now())
      const marker = markerKey(id, 'grant', change.grantId)
      if (await markers.has(marker)) return { change, applied: false, reason: 'already-granted' }
      if (typeof tb.storage.accounts.topUp !== 'function')
        return grantByMarker(tb, change, marker, options.grantTtlMs ?? MARKER_TTL_MS)
      // The credit and the grant's record in one step of the store: a retry after a crash or
      // an unknown outcome is credited once, whichever lands first. The key holds a space,
      // which no caller's idempotencyKey does. Once per grantId of the account whatever the
      // change carries now: its retry with another amount (the application's grants changed
      // between the provider's deliveries) is granted already, not a reuse of a key.
      const r = await creditAccount(unbounded(tb.accounts), id, change.amount, {
        key: `grant ${change.grantId}`,
        ttlMs: options.grantTtlMs ?? MARKER_TTL_MS,
      })
      return r.applied
        ? { change, applied: true }
        : { change, applied: false, reason: 'already-granted' }
    }
    case 'tier':
    case 'cancel': {
      if (change.type === 'tier' && !Object.hasOwn(tb.options.plans, change.tier)) {
        throw new InvalidRequestError(`Invalid request: tier: unknown tier "${change.tier}"`, [
          { path: 'tier', message: `must be one of ${Object.keys(tb.options.plans).join(', ')}` },
        ])
      }
      return locked(tb, id, () => applyState(tb, change, options.current))
    }
  }
}

/** A tier or cancel change, under the account's apply lock. */
async function applyState(
  tb: Tollbooth,
  change: StateChange,
  current: CurrentState | undefined,
): Promise<AppliedChange> {
  const id = change.accountId
  const a = await unbounded(tb.accounts).get(id)
  const state = stateOf(a.metadata)
  const same = state?.subscriptionId === change.subscriptionId
  if (same && state.ended) {
    // The cancel that ended it, again (the provider's retry): its state went first, so
    // the tier write after it may be what failed. Written again (to the same values).
    if (change.type === 'cancel' && change.at === state.at) {
      await unbounded(tb.accounts).setTier(id, null, { expiresAt: null })
      return { change, applied: true }
    }
    return { change, applied: false, reason: 'ended' }
  }
  if (state && change.at < state.at) return { change, applied: false, reason: 'stale' }
  if (change.type === 'cancel' && state && !same)
    return { change, applied: false, reason: 'other-subscription' }
  // Two snapshots of one time that disagree: delivered in either order, so the provider's
  // current state decides (asked only then: an event of a new second costs no call).
  let c = change
  const tie = same && change.at === state.at
  if (current && tie && state.last !== undefined && state.last !== snapshotOf(change)) {
    const fresh = await current(change)
    if (fresh) c = { ...fresh, accountId: id, subscriptionId: change.subscriptionId, at: change.at }
  }
  // A snapshot leaves what it set; another change of the same time keeps the last snapshot's.
  const last = current ? snapshotOf(c) : tie ? state.last : undefined
  const next: BillingState = {
    subscriptionId: c.subscriptionId,
    at: c.at,
    ended: c.type === 'cancel' && c.suspended !== true,
    ...(last === undefined ? {} : { last }),
  }
  // The state goes first: if the tier write then fails, the provider's retry carries the
  // same `at`, which the rules above let through (a cancel's too), and completes it.
  await unbounded(tb.accounts).patch(id, { metadata: { ...a.metadata, [BILLING_STATE_KEY]: next } })
  if (c.type === 'cancel') await unbounded(tb.accounts).setTier(id, null, { expiresAt: null })
  else
    await unbounded(tb.accounts).setTier(
      id,
      c.tier,
      c.expiresAt === undefined ? {} : { expiresAt: c.expiresAt },
    )
  return c === change ? { change, applied: true } : { change, applied: true, current: c }
}
