/**
 * @module metering/accounts
 *
 * Accounts: a tier (plan), a prepaid balance, carried-over credits, and a credit counter per
 * period. The credit limit of a period is the plan's monthly credits plus the carryover plus
 * the prepaid balance; the period's use is one hold counter (`{<account>}:credits:<YYYY-MM>`),
 * so reservations of concurrent requests are counted atomically with every other limit.
 *
 * When a period ends the account rolls over: credits used beyond the plan come out of the
 * prepaid balance, and unused plan credits carry over for up to `carryoverMonths` months'
 * worth. Requests admitted at the end of a period settle into it after its end, so the
 * rollover is worked out from the period's counter at each read for an hour
 * (`CLOSE_AFTER_MS`), then written once (compare-and-set on `periodStart`), with the closed
 * period's figures (its plan credits, carryover, balance and use: `closedPeriods`), which a
 * read of that month returns.
 *
 * The admission view of an account is cached like a key. A change made here (tier, top-up,
 * patch) drops it on this instance and publishes `account:<id>` on the storage's change feed,
 * on which every other instance drops it too; while the feed is down, the cached view is
 * served for `cache.feedDownTtlMs` at most ({@link FeedBound}).
 */

import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import { CacheClock, FeedBound } from '../cache.js'
import { ConfigError, InvalidRequestError, NotFoundError } from '../errors.js'
import { ACCOUNT_METADATA_MAX_BYTES, instantMs, metadataSchema, ownValue, text } from '../input.js'
import { type CheckTemplate, compilePlanLimits, counterName } from '../limits/admission.js'
import { roundAmount } from '../limits/amount.js'
import { argumentError, type Plan, parseInput, type ResolvedOptions } from '../options.js'
import { IDEMPOTENCY_KEY_RULE, isIdempotencyKey } from '../request.js'
import type { AccountRecord, ClosedPeriod, Storage, TopUpResult } from '../storage/types.js'
import { nextPeriod, type Period, periodOf } from './periods.js'

/**
 * What admission needs of an account, cached for the key cache's TTL. Not the record: among a
 * million accounts a copy of each (with its metadata) was 150 bytes a view that no request
 * reads; `get` reads the record anew.
 */
export interface AdmissionAccount {
  tier: string | null
  plan: Plan | null
  period: Period
  creditKey: string
  /** Plan credits + carryover + balance; Infinity when the plan has unlimited credits. */
  creditLimit: number
  planTemplates: ReadonlyArray<CheckTemplate>
  /**
   * Where an in-process store last found the credit counter (`Place`; -1: not yet): the view
   * lives as long as the accounts cache keeps it, a request's credit template does not.
   */
  where: number
  /** The credit counter's stamp with `where` (`Place`). */
  stamp: number
}

/**
 * A cached admission view as the accounts cache holds it: the view with its cache fields, in
 * one object (a holder beside the view was 56 bytes an account). A key's cache entry keeps the
 * one it used last, so a request of a cached key reads its account without the accounts
 * cache's own lookup and bookkeeping (among a million accounts, a dozen cache misses per
 * request): `dead` turns true when the accounts cache drops it (a change, an eviction, a
 * refill), and `expiresAt` bounds it as the cache's TTL does.
 */
export interface HeldAccount extends AdmissionAccount {
  /** By the accounts cache's clock (`CacheClock`), as `expiresAt`. */
  cachedAt: number
  expiresAt: number
  dead: boolean
}

/** A plan without rate limits: one empty list for every view (a request reads its length). */
const NO_LIMITS: ReadonlyArray<CheckTemplate> = Object.freeze([])

/** An account as `tb.accounts` returns it. */
export interface AccountView {
  id: string
  tier: string | null
  tierDisplay: string | null
  plan: Plan | null
  tierExpiresAt: number | null
  billingCustomerId: string | null
  /** Prepaid credits (top-ups), beyond the plan's, now (whatever `period`). */
  balance: number
  /** Unused plan credits carried into the current period (whatever `period`). */
  carryover: number
  /**
   * The credits of `period`: the current period's, or a past one's as its rollover closed it
   * (its carryover and balance: `tb.usage.get`, {@link PeriodCredits}).
   */
  credits: { used: number; limit: number; remaining: number }
  period: Period
  metadata: Record<string, unknown>
}

/**
 * A period's credits: `limit` is the plan's monthly credits plus `carryover` plus `balance`
 * (Infinity when the plan's credits are unlimited). For a past period, the figures its rollover
 * closed it with; `carryover` and `balance` are null (and `limit` the plan's credits alone) for
 * one closed before its figures were kept, or longer ago than the last
 * {@link CLOSED_PERIODS_KEPT}.
 */
export interface PeriodCredits {
  used: number
  limit: number
  remaining: number
  /** Unused plan credits carried into the period. */
  carryover: number | null
  /** Prepaid balance: now for the current period, at its end for a past one. */
  balance: number | null
}

/** How many closed periods' figures an account keeps (`AccountRecord.closedPeriods`): a year's. */
export const CLOSED_PERIODS_KEPT = 12

/**
 * `done` followed by `more`, the last {@link CLOSED_PERIODS_KEPT} of them; an entry of `done`
 * for a period `more` closes (a top-up's record of an open period's balance) gives way.
 */
function keptPeriods(done: ClosedPeriod[] | undefined, more: ClosedPeriod[]): ClosedPeriod[] {
  const kept = (done ?? []).filter((c) => !more.some((m) => m.start === c.start))
  return [...kept, ...more].slice(-CLOSED_PERIODS_KEPT)
}

/** Throws a ConfigError naming `fn` unless `period` is left out or is a period. */
function checkPeriod(fn: string, period: Period | undefined): void {
  const p = period as Partial<Period> | null | undefined
  if (
    p !== undefined &&
    (typeof p !== 'object' ||
      p === null ||
      typeof p.id !== 'string' ||
      !Number.isFinite(p.start) ||
      !Number.isFinite(p.end))
  )
    throw argumentError(
      fn,
      'period',
      "must be a period ({ id, start, end }, e.g. a usage report's period)",
      period,
    )
}

/** Throws a ConfigError naming `fn` unless `record` has an account record's tier and credits. */
function checkRecord(fn: string, record: AccountRecord): void {
  const r = record as Partial<AccountRecord> | null | undefined
  if (
    typeof r !== 'object' ||
    r === null ||
    (r.tier !== null && typeof r.tier !== 'string') ||
    (r.tierExpiresAt != null && typeof r.tierExpiresAt !== 'number') ||
    !Number.isFinite(r.balance) ||
    !Number.isFinite(r.carryover)
  )
    throw argumentError(fn, 'record', 'must be an account record', record)
}

/**
 * A period's credit limit: the plan's monthly credits (null: unlimited) plus the carryover and
 * the prepaid balance, on the amount grid. The current period's and a closed one's alike.
 */
function creditLimitOf(monthly: number | null, carryover: number, balance: number): number {
  return roundAmount((monthly === null ? Infinity : monthly) + carryover + balance)
}

export const creditKey = (accountId: string, period: Period) =>
  counterName('{', accountId, '}:credits:', period.id)

/**
 * How long a period's credit counter is kept after the period ends: for settles of requests
 * admitted at its very end, and for the rollover of accounts active at the turn of the month.
 * Past it, a rollover reads the period's use from the usage instead.
 */
export const CREDIT_KEEP_MS = 86_400_000

/**
 * How long after its end a period is closed for good at the least (see `rollover`): past its
 * last credit holds (`reservationTtlMs`, when longer) and any clock skew between instances,
 * while its counter is still kept.
 */
export const CLOSE_AFTER_MS = 3_600_000

/** What precedes the account id in a change-feed message about an account. */
export const ACCOUNT_MESSAGE = 'account:'

const ACCOUNT_ID = /^[A-Za-z0-9._:@|-]{1,128}$/
const ACCOUNT_ID_RULE = 'must be 1-128 of A-Z a-z 0-9 . _ : @ | -'

/** An account id in a schema: 1-128 of `A-Za-z0-9._:@|-` (no braces: they are hash tags). */
export const accountIdSchema = z
  .string({ error: ACCOUNT_ID_RULE })
  .regex(ACCOUNT_ID, ACCOUNT_ID_RULE)

/**
 * The scope of a lookup by key id (`tb.keys.get`, `tb.usage.logs`, …): the account the key
 * must be of, strict, so a misspelt name is refused rather than left unread (the lookup then
 * unscoped). Left out, no scope; given, an account id: `{ accountId: undefined }` (a session's
 * id never set) is refused, not taken as no scope (it revoked another account's key).
 */
export const accountScope = z.object({ accountId: accountIdSchema.exactOptional() }).strict()

/** Whether `id` is an account id: 1-128 of `A-Za-z0-9._:@|-`. */
export function isAccountId(id: unknown): id is string {
  return typeof id === 'string' && ACCOUNT_ID.test(id)
}

/**
 * The account an `authenticate` option (the management API's, the portal's) returned: its
 * `accountId`, or null for nobody (null or undefined).
 *
 * @param fn the factory the option was given to (`managementApi`, `portal`)
 * @param option the option (`options.auth.authenticate`)
 * @throws {ConfigError} in the format of a bad argument, when it returned anything else
 */
export function authenticatedAccount(fn: string, option: string, who: unknown): string | null {
  if (who === null || who === undefined) return null
  if (typeof who !== 'object')
    throw argumentError(
      fn,
      `${option}(request)`,
      'must return { accountId }, null or undefined',
      who,
    )
  const id = (who as { accountId?: unknown }).accountId
  if (!isAccountId(id)) throw argumentError(fn, `${option}(request).accountId`, ACCOUNT_ID_RULE, id)
  return id
}

/** Throws a 400 unless `id` is 1-128 of `A-Za-z0-9._:@|-` (no braces: they are hash tags). */
export function checkAccountId(id: unknown, field = 'accountId'): string {
  if (!isAccountId(id)) {
    throw new InvalidRequestError(`Invalid request: ${field}: ${ACCOUNT_ID_RULE}`, [
      { path: field, message: ACCOUNT_ID_RULE },
    ])
  }
  return id
}

/** What `patch` may set: the same value rules as a key's metadata. */
const patchSchema = z
  .object({
    billingCustomerId: text(z.string().min(1).max(255)).nullable().optional(),
    metadata: metadataSchema(ACCOUNT_METADATA_MAX_BYTES).optional(),
  })
  .strict()

/** `setTier`'s options: when the tier ends, an instant in ms (null: never). */
const setTierOptions = z.object({ expiresAt: instantMs.nullable().optional() }).strict()

const AMOUNT_MESSAGE = `must be a finite number of at least 0.000000001 and at most ${Number.MAX_SAFE_INTEGER}`

/**
 * A top-up: at least 1e-9 (the last place an amount keeps, `limits/amount`; it is added rounded
 * to it) and at most 2^53 - 1, so that no sum of top-ups a store keeps (a double) overflows to
 * Infinity, which PostgreSQL refuses and the other stores would keep.
 */
const creditAmount = z
  .number({ error: AMOUNT_MESSAGE })
  .positive({ error: AMOUNT_MESSAGE, abort: true })
  .max(Number.MAX_SAFE_INTEGER, { error: AMOUNT_MESSAGE })
  .refine((v) => roundAmount(v) > 0, { error: AMOUNT_MESSAGE })

/**
 * How long a top-up's idempotency key is kept (`AccountStore.topUp`'s record): a retry within
 * it is not credited again.
 */
export const TOPUP_KEY_TTL_MS = 86_400_000

/** `addCredits`'s options. */
const addCreditsOptions = z
  .object({
    idempotencyKey: z
      .unknown()
      .refine(isIdempotencyKey, { error: IDEMPOTENCY_KEY_RULE })
      .transform((v) => v as string)
      .optional(),
  })
  .strict()

/** The account's idempotency key with another amount: a mistake, never retried. */
function keyReused(): InvalidRequestError {
  const message = 'this key was used with another amount'
  return new InvalidRequestError(`Invalid request: idempotencyKey: ${message}`, [
    { path: 'idempotencyKey', message },
  ])
}

/** An idempotent credit: under `key`, remembered for `ttlMs`. */
interface Once {
  key: string
  ttlMs: number
}

let creditOf: (
  s: AccountService,
) => (id: string, amount: number, once?: Once) => Promise<TopUpResult>

/**
 * Adds `amount` to the account's balance (`addCredits` without its answer); with `once`, under
 * that idempotency key of the account for `once.ttlMs` (`AccountStore.topUp`: the credit and
 * the key's record in one atomic step of the store). Answers the account's record of the key
 * in force: `applied` when this call added it, else the first call's amount, which the caller
 * judges (`addCredits`: another amount is a reuse of its key, 400; a billing grant: granted
 * already, whatever its amount now). Internal, billing's only (its grants' keys, `grant <id>`,
 * hold a space, which no caller's idempotencyKey does; never on `tb.accounts`, so no caller
 * can take a grant's key).
 *
 * @param accounts the service itself, not `tb.accounts`' bounded face (`unbounded`)
 * @throws InvalidRequestError for a bad id or amount
 */
export function creditAccount(
  accounts: AccountService,
  id: string,
  amount: number,
  once?: Once,
): Promise<TopUpResult> {
  return creditOf(accounts)(id, amount, once)
}

export class AccountService {
  static {
    creditOf = (s) => (id, amount, once) => s.#credit(id, amount, once)
  }

  private readonly cache: LRUCache<string, HeldAccount>
  private readonly ttlMs: number
  private readonly bound: FeedBound
  /** Bumped by every drop: a read that began before one is not cached (it may be older). */
  private generation = 0
  /** The views' `cachedAt` and `expiresAt`: when it moves its base, the cache empties. */
  private readonly clock = new CacheClock(() => {
    this.generation++
    this.cache.clear()
  })
  /** The period of the views made last: shared by them (one object for every account). */
  private current: Period | null = null
  /** True when plans are configured: every admission then reads the account (plan limits). */
  readonly hasPlans: boolean
  /** How long after its end a period is closed for good (see `rollover`). */
  private readonly closeAfterMs: number

  /** @param publish sends a change-feed message (failures are the sender's to report and retry) */
  constructor(
    private readonly storage: Storage,
    private readonly options: ResolvedOptions,
    private readonly now: () => number,
    private readonly publish: (message: string) => Promise<void> = async () => {},
  ) {
    this.hasPlans = Object.keys(options.plans).length > 0
    this.closeAfterMs = Math.min(
      CREDIT_KEEP_MS / 2,
      Math.max(CLOSE_AFTER_MS, options.reservationTtlMs + 60_000),
    )
    const ttl = options.cache === false ? 1 : options.cache.ttlMs
    this.ttlMs = ttl
    this.bound = new FeedBound(options.cache === false ? 1 : options.cache.feedDownTtlMs)
    this.cache = new LRUCache({
      max: options.cache === false ? 1 : options.cache.max,
      ttl,
      // Read the injected clock on every check: the default (1 ms) caches it behind a timer.
      ttlResolution: 0,
      perf: { now },
      dispose: (held) => {
        held.dead = true
      },
    })
  }

  /** The tier in force: the record's, unless it expired or is unknown, then the default. */
  effectiveTier(record: AccountRecord, now: number): string | null {
    checkRecord('tb.accounts.effectiveTier', record)
    if (typeof now !== 'number' || Number.isNaN(now))
      throw argumentError('tb.accounts.effectiveTier', 'now', 'must be a time (ms since 1970)', now)
    const t = record.tier
    if (
      t !== null &&
      Object.hasOwn(this.options.plans, t) &&
      (record.tierExpiresAt === null || record.tierExpiresAt > now)
    )
      return t
    return this.options.defaultTier
  }

  planOf(tier: string | null): Plan | null {
    return tier === null ? null : (ownValue(this.options.plans, tier) ?? null)
  }

  creditLimit(record: AccountRecord, plan: Plan | null): number {
    checkRecord('tb.accounts.creditLimit', record)
    if (plan !== null && typeof plan?.monthlyCredits !== 'number' && plan?.monthlyCredits !== null)
      throw argumentError(
        'tb.accounts.creditLimit',
        'plan',
        'must be a plan (tb.options.plans[tier]) or null',
        plan,
      )
    return creditLimitOf(plan ? plan.monthlyCredits : null, record.carryover, record.balance)
  }

  defaults(id: string, now: number): AccountRecord {
    return blankAccount(id, periodOf(now).start)
  }

  async ensure(id: string): Promise<AccountRecord> {
    return this.storage.accounts.ensure(this.defaults(id, this.now()))
  }

  /**
   * The cached admission view of the account at `now`, or undefined (then call
   * forAdmission). `held`, a view this returned before (kept with a key's cache entry), is
   * answered without a lookup while the cache still holds it.
   */
  peek(id: string, now: number, held?: HeldAccount): HeldAccount | undefined {
    if (held !== undefined && this.usable(held, now)) return held
    const c = this.cache.get(id)
    return c !== undefined && this.usable(c, now) ? c : undefined
  }

  /** Still cached, fresh for the change feed's state, and of the period in force at `now`. */
  private usable(c: HeldAccount, now: number): boolean {
    // The clock first: moving its base drops every view.
    const t = this.clock.at(now)
    if (c.dead || t >= c.expiresAt || !this.bound.fresh(c.cachedAt, t)) return false
    return now >= c.period.start && now < c.period.end
  }

  async forAdmission(id: string, now: number): Promise<AdmissionAccount> {
    return this.load(id, now)
  }

  /**
   * As `forAdmission`, as the view the cache holds: a key's cache entry keeps it, so the
   * key's next request reads it without a lookup. A view read but not cached (a change
   * raced the read, a TTL under 1 ms) comes back already dead.
   */
  async load(id: string, now: number): Promise<HeldAccount> {
    const cached = this.peek(id, now)
    if (cached) return cached
    const generation = this.generation
    const { record, a } = await this.read(id, now)
    // A tier that expires sooner than the cache TTL must not outlive its expiry in the cache
    // (lru-cache drops an entry once its age exceeds the ttl, hence the - 1).
    const left = record.tierExpiresAt === null ? Infinity : record.tierExpiresAt - now
    const ttl = left > this.ttlMs || left <= 0 ? this.ttlMs : left - 1
    const t = this.clock.at(now)
    const cache = generation === this.generation && ttl >= 1
    a.cachedAt = t
    a.expiresAt = t + ttl
    a.dead = !cache
    if (cache) this.cache.set(id, a, { ttl })
    return a
  }

  /** The account's record as stored (made, or rolled over to `now`'s period) and its view. */
  private async read(id: string, now: number): Promise<{ record: AccountRecord; a: HeldAccount }> {
    // One period object for every view of the month: among a million accounts, a request's
    // check of its view's period then reads a line already in cache.
    let period = this.current
    if (period === null || now < period.start || now >= period.end)
      period = this.current = periodOf(now)
    let record = (await this.storage.accounts.get(id)) ?? (await this.ensure(id))
    if (record.periodStart < period.start) record = await this.rollover(record, period, now)
    const tier = this.effectiveTier(record, now)
    const plan = this.planOf(tier)
    // Made with its cache fields (set by `load`): one literal of all its fields, so the object
    // holds them in itself (a spread of the view with three more took a property array).
    const a: HeldAccount = {
      tier,
      plan,
      period,
      creditKey: creditKey(id, period),
      creditLimit: this.creditLimit(record, plan),
      planTemplates:
        plan && tier && plan.rateLimits.length > 0
          ? compilePlanLimits(id, tier, plan.rateLimits, plan.exact === true)
          : NO_LIMITS,
      where: -1,
      stamp: 0,
      cachedAt: 0,
      expiresAt: 0,
      dead: true,
    }
    return { record, a }
  }

  /**
   * The record as of `current`: every period from the record's up to `current` closed (used
   * beyond the plan taken from the prepaid balance, unused plan credits carried over), each
   * closed period's figures appended to `closedPeriods`.
   *
   * A period is closed for good (written, once across instances: the compare-and-set on
   * `periodStart` lets exactly one caller apply it) only once its use can no longer change:
   * an hour after its end (`CLOSE_AFTER_MS`; `reservationTtlMs` plus a minute when longer).
   * Until then a request admitted in it may still be settled
   * (its hold, the estimate, replaced by the charge), and an instance whose clock is behind
   * may still admit into it: the close is worked out anew from the period's counter at each
   * read and not written, so a charge made after the turn of the month is taken from the
   * balance as it is, not the estimate held at the turn.
   */
  private async rollover(
    record: AccountRecord,
    current: Period,
    now: number,
    depth = 0,
  ): Promise<AccountRecord> {
    let p = periodOf(record.periodStart)
    let carryover = record.carryover
    let fromBalance = 0
    let balance = record.balance
    // The last period closed for good: where the record moves to.
    let finalStart = record.periodStart
    let finalCarryover = carryover
    let finalFromBalance = 0
    // The figures of each period closed here; the first `finalCount` are closed for good.
    const closing: ClosedPeriod[] = []
    let finalCount = 0
    for (let i = 0; p.start < current.start && i < 240; i++) {
      const plan = this.planOf(this.effectiveTier(record, p.start))
      const monthly = plan?.monthlyCredits ?? null
      // Only the record's period and the next can have use: a read in any later one closes
      // the record's for good (a month has passed since its end).
      const used = i < 2 ? await this.usedIn(record.id, p, now) : 0
      // A top-up paid after the period's end recorded the balance as it stood then: only that
      // may pay the period's overage, not money added after (see `addCredits`).
      const atEnd = record.closedPeriods?.find((c) => c.open === true && c.start === p.start)
      const endBalance = atEnd === undefined ? balance : Math.min(balance, atEnd.balance)
      closing.push({
        start: p.start,
        monthlyCredits: monthly,
        carryover,
        balance: endBalance,
        used,
      })
      if (monthly === null) {
        carryover = 0
      } else {
        // Every sum on the amount grid (`limits/amount`), as the counters keep theirs.
        const planPart = roundAmount(monthly + carryover)
        const beyond = Math.max(0, roundAmount(used - planPart))
        const spent = Math.min(beyond, endBalance)
        fromBalance = roundAmount(fromBalance + spent)
        balance = roundAmount(balance - spent)
        const unused = Math.max(0, roundAmount(planPart - used))
        carryover =
          plan && plan.carryoverMonths > 0
            ? Math.min(unused, roundAmount(monthly * plan.carryoverMonths))
            : 0
      }
      const closed = p
      p = nextPeriod(p)
      if (now >= closed.end + this.closeAfterMs) {
        finalStart = p.start
        finalCarryover = carryover
        finalFromBalance = fromBalance
        finalCount = closing.length
      }
    }
    // As it stands at `now`, closes not yet written included.
    const provisional = (r: AccountRecord): AccountRecord => ({
      ...r,
      carryover,
      balance: roundAmount(r.balance - roundAmount(fromBalance - finalFromBalance)),
      periodStart: current.start,
      closedPeriods: keptPeriods(r.closedPeriods, closing.slice(finalCount)),
    })
    if (finalStart === record.periodStart) return provisional(record)
    // One write: the period moved on and its overage taken from the balance land together
    // or not at all (a timeout or a crash between two writes lost the overage, and a top-up
    // read between them saw a balance the overage had not come out of yet).
    const updated = await this.storage.accounts.update(
      record.id,
      {
        carryover: finalCarryover,
        periodStart: finalStart,
        closedPeriods: keptPeriods(record.closedPeriods, closing.slice(0, finalCount)),
        ...(finalFromBalance > 0 ? { addToBalance: -finalFromBalance } : {}),
      },
      record.periodStart,
    )
    if (!updated) {
      // Another caller closed it first: work it out again from what it wrote.
      const fresh = (await this.storage.accounts.get(record.id)) ?? record
      if (fresh.periodStart >= current.start || depth > 2) return fresh
      return this.rollover(fresh, current, now, depth + 1)
    }
    return finalStart === current.start ? updated : provisional(updated)
  }

  /**
   * Credits used in period `p` as of `now`: its counter (settled plus the holds still live),
   * or once that expired (`CREDIT_KEEP_MS` after the period) or was lost, the units recorded
   * in it.
   */
  private async usedIn(id: string, p: Period, now: number): Promise<number> {
    // Read as the store keeps it, at the latest on its last day (a store that drops idle
    // counters only when it sweeps or when told may still hold it).
    const at = Math.min(now, p.end + CREDIT_KEEP_MS - 1)
    const held = await this.storage.counters.held(creditKey(id, p), at)
    if (held > 0) return held
    return (await this.storage.usage.summarize(id, p.start, p.end)).units
  }

  /**
   * Makes the record ready for a top-up at `now`: every period closed for good is written
   * (`rollover`), and a period that ended less than `closeAfterMs` ago, whose use may still
   * change and so is not closed yet, gets its balance at its end recorded (an `open` entry of
   * `closedPeriods`, written once, before the first top-up after its end), which its close
   * then takes its overage from. Between the period's end and this write nothing but a
   * top-up changes the balance (a close moves `periodStart`, which the compare-and-set checks),
   * and a top-up writes this before it adds: the balance recorded never holds one.
   */
  private async closeBefore(id: string, now: number): Promise<void> {
    const current = periodOf(now)
    for (let i = 0; i < 4; i++) {
      let stored = (await this.storage.accounts.get(id)) ?? (await this.ensure(id))
      if (stored.periodStart < current.start) {
        await this.rollover(stored, current, now)
        stored = (await this.storage.accounts.get(id)) ?? stored
      }
      if (stored.periodStart >= current.start) return
      const start = stored.periodStart
      if (stored.closedPeriods?.some((c) => c.open === true && c.start === start)) return
      const plan = this.planOf(this.effectiveTier(stored, start))
      const atEnd: ClosedPeriod = {
        start,
        monthlyCredits: plan?.monthlyCredits ?? null,
        carryover: stored.carryover,
        balance: stored.balance,
        used: 0,
        open: true,
      }
      const written = await this.storage.accounts.update(
        id,
        { closedPeriods: keptPeriods(stored.closedPeriods, [atEnd]) },
        start,
      )
      if (written) return
      // Closed meanwhile by another caller: read it again.
    }
  }

  /** Drops the cached view of the account on this instance (a change-feed message). */
  invalidate(id: string): void {
    this.generation++
    this.cache.delete(id)
  }

  /**
   * The change feed stopped (false) or resumed (true) delivering: cached views older than
   * `cache.feedDownTtlMs` are not served while it is down, and all are dropped when it is back.
   */
  feed(live: boolean): void {
    if (this.bound.set(live) && live) {
      this.generation++
      this.cache.clear()
    }
  }

  /** After a change: drops the view here and tells every other instance to. */
  private async changed(id: string): Promise<void> {
    this.invalidate(id)
    await this.publish(`${ACCOUNT_MESSAGE}${id}`)
  }

  // ---- the public surface, `tb.accounts` ----

  /** The account with its credit figures for the current period, or for the period `month`. */
  async get(id: string, period?: Period): Promise<AccountView> {
    checkPeriod('tb.accounts.get', period)
    const { view, credits } = await this.statement(id, period)
    const { used, limit, remaining } = credits
    return { ...view, credits: { used, limit, remaining } }
  }

  /**
   * The account (as `get`, without its credits) and the credits of the current period, or of
   * the period `month`, with the carryover and balance its limit holds (`tb.usage.get`).
   */
  async statement(
    id: string,
    period?: Period,
  ): Promise<{ view: Omit<AccountView, 'credits'>; credits: PeriodCredits }> {
    checkAccountId(id)
    checkPeriod('tb.accounts.statement', period)
    const now = this.now()
    // Read anew, not the admission cache's view: it keeps no record (and a view is then as
    // fresh as the store).
    const { record, a } = await this.read(id, now)
    const p = period ?? a.period
    // Rounded as read: a balance a store kept before amounts were rounded reads as its decimal.
    const balance = roundAmount(record.balance)
    const carryover = roundAmount(record.carryover)
    const credits =
      p.start === a.period.start
        ? this.credits(
            await this.storage.counters.held(creditKey(id, p), now),
            a.creditLimit,
            carryover,
            balance,
          )
        : await this.pastCredits(record, p, now)
    const view = {
      id,
      tier: a.tier,
      tierDisplay: a.plan?.display ?? a.tier,
      plan: a.plan,
      tierExpiresAt: record.tierExpiresAt,
      billingCustomerId: record.billingCustomerId,
      balance,
      carryover,
      // A copy: the views the cache holds share theirs.
      period: { ...p },
      metadata: record.metadata,
    }
    return { view, credits }
  }

  private credits(
    used: number,
    limit: number,
    carryover: number | null,
    balance: number | null,
  ): PeriodCredits {
    return { used, limit, remaining: Math.max(0, roundAmount(limit - used)), carryover, balance }
  }

  /**
   * The credits of period `p`, not the current one of `record` (read as of `now`, with the
   * closes not yet written): as its rollover closed it, when the record keeps its figures.
   */
  private async pastCredits(record: AccountRecord, p: Period, now: number): Promise<PeriodCredits> {
    const c = record.closedPeriods?.find((c) => c.start === p.start)
    if (c !== undefined)
      return this.credits(
        c.used,
        creditLimitOf(c.monthlyCredits, c.carryover, c.balance),
        c.carryover,
        c.balance,
      )
    // Closed before its figures were kept (or too long ago), or not begun: its use (the
    // counter, or once that expired a day after it, the usage) against the plan of the tier
    // in force at its start, as its rollover takes it.
    const used = await this.usedIn(record.id, p, now)
    const plan = this.planOf(this.effectiveTier(record, p.start))
    return this.credits(used, creditLimitOf(plan?.monthlyCredits ?? null, 0, 0), null, null)
  }

  /** Sets the account's tier (a key of `options.plans`, or null for the default). */
  async setTier(
    id: string,
    tier: string | null,
    options: { expiresAt?: number | null } = {},
  ): Promise<AccountView> {
    checkAccountId(id)
    const o = parseInput(setTierOptions, options)
    if (tier !== null && (typeof tier !== 'string' || !Object.hasOwn(this.options.plans, tier))) {
      throw new InvalidRequestError(`Invalid request: tier: unknown tier "${tier}"`, [
        {
          path: 'tier',
          message: `must be one of ${Object.keys(this.options.plans).join(', ') || '(no plans configured)'}`,
        },
      ])
    }
    await this.ensure(id)
    await this.storage.accounts.update(id, {
      tier,
      ...(o.expiresAt !== undefined ? { tierExpiresAt: o.expiresAt } : {}),
    })
    await this.changed(id)
    return this.get(id)
  }

  /**
   * Adds prepaid credits (a top-up); `amount` must be a number > 0 and at most 2^53 - 1.
   *
   * A top-up belongs to the moment it is paid: a period that ended before it takes its use
   * beyond the plan from the balance as it stood at its end, never from this money. So the
   * account is rolled over first ({@link closeBefore}).
   *
   * With `idempotencyKey` (1-255 printable ASCII characters, no space) it applies once for 24
   * hours (`TOPUP_KEY_TTL_MS`), on every instance: the store adds the amount and keeps the
   * key's record in one atomic step (`AccountStore.topUp`), so a call with a key already
   * applied answers the account as it is now, without crediting, whether the first call
   * ended, is still running, crashed after its write or lands after this one. A key is the
   * account's: the same key on another account is a top-up of its own. The key with another
   * amount is an InvalidRequestError (400).
   */
  async addCredits(
    id: string,
    amount: number,
    options: { idempotencyKey?: string } = {},
  ): Promise<AccountView> {
    checkAccountId(id)
    parseInput(z.object({ amount: creditAmount }), { amount })
    const key = parseInput(addCreditsOptions, options).idempotencyKey
    const r = await this.#credit(
      id,
      amount,
      key === undefined ? undefined : { key, ttlMs: TOPUP_KEY_TTL_MS },
    )
    if (r.amount !== roundAmount(amount)) throw keyReused()
    return this.get(id)
  }

  /** {@link creditAccount}. */
  async #credit(id: string, amount: number, once?: Once): Promise<TopUpResult> {
    checkAccountId(id)
    parseInput(z.object({ amount: creditAmount }), { amount })
    // A store written before `topUp` was part of the contract: refused before any write.
    if (once !== undefined && typeof this.storage.accounts.topUp !== 'function')
      throw new ConfigError(
        'tb.accounts.addCredits: idempotencyKey needs a storage whose accounts store has topUp (AccountStore.topUp)',
      )
    const credit = roundAmount(amount)
    await this.closeBefore(id, this.now())
    let r: TopUpResult = { applied: true, amount: credit }
    if (once === undefined) {
      if (!(await this.storage.accounts.addBalance(id, credit)))
        throw new NotFoundError('Account not found')
    } else {
      const now = this.now()
      const kept = await this.storage.accounts.topUp(id, {
        key: once.key,
        amount: credit,
        now,
        expiresAt: now + once.ttlMs,
      })
      if (kept === null) throw new NotFoundError('Account not found')
      r = kept
    }
    // A replay too: the first call may have ended before telling the other instances.
    await this.changed(id)
    return r
  }

  /** Sets fields billing providers manage: customer id, metadata. */
  async patch(
    id: string,
    patch: { billingCustomerId?: string | null; metadata?: Record<string, unknown> },
  ): Promise<AccountView> {
    checkAccountId(id)
    const v = parseInput(patchSchema, patch)
    await this.ensure(id)
    await this.storage.accounts.update(id, v)
    await this.changed(id)
    return this.get(id)
  }
}

/** An account record with no tier, balance, carryover or metadata, its period from `periodStart`. */
export function blankAccount(id: string, periodStart: number): AccountRecord {
  return {
    id,
    tier: null,
    balance: 0,
    carryover: 0,
    periodStart,
    tierExpiresAt: null,
    billingCustomerId: null,
    metadata: {},
  }
}
