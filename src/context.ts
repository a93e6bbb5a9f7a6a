/**
 * @module context
 *
 * What the pipeline, the key manager and the meters share for one tollbooth instance:
 * resolved options, storage, clock, hasher, caches and the usage out-box.
 */

import type { KeyCache } from './cache.js'
import type { Clock } from './clock.js'
import { StorageUnavailableError } from './errors.js'
import type { KeyHasher } from './keys/hash.js'
import type { IpGuard } from './limits/ip-block.js'
import type { AccountService } from './metering/accounts.js'
import type { Outbox } from './metering/outbox.js'
import type { ResolvedOptions } from './options.js'
import type { Renewals } from './renewal.js'
import type { SettleQueue } from './retry-queue.js'
import type { LeasedCounterStore } from './storage/leased-counters.js'
import type { CounterStore, Storage } from './storage/types.js'

export interface Context {
  options: ResolvedOptions
  storage: Storage
  clock: Clock
  hash: KeyHasher
  /** A hasher per `previousSecrets`, newest first; empty when none is given. */
  previousHashes: readonly KeyHasher[]
  /** Keys and provider keys found only under a previous secret (`tb.stats()`). */
  previous: { keys: number; providerKeys: number }
  cache: KeyCache
  ipGuard: IpGuard | null
  accounts: AccountService
  outbox: Outbox
  /** Provider id -> lowercase header name. */
  providers: Record<string, string>
  /** Unique per instance; prefixes generated ids. */
  instanceId: string
  /** Drops a key from this instance's cache and tells the others (change feed). */
  invalidate(hash: string): Promise<void>
  /**
   * Bounds a hot-path storage call by `storageTimeoutMs`; rejects with StorageUnavailableError.
   * The call itself goes on: a counter call whose answer was lost is reconciled through
   * `retries` (a cancel for an admission, a retry for a settle), never left to count.
   * `ms` (when above 0) bounds it by less: what is left of a request's timeout.
   */
  guard<T>(p: Promise<T>, ms?: number): Promise<T>
  /** Settles and cancels retried until the counter store takes them. */
  retries: SettleQueue
  /** The admissions in flight that hold something, whose holds are renewed until they settle. */
  renewals: Renewals
  /**
   * The leased counters (`storage.counters` itself) when the counters are leased: admissions
   * answered from leases skip the per-account queue, which only store calls need.
   */
  leases: LeasedCounterStore | null
  /**
   * Where a key's first use and its permanent delete meet (`keys/first-use`): the storage's
   * own counters, past the leases (the mark is no admission); null for this process's memory
   * store, which no other instance shares.
   */
  firstUses: CounterStore | null
  /**
   * Per account: admissions sent to remote counters and not yet answered, and those waiting
   * their turn (see `accountInFlight`).
   */
  admitting: Map<string, { running: number; waiting: Array<() => void> }>
  /** The most admissions of one account waiting on remote counters at once. */
  accountInFlight: number
  /** How long a remote store keeps an admission's record for a cancel to find. */
  admissionTtlMs: number
  /** The account's stored key for `provider`, unsealed; undefined when none. */
  resolveStoredProvider(accountId: string, provider: string): Promise<string | undefined>
  /** Reports an error that happened off the request path. */
  report(err: unknown): void
}

/** What {@link withTimeout} rejects with, where a caller says more than its defaults. */
export interface TimeoutErrors {
  /** The message once `ms` have passed (default `Storage did not answer within <ms> ms`). */
  message?: string
  /**
   * What a failure of `p` is rejected with (default: a StorageUnavailableError as it is, any
   * other error as the `cause` of a StorageUnavailableError "Storage unavailable").
   */
  failed?: (err: unknown) => unknown
}

/**
 * Bounds `p` by `ms`: a StorageUnavailableError once they have passed (`p` goes on), and its
 * failure as `errors.failed` maps it. The memory store skips this (it cannot hang), saving a
 * timer and an async hop per call.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, errors?: TimeoutErrors): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  let late: StorageUnavailableError | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = new StorageUnavailableError(
        errors?.message ?? `Storage did not answer within ${ms} ms`,
      )
      reject(late)
    }, ms)
  })
  return Promise.race([p, timeout]).then(
    (v) => {
      clearTimeout(timer)
      return v
    },
    (err: unknown) => {
      clearTimeout(timer)
      if (err === late) throw err
      if (errors?.failed) throw errors.failed(err)
      throw err instanceof StorageUnavailableError
        ? err
        : new StorageUnavailableError('Storage unavailable', { cause: err })
    },
  )
}

/**
 * How long `tb.flush()`, `tb.close()` and billing's `close()` wait for the store (retried
 * settles, leases, a meter flush) before going on.
 */
export const DRAIN_MS = 10_000

/** Resolves true once `p` has ended (either way) within `ms`, else false then; never rejects. */
export function endsWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const ended = p.then(
    () => true,
    () => true,
  )
  return withTimeout(ended, ms).catch(() => false)
}
