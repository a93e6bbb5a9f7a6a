/**
 * @module storage/types
 *
 * The contract between tollbooth and a storage backend. A backend is one {@link Storage}
 * value made of six small stores; `memoryStorage()`, `redisStorage()` and `postgresStorage()`
 * implement it, and `describeStorageConformance()` from `tollbooth/testing` checks a user's
 * own. Every time is milliseconds since the Unix epoch; every amount is a plain number of the
 * limit's units (requests, tokens or credits). `docs/storage.md` states the same in MUST/MAY
 * words. A {@link CounterStore} for a new database need not implement the counting rules:
 * `countersFromState(backend)` builds one from a single atomic `transact`.
 *
 * Every method may reject; tollbooth bounds each hot-path call with a timeout and answers
 * 503 `storage_unavailable` (or lets the request through, with `failOpen`).
 */

import type { GcraState } from '../limits/gcra.js'
import type { HoldState } from '../limits/hold.js'
import type { WindowState } from '../limits/rolling-window.js'

export type { GcraState, HoldState, WindowState }

/** `consumption` keys call the product's routes; `management` keys call the management API. */
export type KeyKind = 'consumption' | 'management'

/** A rate limit: `limit` units per `windowMs`, enforced with GCRA. */
export interface RateLimit {
  limit: number
  windowMs: number
  /** What one unit is: a request (counted at admission) or a token (counted at settle). */
  unit?: 'requests' | 'tokens'
  /** Decided by the store on every request, never from a lease (docs/leases.md). */
  exact?: boolean
}

/** Rolling request quotas; each optional. `total` is all-time. */
export interface Quotas {
  total?: number
  daily?: number
  weekly?: number
  monthly?: number
}

/** A reserved interval in which a key may be used (`[start, end)`, ms since the epoch). */
export interface TimeBlock {
  start: number
  end: number
}

/** Every limit a key can carry. Absent fields mean no limit. */
export interface KeyLimits {
  quotas?: Quotas
  rateLimits?: RateLimit[]
  /** Requests in flight at once. */
  concurrency?: number
  /** A credit budget of this key alone (all-time), beside the account's balance. */
  budget?: number
  /** Reserved intervals: outside all of them the key is refused (403). */
  timeBlocks?: TimeBlock[]
  /** Every limit of this key is decided by the store on every request, never from a lease. */
  exact?: boolean
}

/** A key as stored. Holds the hash, never the plaintext. */
export interface KeyRecord {
  /** `key_…`, sortable by creation time. */
  id: string
  /** Hex HMAC-SHA-256 of the plaintext under the instance secret: unique. */
  hash: string
  /** The prefix and first 4 random characters, for display. */
  start: string
  name: string
  accountId: string
  kind: KeyKind
  category: string | null
  scopes: string[]
  metadata: Record<string, unknown>
  active: boolean
  createdAt: number
  expiresAt: number | null
  lastUsedAt: number | null
  revokedAt: number | null
  limits: KeyLimits
}

/** Fields `keys.update` may change. */
export type KeyPatch = Partial<
  Pick<
    KeyRecord,
    'name' | 'category' | 'scopes' | 'metadata' | 'active' | 'expiresAt' | 'revokedAt' | 'limits'
  >
>

/** One page of a list, newest first. `nextCursor` is null on the last page. */
export interface Page<T> {
  data: T[]
  nextCursor: string | null
}

export interface ListOptions {
  /** Page size, 1 to 100. */
  limit: number
  /** The `nextCursor` of the previous page. */
  cursor?: string | null
}

/** Durable key records. */
export interface KeyStore {
  /** Stores a new key. MUST reject if the id or the hash already exists. */
  insert(key: KeyRecord): Promise<void>
  get(id: string): Promise<KeyRecord | null>
  /** The key whose `hash` matches, revoked or not; null when none. */
  getByHash(hash: string): Promise<KeyRecord | null>
  /**
   * An account's keys of one kind, newest first (descending `id`), revoked ones included only
   * when asked. The cursor is opaque to callers; a store may use the last id of the page.
   */
  list(
    accountId: string,
    options: ListOptions & { kind?: KeyKind; includeRevoked?: boolean },
  ): Promise<Page<KeyRecord>>
  /** Applies `patch` and returns the new record; null when the id does not exist. */
  update(id: string, patch: KeyPatch): Promise<KeyRecord | null>
  /**
   * Rotation, atomically: inserts `next` and applies `patch` to `oldId` in one step, so no
   * reader ever sees both keys fully valid (or neither) unless the patch says so. Returns the
   * old record after the patch; null (and nothing inserted) when `oldId` does not exist.
   * MUST reject with a `ConflictError`, changing nothing, when the old record is revoked at
   * `next.createdAt`, checked in the same atomic step (see `rotation` in `src/storage/rows.ts`).
   */
  rotate(oldId: string, patch: KeyPatch, next: KeyRecord): Promise<KeyRecord | null>
  /** Removes the record for good. Returns false when it did not exist. */
  delete(id: string): Promise<boolean>
  /** Batched `lastUsedAt` updates; a later time wins over an earlier one. */
  touch(updates: ReadonlyArray<{ id: string; lastUsedAt: number }>): Promise<void>
}

/**
 * One check of an admission. `key` is the counter's name, chosen by the core
 * (`{<accountId>}:…`, with the account id as a Redis Cluster hash tag); `name` labels the
 * limit in headers and errors.
 */
export type Check =
  | {
      /** A rolling quota (see `limits/rolling-window`). */
      type: 'window'
      key: string
      name: string
      /**
       * Decide on every request in the store, never from a lease (`exact: true` on the limit,
       * a concurrency or token limit). Stores ignore it; the leases layer reads it.
       */
      exact?: true
      limit: number
      /** 0 for all-time. */
      windowMs: number
      bucketMs: number
      cost: number
      /** See {@link Rebuild}. */
      rebuild?: Rebuild
    }
  | {
      /** A rate limit (see `limits/gcra`). cost 0: refuse only when not one unit is free. */
      type: 'gcra'
      key: string
      name: string
      /**
       * Decide on every request in the store, never from a lease (`exact: true` on the limit,
       * a concurrency or token limit). Stores ignore it; the leases layer reads it.
       */
      exact?: true
      limit: number
      windowMs: number
      cost: number
    }
  | {
      /** A hold: concurrency or credits (see `limits/hold`). limit Infinity never refuses. */
      type: 'hold'
      key: string
      name: string
      /**
       * Decide on every request in the store, never from a lease (`exact: true` on the limit,
       * a concurrency or token limit). Stores ignore it; the leases layer reads it.
       */
      exact?: true
      limit: number
      amount: number
      holdId: string
      ttlMs: number
      /**
       * The settled total matters until this time (ms) and no longer: a period's credits. The
       * store keeps the counter at least until then and drops it once that time and every
       * hold's expiry have passed. Absent: kept while it has a settled total.
       */
      keepUntil?: number
      /** See {@link Rebuild}. */
      rebuild?: Rebuild
    }

/**
 * A count that must not be lost silently (credits spent, a key's budget, an all-time quota)
 * when the counters live in a store that may come back empty (Redis restarted without its
 * data) while the usage is kept elsewhere. A counter carries a mark once rebuilt; one without
 * it (missing, or created since by a settle) is not trusted:
 * - `{}`: the store MUST refuse the whole admission without counting anything and answer this
 *   check with `missing: true`; the caller then reads the count from the durable usage;
 * - `{ base }`: the store raises the counter's count to `base` if lower (an unmarked counter
 *   may hold settles made since the loss, or a whole count kept from before rebuilds), marks
 *   it, and evaluates the check; the rebuilt counter is written even when the admission is
 *   refused.
 * A marked counter ignores `rebuild`.
 */
export interface Rebuild {
  base?: number
}

/** The outcome of one check, in the order the checks were given. */
export interface CheckResult {
  allowed: boolean
  limit: number
  /**
   * Counted after this request; a check that refused reports its count before it. A check that
   * passed within a refused admission reports what it would have counted (nothing was).
   */
  used: number
  remaining: number
  /** Milliseconds until the limit is fully available again (Infinity: never). */
  resetMs: number
  /** Milliseconds until this check would pass; 0 when it passed. */
  retryAfterMs: number
  /** The check asked for a rebuild and its counter was not rebuilt (see {@link Rebuild}). */
  missing?: true
}

export interface ConsumeResult {
  /** True only when every check passed; then every check was counted. */
  allowed: boolean
  results: CheckResult[]
}

/**
 * The identity of one admission (see `consume`): `key` names its record, under the same
 * `{<accountId>}` hash tag as its checks; `ttlMs` is how long the record (or a tombstone left
 * by a `cancel`) is kept.
 */
export interface AdmissionId {
  key: string
  ttlMs: number
  /**
   * The `holdId` of the admission's own holds (a credit reservation, a concurrency slot), when
   * it has them. A store MAY let such a hold stand for the record, when its `ttlMs` is at least
   * the record's: an admission that takes it writes no record, and a `cancel` (which carries
   * the same `holdId`) finds the admission applied when that hold is there and the record
   * would still be (until `at + ttlMs`). The core never cancels an admission it settled, so the
   * hold is there until the cancel comes (the Redis store does this: one write less per call).
   */
  holdId?: string
}

/** What settle does to counters after the response. */
export type SettleOp =
  | {
      /**
       * Drops hold `holdId` of counter `key` and adds `charge` to its settled total. With
       * `ifHeld`, only when the hold is still there (a retried settle: the first attempt may
       * have been applied), so applying it twice charges once.
       */
      type: 'release'
      key: string
      holdId: string
      charge: number
      /** As the hold check's `keepUntil`. */
      keepUntil?: number
      ifHeld?: boolean
      /**
       * Applied once per record, whether or not the hold is still there: with the tombstone of
       * `record.key` (an `AdmissionId` key under the counter's hash tag) there, nothing is done;
       * otherwise the hold is dropped if there, `charge` added, and the tombstone kept for
       * `record.ttlMs`, in the same atomic step. For a charge owed whatever became of its hold
       * (a credit lease's, whose store hold may lapse, or be dropped by another instance's call
       * at a later clock, before the release runs); `ifHeld` is then ignored.
       */
      record?: { key: string; ttlMs: number }
    }
  | {
      /**
       * Extends hold `holdId` of counter `key` to expire `ttlMs` after `now` (never sooner
       * than it did), only while it is there, live at `now`: a hold released (its request
       * settled) or expired is not made again. Its amount and the counter's settled total
       * stay. The core sends it for its requests still in flight, every third of their hold's
       * TTL, so a response that runs longer than the TTL keeps its slot and its credits; a
       * process that dies stops sending it, and its holds lapse by the TTL.
       */
      type: 'renew'
      key: string
      holdId: string
      ttlMs: number
      /** As the hold check's `keepUntil`. */
      keepUntil?: number
    }
  | {
      /**
       * Adds `cost` to a window or GCRA counter after the fact, never refusing. A negative
       * `cost` takes units back (a token estimate trued-up at settle); a count never goes
       * below zero. On a window, units taken back come from the bucket of `now`, or the first
       * later one when it has no count, never an earlier one.
       */
      type: 'add'
      check: Extract<Check, { type: 'window' | 'gcra' }>
    }
  | {
      /**
       * Undoes the admission recorded under `key` (an `AdmissionId`), whose answer was lost
       * (a timeout): when its record is there, each of `checks` (the admission's own, as
       * given to `consume` at time `at`) is taken back: a hold's `holdId` dropped with no
       * charge, a window's `cost` taken out of the bucket of `at`, a GCRA `cost` taken back
       * less what has drained since `at`. Then, or when there is no record, a tombstone stays
       * under `key` for `ttlMs`; with a tombstone already there, nothing is done.
       */
      type: 'cancel'
      key: string
      ttlMs: number
      at: number
      checks: ReadonlyArray<Check>
      /** The admission's `holdId` (see {@link AdmissionId}). */
      holdId?: string
    }

/** Atomic counters for admission. The only store on the hot path besides key lookups. */
export interface CounterStore {
  /**
   * Evaluates every check at `now` and, only if all pass, counts all of them: all or none,
   * atomically with respect to every other `consume` and `settle` on the same counters
   * (a request refused by one limit uses up nothing of the others). Concurrent callers see a
   * serial order. Idle counters MUST expire (memory per key stays bounded), and a hold
   * counter past its `keepUntil`. `now` is the caller's clock: a stored GCRA time never moves
   * back (see `limits/gcra`).
   *
   * With `admission`, an admission that passes also records `admission.key` for
   * `admission.ttlMs`, atomically with its counts, so a later `cancel` can undo it; when a
   * `cancel` of that key came first (its tombstone is there), nothing is counted and the
   * result is a refusal. A refused admission (a `missing` rebuild included) records nothing,
   * so the caller may consume again under the same key.
   */
  consume(
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
  ): Promise<ConsumeResult>
  /** Applies settle operations. Each op is applied at most once per call; order does not matter. */
  settle(ops: ReadonlyArray<SettleOp>, now: number): Promise<void>
  /** The current settled total plus live holds of a hold counter (0 when unknown). */
  held(key: string, now: number): Promise<number>
  /**
   * Sets the marker `key` until `now + ttlMs` unless it is set: true when this call set it.
   * Atomic: of concurrent callers (on any instance), exactly one gets true. Used for an
   * `Idempotency-Key`, for billing's "already done" markers, for a key name being written and
   * for a signed-out session (checked by `claimed` on every session request of the portal and
   * the management API); a marker MUST expire.
   */
  claim(key: string, ttlMs: number, now: number): Promise<boolean>
  /** True while the marker `key` is set at `now`. */
  claimed(key: string, now: number): Promise<boolean>
  /**
   * Clears the marker `key` (a claim whose work failed, so a retry may claim it again), or the
   * counter `consume` made at `key`: a permanent delete whose write failed gives back the key's
   * first-use counter it took (`keys/first-use`), so the key can be used again at once.
   */
  unclaim(key: string): Promise<void>
  /**
   * How many calls the store serves at once (a connection pool's size), when bounded: the
   * core then lets one account wait on at most half of them (option `accountInFlight`).
   */
  readonly concurrency?: number
  /**
   * True when the counts survive a restart of the store, as the usage does (PostgreSQL, in
   * the same database): tollbooth then asks for no `rebuild`. Leave it unset for a store that
   * may come back empty (Redis without persistence).
   */
  readonly durable?: true
}

/**
 * One request made with a known key, as metered and logged: an admitted request once settled,
 * or a refused one (then `code` names the refusal and `units` is 0). Summaries and billing
 * count admitted requests only (`code === null`).
 */
export interface UsageEvent {
  /**
   * Unique: the request's internal id (a retried `Idempotency-Key` is caught before an event
   * is written). Recording is idempotent by it.
   */
  id: string
  requestId: string
  keyId: string
  accountId: string
  time: number
  /** Credits charged (0 when bypassed or refunded). */
  units: number
  /** The part of `units` beyond the account's credits, billable as overage (plans that allow it). */
  overage: number
  /** Tokens reported by the handler, when any. */
  tokens: number
  /** The request's usage category (the route's, or the handler's); null for none. */
  category: string | null
  /**
   * The category of the key that made the request, as it was then (`production`, …); null
   * when the key had none. Summaries count it under `uncategorized`, as they do an event
   * recorded before this field existed.
   */
  keyCategory: string | null
  status: number
  /** Total duration: admission to the end of the response (ms); 0 for a refused request. */
  durationMs: number
  /** Time to first byte: admission to the first response byte (ms); null when unknown. */
  ttfbMs: number | null
  /** The error code of a refused request (`rate_limited`, …); null for an admitted one. */
  code: string | null
  ip: string | null
  method: string
  path: string
  bypassed: boolean
  provider: string | null
}

/**
 * Totals of an account's admitted requests in `[from, to)` (refused ones are not counted), in
 * all and broken down two ways. A missing category is counted under `uncategorized`.
 */
export interface UsageSummary {
  requests: number
  units: number
  /** By the request's usage category (`UsageEvent.category`). */
  byCategory: Record<string, { requests: number; units: number }>
  /** By the category of the key that made the request (`UsageEvent.keyCategory`). */
  byKeyCategory: Record<string, { requests: number; units: number }>
}

/**
 * Which admitted requests a summary counts: only those of this usage category and/or of keys
 * of this category. Values are compared with the names summaries use, so `uncategorized`
 * selects the requests without one.
 */
export interface UsageFilter {
  category?: string
  keyCategory?: string
}

/** Usage events: the meter and the request log. Written in batches, off the hot path. */
export interface UsageStore {
  /** Stores events; an event whose id is already stored is ignored (idempotent). */
  record(events: ReadonlyArray<UsageEvent>): Promise<void>
  /**
   * Totals for an account between `from` (inclusive) and `to` (exclusive), of the requests
   * `filter` selects (all when omitted). Stores keep totals per (usage category, key
   * category) pair, so both breakdowns and any filter come from the same totals.
   */
  summarize(
    accountId: string,
    from: number,
    to: number,
    filter?: UsageFilter,
  ): Promise<UsageSummary>
  /** A key's events, newest first (by time, then id). */
  logs(keyId: string, options: ListOptions): Promise<Page<UsageEvent>>
  /** Deletes events older than `before`; returns how many. */
  prune(before: number): Promise<number>
}

/** An account: the owner of keys, credits and a plan. */
export interface AccountRecord {
  id: string
  /** The plan's tier id, or null for the instance's default plan. */
  tier: string | null
  /** Prepaid credits added by top-ups and grants that have not expired with a period. */
  balance: number
  /** Unused plan credits carried into the current period. */
  carryover: number
  /** Start of the period the `carryover` was computed for (ms). */
  periodStart: number
  tierExpiresAt: number | null
  billingCustomerId: string | null
  metadata: Record<string, unknown>
  /**
   * The credit figures of the last closed periods (at most 12, oldest first), written by the rollover in the same compare-and-set `update` as `periodStart`. A
   * store keeps the list as it is given (JSON); absent or empty for an account that never
   * rolled over since its store kept them.
   */
  closedPeriods?: ClosedPeriod[]
}

/** A closed period's credit figures as its rollover closed it (`tb.usage.get` of its month). */
export interface ClosedPeriod {
  /** Start of the period (ms). */
  start: number
  /** The plan's monthly credits (the tier in force at its start); null: unlimited. */
  monthlyCredits: number | null
  /** Unused plan credits carried into it. */
  carryover: number
  /** The prepaid balance it had at its end, before its use beyond the plan came out of it. */
  balance: number
  /** Credits used in it. */
  used: number
  /**
   * True for a period not closed yet, whose entry a top-up paid after its end wrote to record
   * its `balance` at its end (`used` is then 0): its close takes its overage from no more
   * than that, and replaces the entry.
   */
  open?: boolean
}

/**
 * The fields `update` sets. `addToBalance` is added to the stored balance (rounded as
 * `addBalance` rounds) in the same atomic step as the rest, so a period's close moves
 * `periodStart` and takes the period's overage from the balance together or not at all.
 */
export type AccountPatch = Partial<Omit<AccountRecord, 'id'>> & { addToBalance?: number }

/** Durable accounts. */
export interface AccountStore {
  get(id: string): Promise<AccountRecord | null>
  /** Creates the account with `defaults` if missing, else returns it unchanged. */
  ensure(defaults: AccountRecord): Promise<AccountRecord>
  /**
   * Applies `patch` in one atomic step (its `addToBalance` added to the balance, not stored
   * as a field); with `ifPeriodStart`, only when the stored `periodStart` equals it
   * (compare-and-set, for period rollover). Returns the new record, or null when missing or
   * the compare failed.
   */
  update(id: string, patch: AccountPatch, ifPeriodStart?: number): Promise<AccountRecord | null>
  /** Adds `amount` (may be negative) to `balance` atomically; returns the new record. */
  addBalance(id: string, amount: number): Promise<AccountRecord | null>
  /**
   * A top-up under an idempotency key (`tb.accounts.addCredits` with `idempotencyKey`): adds
   * `t.amount` to the balance and keeps the key's record (`t.amount`, until `t.expiresAt`)
   * with the account, in ONE atomic step, unless the account has a record of `t.key` live at
   * `t.now` (its expiry after it): then it changes nothing and returns that record. A key is
   * its account's: the same key on another account is another record. So a retry, a
   * concurrent call and a first call that lands late (its `now` is then earlier) are credited
   * once among them, whatever their order. A record past its expiry counts as none. Null when
   * the account is missing (nothing kept). The core compares the record with its call; the
   * store neither refuses nor judges it.
   */
  topUp(id: string, t: TopUp): Promise<TopUpResult | null>
}

/** A top-up with its idempotency key ({@link AccountStore.topUp}). */
export interface TopUp {
  /**
   * The idempotency key, the account's own: printable ASCII (a caller's: 1-255 characters, no
   * space; billing's grants: `grant <grantId>`).
   */
  key: string
  /** What to add to the balance (> 0, on the amount grid). */
  amount: number
  /** The caller's clock (ms): a record whose `expiresAt` is after it is live. */
  now: number
  /** When the record this call keeps expires (ms, the caller's clock). */
  expiresAt: number
}

/** What {@link AccountStore.topUp} did, and the account's record of the key after it. */
export interface TopUpResult {
  /** True when this call added the amount (and kept the record). */
  applied: boolean
  /** The record's amount: this call's when applied, else the first call's. */
  amount: number
}

/** A provider key sealed with JWE under the instance secret. */
export interface ProviderKeyRecord {
  accountId: string
  /** Lowercase provider id, e.g. `elevenlabs`. */
  provider: string
  /** JWE compact serialization; opens only with the instance secret. */
  sealed: string
  /** Last four characters, for display. */
  last4: string
  createdAt: number
  verifiedAt: number | null
}

/** Sealed provider keys (BYOK), at most one per account and provider. */
export interface SecretStore {
  /** Inserts or replaces the record for (accountId, provider). */
  put(record: ProviderKeyRecord): Promise<void>
  get(accountId: string, provider: string): Promise<ProviderKeyRecord | null>
  list(accountId: string): Promise<ProviderKeyRecord[]>
  delete(accountId: string, provider: string): Promise<boolean>
}

/** A client address refused by the failed-authentication guard until `until`. */
export interface IpBlock {
  ip: string
  /** When the block ends (ms since the epoch). */
  until: number
}

/** The rule `IpBlockStore.fail` applies, from the `failedAuth` option. */
export interface IpBlockRule {
  /** Failures within `windowMs` that block the address. */
  limit: number
  windowMs: number
  blockMs: number
}

/**
 * Failed authentications by client address, shared by every instance. The core counts each
 * address in process first and calls `fail` only for one that keeps failing, so a malformed
 * or guessed key from a new address costs no storage call.
 */
export interface IpBlockStore {
  /**
   * Adds `count` failures of `ip` at `now` to its window, a fixed one of `rule.windowMs` from
   * its first counted failure. When the window holds `rule.limit` failures, blocks `ip` until
   * `now + rule.blockMs` and starts a new window. Atomic per address. Returns the end of the
   * block in force (a block in force is returned as it is: neither counted nor extended), or
   * null. Counts and blocks MUST expire once over.
   */
  fail(ip: string, count: number, now: number, rule: IpBlockRule): Promise<number | null>
  /** The block of `ip` in force at `now`, or null. */
  get(ip: string, now: number): Promise<IpBlock | null>
  /** Blocks in force at `now`, by ascending `ip` (byte order); the cursor is opaque. */
  list(now: number, options: ListOptions): Promise<Page<IpBlock>>
  /** Ends the block of `ip` and forgets its failures; false when it was not blocked at `now`. */
  lift(ip: string, now: number): Promise<boolean>
}

/**
 * A change feed so every instance drops a changed key or account from its caches at once.
 * Without it, the cache TTL bounds how long another instance may still accept a revoked key
 * or apply an old plan. A message is an opaque string to the feed: a key's hash (64 hex
 * digits) or `account:<accountId>`; a feed carries it as it is.
 */
export interface ChangeFeed {
  /** Tells every subscriber (on every instance) of `message`: a key's hash or `account:<id>`. */
  publish(message: string): Promise<void>
  /**
   * Calls `listener` for every published message; returns an unsubscribe function.
   * `options.onStatus` is for feeds that can miss messages (a lost connection): see
   * {@link SubscribeOptions}.
   */
  subscribe(listener: (message: string) => void, options?: SubscribeOptions): Promise<() => void>
}

export interface SubscribeOptions {
  /**
   * A feed calls `onStatus(false)` when it stops delivering (its connection dropped, so
   * messages published meanwhile are lost) and `onStatus(true)` when it delivers again.
   * In between, tollbooth serves cached keys and accounts for `cache.feedDownTtlMs` at most,
   * and it empties its caches once the feed is back. A feed that never calls it is taken as
   * delivering, unless its `subscribe` rejects: then as down until it calls `onStatus(true)`.
   */
  onStatus?: (live: boolean) => void
}

/** A storage backend: six stores, an optional change feed, and an optional close. */
export interface Storage {
  keys: KeyStore
  counters: CounterStore
  usage: UsageStore
  accounts: AccountStore
  secrets: SecretStore
  ipBlocks: IpBlockStore
  changes?: ChangeFeed
  /** Releases what the storage opened itself (never the user's client). */
  close?(): Promise<void>
  /**
   * Why the user's client this storage runs on can take no more calls, or undefined while it
   * can: it was closed under tollbooth (`redis.quit()`, `pool.end()`, `db.close()` before
   * `tb.close()`). tollbooth reads it when a call fails: it reports that cause once (not each
   * failure of each timer), answers requests 503 `storage_unavailable`, and `tb.close()` gives
   * up on the store at once. A storage that omits it has every failure reported.
   * A change feed on such a client MUST let go of what it holds on it (a connection taken from
   * the pool, a duplicated connection), so the user's close completes and the process can exit.
   */
  closed?(): string | undefined
  /**
   * The longest after a call of this storage is made that anything of it may still be sent
   * (a client reconnecting) or committed (a transaction's deadline), and the option that sets
   * it (`redisStorage({ reconnectWaitMs })`, `postgresStorage({ statementTimeoutMs })`).
   * `createTollbooth` refuses a `storageTimeoutMs` not above it: such a call would be sent or
   * commit after its caller was answered 503, an admission counted for a refused request
   * until its cancel, a top-up answered "outcome unknown" applied.
   */
  readonly sendWait?: { ms: number; option: string }
  /**
   * Told `createTollbooth`'s `storageTimeoutMs` by each instance made on this storage: a
   * storage whose own deadline for a call (how long it may still send or commit anything of
   * it) defaults from the core's timeout takes it from here, below the shortest it is told
   * (`postgresStorage` without `statementTimeoutMs`). One whose deadline is an option given
   * declares it as {@link sendWait} instead.
   */
  storageTimeout?(ms: number): void
}
