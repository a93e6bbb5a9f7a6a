/**
 * @module storage/leased-counters
 *
 * Leases: a `CounterStore` decorator that borrows a share of a hot limit from the store in
 * one atomic call and admits requests against it in process, with no I/O, so many instances
 * sharing one store do not pay a store round trip per request. `docs/leases.md` states the
 * design and proves its bounds; in short:
 *
 * - a **GCRA** lease is `n` units charged with one `consume` of cost `n`; unit `j` holds the
 *   emission slot that starts at `x + j·T` (`T = windowMs / limit`, `x` the slot time the
 *   charge started at, read back from the result) and is usable only until that slot starts.
 *   The admitted sequence is then itself GCRA-conforming: no interval admits more than the
 *   central store admits. Unused units are never returned: they drain as the slots pass.
 * - a **rolling-window** lease is `n` units charged in the current bucket, usable only while
 *   that bucket is current and for at most `windowLeaseMs`; the unused part is taken back when
 *   the lease ends, from the bucket charged (a `cancel` of the charge's record, or without one a
 *   negative `add` while that bucket is current). No window of `windowMs` admits more than
 *   `limit`.
 * - a **hold** lease (credits) is one hold of `amount` in the store; requests hold and settle
 *   against it locally, each local hold ending before the lease's own; when the lease ends one
 *   `release` charges what its requests were charged. Settled plus held never exceeds `limit`.
 *
 * Leases are taken only for a limit whose observed traffic fills a lease of at least
 * `minUnits` within `leaseMs`, capped at `maxShare` of the limit and at `1 / exhaustDivisor` of
 * what the store last said was left, so small limits, concurrency, rebuilt counters and cold
 * keys are decided by the store as before. An admission is answered locally only when every
 * one of its checks is; otherwise the whole admission goes to the store (all or none holds).
 */

import { roundAmount } from '../limits/amount.js'
import { cancelled } from '../limits/counters.js'
import { LocalHolds } from './local-holds.js'
import type {
  AdmissionId,
  Check,
  CheckResult,
  ConsumeResult,
  CounterStore,
  SettleOp,
} from './types.js'

export interface LeaseOptions {
  /**
   * True for a check that must always be decided by the store, beside those that say so
   * themselves (`check.exact`: `exact: true` on the limit, concurrency, token limits).
   */
  exact?: (check: Check) => boolean
  /** A lease is sized to the traffic of this many milliseconds. Default 100. */
  leaseMs?: number
  /** Largest lease as a fraction of the limit. Default 0.01 (1 %). */
  maxShare?: number
  /** Smallest lease worth a store call, in the check's units (requests, credits). Default 8. */
  minUnits?: number
  /** A lease takes at most this fraction of what the store last reported left: 1/8 by default. */
  exhaustDivisor?: number
  /** How long a credit (hold) lease admits; its store hold lives `holdGraceMs` longer. Default 1000. */
  holdLeaseMs?: number
  /** The longest local hold a credit lease takes (a request's hold TTL). Default 60,000. */
  holdGraceMs?: number
  /**
   * How long a window's lease admits at most (to the end of its bucket at the latest), so a
   * lease a key's traffic left unused ends in its bucket and gives its units back. Default 1000.
   */
  windowLeaseMs?: number
  /**
   * Every instance's clock is within this of true time (ms), so two read at most twice it
   * apart. A credit lease's store hold is taken for twice this longer than the lease counts
   * on it: the store judges a hold's expiry on the clock of whoever reads it, and one ahead
   * must not see it lapse while its holder still has requests held in it. Default 2000.
   */
  clockSkewMs?: number
  /** Refused or failed lease: the limit is decided centrally for this long. Default 250. */
  cooldownMs?: number
  /** The span over which the rate of a key is measured. Default 1000. */
  rateMs?: number
  /**
   * Ends due leases every this many ms of real time (a credit lease must be released before
   * its store hold expires, also on an idle instance). Default 100; 0: no timer (the caller
   * calls `flush`, as the tests with an injected clock do).
   */
  flushEveryMs?: number
  /** The clock of that timer. Default `Date.now`. */
  clock?: () => number
}

/** What the decorator did, for `tb.stats()`-style figures. */
export interface LeaseStats {
  /** Leases alive now (credit leases that admit no more but hold requests in flight included). */
  leases: number
  /** Leases taken since the start. */
  acquired: number
  /** Admissions answered in process. */
  localAdmissions: number
  /** Admissions sent to the store (refused lease or not leasable). */
  centralAdmissions: number
  /** Calls made to the store (consume and settle). */
  storeCalls: number
  /** Units given back at lease end (windows, credits). */
  returnedUnits: number
  /** Units of live leases not used yet: capacity others cannot have now. */
  parkedUnits: number
  /** Lease requests the store refused. */
  refusedLeases: number
  /** Store calls made for leases: taking them and giving back their unused part. */
  leaseCalls: number
  /**
   * Give-backs of ended leases that never reached the store (it was down for their retries):
   * units left counted (a count too high, never too low) or a credit lease's charges lost.
   */
  lostGiveBacks: number
  /** Settles of local holds answered in process (no store call). */
  localSettles: number
  /** Keys this instance keeps a state for (a rate estimate, a lease, a pin). */
  trackedKeys: number
  /**
   * Admissions the store refused on a limit this instance was leasing (a lease alive or taken
   * within the last second): an upper count of this instance's early refusals, the only ones
   * capacity parked in leases can cause (docs/leases.md).
   */
  refusedWhileLeasing: number
}

export interface LeasedCounterStore extends CounterStore {
  /**
   * `consume` in two steps, so a caller can keep its queue for store calls: the admission
   * answered from leases (at once, or once a lease is taken: one store call for every
   * admission waiting on the key), or null: then `consumeCentral` (the store decides).
   * An answer given at once cannot be timed out on, so it is not kept for a later `cancel`
   * (its holds end by their settle): only an answer given through a promise, and every answer
   * of `consume`, can be cancelled.
   */
  lease(
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
  ): ConsumeResult | Promise<ConsumeResult | null> | null
  /**
   * `settle` in two steps, as `lease` is for `consume`: applies at once what leases hold (the
   * release of a hold a credit lease took, a cancel of an admission answered here) and
   * returns the ops left for the store, in their order: none, and the settle is done with
   * nothing to wait for; else `settleCentral` sends them.
   */
  settleLocal(ops: ReadonlyArray<SettleOp>, now: number): SettleOp[]
  /** Sends to the store the ops `settleLocal` left. */
  settleCentral(ops: ReadonlyArray<SettleOp>, now: number): Promise<void>
  /** `consume` decided by the store, with no lease. */
  consumeCentral(
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
  ): Promise<ConsumeResult>
  stats(): LeaseStats
  /** Ends the leases due at `now` (and, with `all`, every lease), returning their unused part. */
  flush(now: number, all?: boolean): Promise<void>
  /**
   * Puts in the store what the leases know at `now` (`tb.flush()`): every credit lease is
   * released with the charges settled against it, its requests in flight carried into a new
   * store hold first (they settle against it later); every window lease gives back its
   * unused units. GCRA leases stay (their unused slots drain by design). Resolves once the
   * store has taken it, or its give-backs have run out of retries.
   */
  push(now: number): Promise<void>
  /** Ends every lease and waits for the store calls still in flight. */
  close(now: number): Promise<void>
}

type GcraCheck = Extract<Check, { type: 'gcra' }>
type WindowCheck = Extract<Check, { type: 'window' }>
type HoldCheck = Extract<Check, { type: 'hold' }>

interface GcraLease {
  kind: 'gcra'
  /** Lower bound of the slot time unit 0 starts at (ms). */
  x: number
  /** The emission interval, `windowMs / limit`. */
  t: number
  n: number
  /** The next unused unit. */
  next: number
}

interface WindowLease {
  kind: 'window'
  check: WindowCheck
  /** The bucket the units were charged in (0 for all-time). */
  bucket: number
  /** Admits until this time (exclusive). */
  until: number
  n: number
  used: number
  /** Dropped because the store lost the counter: nothing of it is counted there. */
  lost?: true
  /**
   * The store's record of the charge (the lease's `consume` carried an `AdmissionId`): the
   * give-back is then a `cancel` of it with the unused units, taken from the bucket charged,
   * applied once however often it is sent.
   */
  record?: { key: string; at: number; ttlMs: number }
}

interface HoldLease {
  kind: 'hold'
  check: HoldCheck
  id: string
  n: number
  /** Taken then. */
  start: number
  /** New local holds until then. */
  until: number
  /** The store's hold expires then: every local hold ends before it. */
  expiresAt: number
  charged: number
  /** Local holds: id -> amount and expiry. */
  holds: LocalHolds
  /** The store lost its hold (it came back empty): its release makes it again first. */
  gone?: true
}

/**
 * A hold this instance releases with a charge not yet taken by the store: a credit lease's own
 * (with its charges), or a request's local hold whose move into the store failed at close. Its
 * release is applied once per its `record` (a tombstone), so however often and in whatever
 * order its attempts land, and whatever became of the hold, it charges once. With no record
 * (a counter with no hash tag) it is `ifHeld` (a release without it of a hold not there
 * charges each time it is applied), and a hold the store does not hold (lapsed while the store
 * was out, lost, never moved) is made again first (`heldAlready`) until a release was sent.
 */
interface Owed {
  key: string
  check: HoldCheck
  amount: number
  /** The store holds it until then (0: not at all). */
  heldUntil: number
  /**
   * The record (`AdmissionId` key, under the counter's hash tag) whose tombstone says a release
   * of it has landed: each attempt is a release once per this record. Undefined for a counter
   * with no hash tag: then `sent` stands for it.
   */
  record?: string
  /**
   * (No `record`.) A release of it was sent since the store held it: it may have landed, so the
   * hold is not made again (a release landed, then the hold made again, would charge twice).
   */
  sent?: true
  /** Given up then: its release is no longer retried (and is forgotten). */
  until: number
}

/**
 * The record of the releases of hold `holdId` of counter `key` (see `Owed.record`): under the
 * counter's hash tag, so one store call (one Redis Cluster slot) takes both.
 */
export function releaseRecord(key: string, holdId: string): string | undefined {
  const tag = /^\{[^{}]+\}/.exec(key)?.[0]
  return tag === undefined ? undefined : `${tag}:a:rel-${holdId.replaceAll(':', '-')}`
}

type Lease = GcraLease | WindowLease | HoldLease

interface KeyState {
  lease: Lease | null
  /** Units seen in the current rate span, and the rate of the last span (units/ms). */
  units: number
  since: number
  rate: number
  /** What the store last said was left. */
  remaining: number
  resetMs: number
  /** Decided centrally until then. */
  coolUntil: number
  /**
   * The store answered `missing` for the counter (a bare `rebuild` check on a counter not made
   * yet): decided centrally, with no lease request, until a central answer shows it made.
   */
  unmade: boolean
  /** Never leased (a settle adds to it, or it is exact). */
  pinned: boolean
  /** A lease request in flight. */
  pending: Promise<void> | null
  /** When this instance last took a lease of the key. */
  leasedAt: number
  /** Credit leases that admit no more but still have local holds in flight. */
  retired: HoldLease[]
}

interface LocalAdmission {
  expiresAt: number
  cancelled: boolean
  /** What it took: each check with the lease it took from (for its cancel). */
  taken: Array<[Check, Lease]>
}

let leaseSeq = 0

/**
 * A store hold of credits the leases of `key` hold already (`like`: their check): with no
 * limit, as it must not be refused for the units it replaces. A carry of a key's local holds
 * into a new hold (`pushHolds`), and a request's own hold at close (`holdOut`).
 */
function heldAlready(
  key: string,
  like: HoldCheck,
  amount: number,
  holdId: string,
  ttlMs: number,
): Check {
  const hold: Check = { type: 'hold', key, name: like.name, limit: Infinity, amount, holdId, ttlMs }
  if (like.keepUntil !== undefined) hold.keepUntil = like.keepUntil
  return hold
}

/**
 * Wraps `inner` with leases. Every instance that shares the store should be wrapped, or be
 * plain: a plain instance is decided centrally and sees leased units as counted.
 */
export function leasedCounters(
  inner: CounterStore,
  options: LeaseOptions = {},
): LeasedCounterStore {
  const leaseMs = options.leaseMs ?? 100
  const maxShare = options.maxShare ?? 0.01
  const minUnits = options.minUnits ?? 8
  const exhaustDivisor = options.exhaustDivisor ?? 8
  const holdLeaseMs = options.holdLeaseMs ?? 1000
  const holdGraceMs = options.holdGraceMs ?? 60_000
  const windowLeaseMs = options.windowLeaseMs ?? 1000
  const clockSkewMs = options.clockSkewMs ?? 2000
  const cooldownMs = options.cooldownMs ?? 250
  const rateMs = options.rateMs ?? 1000
  const exact = options.exact
  for (const [name, v] of Object.entries({ leaseMs, maxShare, minUnits, exhaustDivisor, rateMs }))
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v)))
      throw new Error(`leasedCounters: option ${name} must be a positive number`)
  if (!(clockSkewMs >= 0 && Number.isFinite(clockSkewMs)))
    throw new Error('leasedCounters: option clockSkewMs must be 0 or a positive number')
  /** How long a credit lease (or a carry of its holds) counts on its store hold, on its clock. */
  const holdTtlMs = holdLeaseMs + holdGraceMs
  /**
   * The TTL its store hold is taken with: longer by the most two clocks differ, so that no
   * instance sees it lapse before its holder ends it. Before, a clock 4 s ahead saw a lease's
   * hold lapse while the lease still held a request, and the lease's release then found no
   * hold and charged nothing (docs/leases.md, "Clocks").
   */
  const storeHoldTtlMs = holdTtlMs + 2 * clockSkewMs
  /**
   * How long a release with charges is retried from its end (`Owed.until`): the store hold's
   * TTL and as long again after it lapses (a minute at least), so the charges land when the
   * store is back within that, its hold made again if it lapsed meanwhile. Before, it was the
   * hold's TTL from the lease's end: a store down past it lost the lease's charges.
   */
  const owedMs = holdTtlMs + Math.max(storeHoldTtlMs, 60_000)
  const recordOf = (key: string, holdId: string): { record?: string } => {
    const record = releaseRecord(key, holdId)
    return record === undefined ? {} : { record }
  }
  const instance = `${Date.now().toString(36)}${(leaseSeq++).toString(36)}${Math.random().toString(36).slice(2, 8)}`

  const flushEveryMs = options.flushEveryMs ?? 100
  const clock = options.clock ?? Date.now
  if (!(flushEveryMs >= 0 && Number.isFinite(flushEveryMs)))
    throw new Error('leasedCounters: option flushEveryMs must be 0 or a positive number')
  if (flushEveryMs > 0 && !(holdGraceMs > 2 * flushEveryMs))
    throw new Error('leasedCounters: option holdGraceMs must exceed twice flushEveryMs')
  // A credit lease is released this long before its store hold expires (two timer periods).
  const margin = flushEveryMs > 0 ? 2 * flushEveryMs : 1
  // A credit lease with charges is ended this long after it was taken (0: at its TTL only).
  const rotateMs = flushEveryMs
  let timer: ReturnType<typeof setInterval> | null = null
  /** `close` was called: no lease is taken from then on (every admission goes to the store). */
  let closing = false
  const startTimer = () => {
    if (timer !== null || flushEveryMs === 0 || closing) return
    timer = setInterval(() => {
      void sweep(clock(), false)?.catch(() => {})
    }, flushEveryMs)
    ;(timer as { unref?: () => void }).unref?.()
  }

  const keys = new Map<string, KeyState>()
  /** Admissions answered here, by id, in order of expiry (for a late cancel). */
  const admissions = new Map<string, LocalAdmission>()
  /**
   * How many of them are cancelled: only a cancelled id refuses a consume under it, so with none
   * the hot path does not look its admission id up (a fresh string to hash: 15 % of the lease
   * path's own time, `bench/lease-path.ts`).
   */
  let cancelledCount = 0
  const inFlight = new Set<Promise<unknown>>()
  /** Releases with a charge the store has not taken yet, by hold id (see `Owed`). */
  const owed = new Map<string, Owed>()
  const stats: Omit<LeaseStats, 'leases' | 'parkedUnits' | 'trackedKeys'> = {
    acquired: 0,
    localAdmissions: 0,
    centralAdmissions: 0,
    storeCalls: 0,
    returnedUnits: 0,
    refusedLeases: 0,
    leaseCalls: 0,
    lostGiveBacks: 0,
    localSettles: 0,
    refusedWhileLeasing: 0,
  }
  let lastSweep = -Infinity

  const state = (key: string, now: number): KeyState => {
    let s = keys.get(key)
    if (!s) {
      s = {
        lease: null,
        units: 0,
        since: now,
        rate: 0,
        remaining: Infinity,
        resetMs: 0,
        coolUntil: -Infinity,
        unmade: false,
        pinned: false,
        pending: null,
        leasedAt: -Infinity,
        retired: [],
      }
      keys.set(key, s)
    }
    return s
  }

  /** Counts `units` of traffic on a key and keeps its rate (units per ms). */
  const observe = (s: KeyState, units: number, now: number) => {
    const span = now - s.since
    if (span >= rateMs) {
      s.rate = s.units / span
      s.units = 0
      s.since = now
    }
    s.units += units
  }
  /**
   * A key's rate: the larger of the last span's and the current one's, the current span counted
   * only once it holds `least` units and taken as lasting at least 10 ms. That is a lower bound
   * of its true rate, so a key turning hot is seen at once (128 requests in one instant are 12.8
   * per ms, not unknown for 10 ms while whole waves of a burst go to the store), and a cold key
   * is not: one request is not a rate of 0.1 per ms (it would lease 10 units at once).
   */
  const rateOf = (s: KeyState, now: number, least: number) =>
    s.units < least
      ? s.rate
      : Math.max(s.rate, s.units / Math.max(now - s.since, Math.min(10, rateMs)))

  /** The units a check takes (the hold's amount for a hold). */
  const unitsOf = (c: Check) => (c.type === 'hold' ? c.amount : c.cost)

  /** Whether a check may ever be leased (the rest is decided by the store). */
  const leasable = (c: Check): boolean => {
    // Concurrency and token limits come marked exact from the core (1-unit holds; counts
    // trued-up by negative adds).
    if (c.exact === true || exact?.(c)) return false
    if (!(c.limit > 0 && Number.isFinite(c.limit))) return false
    switch (c.type) {
      case 'gcra':
        return c.cost === 1
      case 'window':
        return rebuildable(c) && Number.isInteger(c.cost) && c.cost >= 1
      case 'hold':
        return rebuildable(c) && c.amount > 0
    }
  }
  /**
   * A count rebuilt from the usage (`rebuild.base`) is central. A bare `rebuild: {}` only asks
   * the store to refuse when the counter is missing: the lease request carries it, so a lease
   * is taken only on a counter the store vouches for (a refused one sends the admission to
   * the store, which answers `missing` to the core as before).
   */
  const rebuildable = (c: WindowCheck | HoldCheck) => c.rebuild?.base === undefined

  /** Units of a live lease not used yet, at `now` (0 when it cannot admit). */
  const free = (l: Lease, now: number): number => {
    switch (l.kind) {
      case 'gcra':
        return Math.max(0, l.n - Math.max(l.next, Math.ceil((now - l.x) / l.t)))
      case 'window':
        return now < l.until && bucketOf(l.check, now) === l.bucket ? l.n - l.used : 0
      case 'hold':
        return now < l.until ? Math.max(0, roundAmount(l.n - l.charged - l.holds.amount(now))) : 0
    }
  }

  const bucketOf = (c: WindowCheck, now: number) =>
    c.windowMs === 0 ? 0 : Math.floor(now / c.bucketMs)

  /** Room for this check in its lease at `now`. */
  const fits = (c: Check, l: Lease | null, now: number): boolean => {
    if (!l || l.kind !== c.type) return false
    if (c.type === 'hold') {
      const h = l as HoldLease
      // A lowered limit (a plan change) is not admitted against a lease taken under a higher one.
      return (
        now < h.until &&
        c.limit >= h.check.limit &&
        now + c.ttlMs <= h.expiresAt - margin &&
        free(h, now) >= c.amount
      )
    }
    // Nor a quota lowered on some instance (a key's limits changed): the lease's units were
    // counted under the old limit, and the store may be at the new one already.
    if (l.kind === 'window' && c.limit < l.check.limit) return false
    return free(l, now) >= Math.max(1, c.cost)
  }

  /** Takes this check out of its lease (`fits` said yes). */
  const take = (c: Check, l: Lease, now: number, local: LocalAdmission | null) => {
    local?.taken.push([c, l])
    switch (l.kind) {
      case 'gcra': {
        const cost = (c as GcraCheck).cost
        l.next = Math.max(l.next, Math.ceil((now - l.x) / l.t)) + cost
        return
      }
      case 'window':
        l.used += (c as WindowCheck).cost
        return
      case 'hold': {
        const h = c as HoldCheck
        l.holds.set(h.holdId, h.amount, now + h.ttlMs)
        return
      }
    }
  }

  /**
   * Takes back what a cancelled local admission took of `l` for `c`, as the store's cancel
   * does for an admission it counted (`limits/counters` `revert`): a local hold dropped with
   * no charge; a window's units back into the lease while it lives (its end gives them back
   * with the rest), else out of the store's count, only while the bucket they were charged in
   * is current (later, they stay counted, as a lease's give-back does: a count too high, never
   * too low); a GCRA lease's slots that have not started yet, while it lives (an ended one's
   * drain by themselves). Returns the op for the store, if any.
   */
  const untake = (c: Check, l: Lease, now: number): SettleOp | null => {
    const live = keys.get(c.key)?.lease === l
    switch (l.kind) {
      case 'gcra':
        if (live) l.next = Math.max(Math.ceil((now - l.x) / l.t), l.next - (c as GcraCheck).cost)
        return null
      case 'window': {
        const w = c as WindowCheck
        if (live) l.used = Math.max(0, l.used - w.cost)
        else if (!l.lost && bucketOf(l.check, now) === l.bucket)
          return { type: 'add', check: { ...l.check, key: c.key, cost: -w.cost } }
        return null
      }
      case 'hold': {
        const h = c as HoldCheck
        if (releaseLocal(h.key, h.holdId, 0, now)) return null
        // Moved into a store hold of its own at close (or not, the store down): dropped there
        // with no charge.
        owed.delete(h.holdId)
        return { type: 'release', key: h.key, holdId: h.holdId, charge: 0, ifHeld: true }
      }
    }
  }

  const localResult = (c: Check, s: KeyState): CheckResult => {
    const remaining = Number.isFinite(s.remaining) ? Math.max(0, s.remaining) : c.limit
    return {
      allowed: true,
      limit: c.limit,
      used: Math.max(0, c.limit - remaining),
      remaining,
      resetMs: s.resetMs,
      retryAfterMs: 0,
    }
  }

  /** The lease size for a check at `now`; 0: not worth one. */
  const sizeOf = (c: Check, s: KeyState, now: number): number => {
    // A request hold that would outlive any lease's store hold is never local.
    if (c.type === 'hold' && c.ttlMs > holdGraceMs - margin) return 0
    const rate = rateOf(s, now, minUnits * Math.max(1, unitsOf(c)))
    let span = leaseMs
    if (c.type === 'window' && c.windowMs > 0)
      span = Math.min(span, (bucketOf(c, now) + 1) * c.bucketMs - now)
    // Hot enough: the key's own traffic fills a lease of `minUnits` within `leaseMs`.
    if (rate * span < minUnits * Math.max(1, unitsOf(c))) return 0
    let n = Math.ceil(rate * span)
    // A GCRA lease's slots pass at the limit's own rate: it spans `leaseMs` of slots, or it
    // would last less than that on a bucket with room (docs/leases.md).
    if (c.type === 'gcra') n = Math.max(n, Math.ceil((leaseMs * c.limit) / c.windowMs))
    n = Math.min(n, Math.floor(maxShare * c.limit))
    if (Number.isFinite(s.remaining)) n = Math.min(n, Math.floor(s.remaining / exhaustDivisor))
    const unit = Math.max(1, unitsOf(c))
    return n >= minUnits * (c.type === 'hold' ? unit : 1) && n >= unit ? n : 0
  }

  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p)
    const done = () => inFlight.delete(p)
    p.then(done, done)
    return p
  }

  const settleInner = (ops: ReadonlyArray<SettleOp>, now: number): Promise<void> => {
    if (owed.size > 0) {
      for (const op of ops)
        if (op.type === 'release' && owed.get(op.holdId)?.key === op.key)
          return track(settleOwed(ops, now))
    }
    stats.storeCalls++
    return track(inner.settle(ops, now))
  }

  /**
   * `ops` with releases the store owes a charge for (`owed`): each is sent once per its record
   * (`SettleOp` release `record`): however often and in whatever order its attempts land, and
   * whether or not the store still holds the hold then, it charges once. Once the store has
   * taken them they are owed no more. A counter with no hash tag has no record: its release is
   * sent `ifHeld`, its hold made again first (no limit: its credits were held already) when the
   * store may not hold it at `now` and no release of it was sent yet. Before, a hold was not
   * made again once a release had been sent (it might have landed), so a lease whose store
   * hold lapsed while the store was down charged nothing when it was back: its retry found no
   * hold.
   */
  const settleOwed = async (ops: ReadonlyArray<SettleOp>, now: number): Promise<void> => {
    const ids: string[] = []
    const once = new Map<string, { key: string; ttlMs: number }>()
    for (const op of ops) {
      if (op.type !== 'release') continue
      const o = owed.get(op.holdId)
      if (o?.key !== op.key) continue
      ids.push(op.holdId)
      // With no charge there is nothing to land: the release only drops what is there.
      if (op.charge === 0) continue
      // Kept past the last attempt that may make the hold again (before `until`).
      const ttlMs = Math.max(1, o.until - now) + 2 * clockSkewMs + 1000
      if (o.record !== undefined) {
        // Charged once per record whatever became of the hold (`SettleOp` release `record`):
        // an attempt that finds its hold there and one that finds it gone alike. A release
        // `ifHeld` paired with a tombstone charged nothing when the hold was dropped before it
        // ran though no release had landed: in a Redis frozen past the hold's TTL, another
        // instance's call at its later clock, read first at the thaw, dropped the lapsed hold
        // (164 of a lease's 200 credits lost, test/fault/lease-outage).
        once.set(op.holdId, { key: o.record, ttlMs })
        continue
      }
      if (now < o.heldUntil || o.sent) continue
      stats.storeCalls++
      stats.leaseCalls++
      const hold = heldAlready(o.key, o.check, o.amount, op.holdId, storeHoldTtlMs)
      const r = await inner.consume([hold], now)
      if (!r.allowed) throw new Error(`leasedCounters: hold ${op.holdId} not made again`)
      o.heldUntil = now + holdTtlMs
    }
    for (const id of ids) {
      const o = owed.get(id)
      if (o) o.sent = true
    }
    const send: SettleOp[] = []
    for (const op of ops) {
      if (op.type !== 'release' || !ids.includes(op.holdId)) send.push(op)
      else {
        const record = once.get(op.holdId)
        // `ifHeld` kept beside the record: a store of its own that does not know `record` yet
        // releases as before, never charging twice.
        send.push(record ? { ...op, ifHeld: true, record } : { ...op, ifHeld: true })
      }
    }
    if (send.length > 0) {
      stats.storeCalls++
      await inner.settle(send, now)
    }
    for (const id of ids) owed.delete(id)
  }

  /** The op that ends a lease (null: nothing to give back). */
  const endOp = (key: string, l: Lease, now: number): SettleOp | null => {
    switch (l.kind) {
      case 'gcra':
        // Never returned: the unused slots drain by themselves (see docs/leases.md).
        return null
      case 'window': {
        const unused = l.n - l.used
        if (unused <= 0) return null
        if (l.record) {
          // Taken back from the bucket charged (`at`), once: a cancel of the charge's record
          // with the unused units. Sent again after a failure, it finds its tombstone.
          stats.returnedUnits += unused
          const { key: record, at, ttlMs } = l.record
          return {
            type: 'cancel',
            key: record,
            ttlMs,
            at,
            checks: [{ ...l.check, key, cost: unused }],
          }
        }
        // A give-back only into the bucket the units were charged in.
        if (bucketOf(l.check, now) !== l.bucket) return null
        stats.returnedUnits += unused
        return { type: 'add', check: { ...l.check, key, cost: -unused } }
      }
      case 'hold': {
        stats.returnedUnits += Math.max(0, l.n - l.charged)
        // Only while its store hold is there (`ifHeld`), from the first attempt: an attempt that
        // failed may land after its retry (on another connection), and a release without
        // `ifHeld` charged again then. A hold the store no longer has is made again first.
        const op: SettleOp = { type: 'release', key, holdId: l.id, charge: l.charged, ifHeld: true }
        if (l.check.keepUntil !== undefined) op.keepUntil = l.check.keepUntil
        if (l.charged > 0)
          owed.set(l.id, {
            key,
            check: l.check,
            amount: l.n,
            heldUntil: l.gone ? 0 : l.expiresAt,
            ...recordOf(key, l.id),
            until: now + owedMs,
          })
        return op
      }
    }
  }

  /** Whether a lease is over at `now`: it can admit nothing more and owes nothing. */
  const over = (l: Lease, now: number): boolean => {
    if (l.kind === 'hold') {
      if (now >= l.expiresAt - margin) return true
      return now >= l.until && l.holds.count(now) === 0
    }
    if (l.kind === 'window')
      return now >= l.until || bucketOf(l.check, now) !== l.bucket || l.used >= l.n
    return free(l, now) === 0
  }

  /** Ends the leases that are over (all of them with `all`) and sends what they give back. */
  const sweep = (now: number, all: boolean): Promise<void> | null => {
    lastSweep = now
    const ops: SettleOp[] = []
    for (const [key, s] of keys) {
      const l = s.lease
      // A credit lease with charges admits no more once it is a timer period old: its charges
      // reach the store within about `flushEveryMs`, so a crashed instance loses no more than
      // that many ms of them (the next request takes a new lease carrying the holds in flight).
      if (l?.kind === 'hold' && l.charged > 0 && rotateMs > 0 && now - l.start >= rotateMs)
        l.until = Math.min(l.until, now)
      if (l?.kind === 'hold' && !all && now >= l.until && !over(l, now)) {
        s.retired.push(l)
        s.lease = null
      } else if (l && (all || over(l, now))) {
        s.lease = null
        const op = endOp(key, l, now)
        if (op) ops.push(op)
      }
      if (s.retired.length > 0)
        s.retired = s.retired.filter((r) => {
          if (!all && !over(r, now)) return true
          ops.push(endOp(key, r, now)!)
          return false
        })
      if (
        !s.lease &&
        s.retired.length === 0 &&
        !s.pending &&
        !s.pinned &&
        now - s.since > 2 * rateMs
      )
        keys.delete(key)
    }
    // In order of expiry (every admission lives `ttlMs` from its answer or its cancel, which
    // moves it to the end), so only the expired ones are visited: a walk over them all, every
    // 10 ms, cost a hot key about 19 µs a request with 60 s of admissions kept.
    if (owed.size > 0) for (const [id, o] of owed) if (o.until <= now) owed.delete(id)
    for (const [k, a] of admissions) {
      if (a.expiresAt > now) break
      admissions.delete(k)
      if (a.cancelled) cancelledCount--
    }
    if (ops.length === 0) return null
    return giveBack(ops, now)
  }

  /**
   * Sends what ended leases give back, a credit lease's release with charges retried on failure
   * (the store down for a while) with growing pauses for as long as they are owed (`Owed.until`:
   * `owedMs` from its end; before, 6 s, then the hold's TTL, and the charges were lost after),
   * every attempt only while its store hold is there (`ifHeld`, see `endOp`; a hold that lapsed
   * is made again first, see `settleOwed`: attempts that land late, in any order, charge once);
   * a window's units given back by a cancel of the lease's record
   * retried for about 6 s (a second finds the tombstone). A negative `add` (a window lease with
   * no record) is sent once, into the bucket its units were charged in: a failed attempt may
   * have been applied all the same (a call timed out on a frozen store runs when it thaws), and
   * a second would take them back twice (the count below what was admitted: 5 give-backs of 143
   * units for one, a count of -272 for 300 admitted, before); not retried, they stay counted (a
   * count too high, never too low).
   * Never rejects; `close` waits for it.
   */
  const giveBack = (ops: SettleOp[], at: number): Promise<void> => {
    // A release with charges is retried for as long as they are owed (`Owed.until`), not 6 s.
    const owing = (op: SettleOp) =>
      op.type === 'release' && (owed.get(op.holdId)?.until ?? -Infinity) > clock()
    const attempt = async (left: SettleOp[], tries: number): Promise<void> => {
      stats.leaseCalls++
      try {
        await settleInner(left, tries === 0 ? at : clock())
      } catch {
        if (tries >= 6 && !left.some(owing)) {
          stats.lostGiveBacks += left.length
          for (const op of left) if (op.type === 'release') owed.delete(op.holdId)
          return
        }
        await new Promise((r) => {
          const t = setTimeout(r, 100 * 2 ** Math.min(tries, 5))
          ;(t as { unref?: () => void }).unref?.()
        })
        const t = clock()
        const again: SettleOp[] = []
        for (const op of left) {
          if (tries >= 6 && !owing(op)) {
            stats.lostGiveBacks++
            continue
          }
          if (op.type === 'add') {
            const c = op.check
            // A failed attempt may still be applied (a call timed out while the store was
            // frozen runs when it thaws), and units given back twice count too low: a window's
            // give-back is sent once (as the core's retried settles drop a refund).
            if (c.cost < 0 || (c.type === 'window' && bucketOf(c, t) !== bucketOf(c, at))) {
              stats.lostGiveBacks++
              continue
            }
            again.push(op)
          } else if (op.type === 'release') again.push({ ...op, ifHeld: true })
          else again.push(op)
        }
        if (again.length > 0) await attempt(again, tries + 1)
      }
    }
    return track(attempt(ops, 0))
  }

  const central = async (
    checks: ReadonlyArray<Check>,
    now: number,
    admission: AdmissionId | undefined,
  ): Promise<ConsumeResult> => {
    stats.storeCalls++
    stats.centralAdmissions++
    const r = await track(inner.consume(checks, now, admission))
    let leasing = false
    for (let i = 0; i < checks.length; i++) {
      const s = keys.get(checks[i]!.key)
      if (s) {
        const res = r.results[i]!
        // A missing counter says nothing of what is left; the core makes it and asks again.
        if (res.missing) {
          lost(s, now)
          continue
        }
        s.unmade = false
        s.remaining = res.remaining
        s.resetMs = res.resetMs
        if (!r.results[i]!.allowed && (s.lease !== null || now - s.leasedAt < 1000)) leasing = true
      }
    }
    if (leasing) stats.refusedWhileLeasing++
    return r
  }

  /**
   * The store answered `missing` for a key: it has lost the counter (a store that came back
   * empty), and with it what this instance's leases of the key had taken there. The core now
   * rebuilds the counter from the recorded usage, which holds every request settled so far, those
   * settled against the leases included (the rebuild flushes the usage first). So the leases
   * admit no more; a window lease gives nothing back (its units are not in the rebuilt count);
   * a credit lease forgets the charges settled against it so far and, when it ends, sends only
   * what its requests still in flight are charged from now on (to a counter that no longer
   * holds its hold: `gone`, it is made again before its release). Before, a lease's charges
   * were counted twice: once in the rebuilt count and again when it was released (30 credits
   * used for 21 served after a restart).
   */
  const lost = (s: KeyState, now: number) => {
    if (s.lease?.kind === 'hold') s.retired.push(s.lease)
    else if (s.lease?.kind === 'window') s.lease.lost = true
    s.lease = null
    for (const r of s.retired) {
      r.charged = 0
      r.until = Math.min(r.until, now)
      r.gone = true
    }
  }

  /** A key's credit leases: the live one and the retired ones. */
  const holdLeases = (s: KeyState): HoldLease[] =>
    s.lease?.kind === 'hold' ? [s.lease, ...s.retired] : s.retired

  /** The amount of local holds in flight in a key's credit leases (carried into a new one). */
  const carried = (s: KeyState, now: number): number => {
    let sum = 0
    for (const l of holdLeases(s)) sum += l.holds.amount(now)
    return roundAmount(sum)
  }

  /** Takes leases for `want` (check, size) in one atomic consume; false when refused. */
  const acquire = async (want: Array<[Check, number]>, now: number): Promise<boolean> => {
    const id = `lease:${instance}:${(leaseSeq++).toString(36)}`
    const amounts = new Map<string, number>()
    const leaseChecks: Check[] = want.map(([c, n]) => {
      if (c.type === 'hold') {
        const amount = roundAmount(n + carried(state(c.key, now), now))
        amounts.set(c.key, amount)
        return {
          type: 'hold',
          key: c.key,
          name: c.name,
          limit: c.limit,
          amount,
          holdId: id,
          ttlMs: storeHoldTtlMs,
          ...(c.keepUntil !== undefined ? { keepUntil: c.keepUntil } : {}),
          ...(c.rebuild !== undefined ? { rebuild: c.rebuild } : {}),
        }
      }
      return { ...c, cost: n }
    })
    // One quota in the request: the charge is recorded (an `AdmissionId` under the key's hash
    // tag, as the core's are), so the lease's give-back can be a cancel, applied once.
    let record: WindowLease['record']
    const windows = want.filter(([c]) => c.type === 'window')
    const tag = windows.length === 1 ? /^\{[^{}]+\}/.exec(windows[0]![0].key)?.[0] : undefined
    if (tag !== undefined)
      record = {
        key: `${tag}:a:${id.replaceAll(':', '-')}`,
        at: now,
        ttlMs: windowLeaseMs + 60_000,
      }
    stats.storeCalls++
    stats.leaseCalls++
    let r: ConsumeResult
    try {
      r = await track(
        inner.consume(
          leaseChecks,
          now,
          record ? { key: record.key, ttlMs: record.ttlMs } : undefined,
        ),
      )
    } catch {
      for (const [c] of want) state(c.key, now).coolUntil = now + cooldownMs
      // A call that failed may have been applied all the same (the server took it, and the
      // pooler in front of it was killed or frozen before it answered): what it took goes
      // back. With a record, one cancel undoes all of it, or leaves a tombstone so that a late
      // landing counts nothing; without, its holds are released with no charge (one landing
      // later lapses by its TTL) and its window and GCRA units stay counted (too high, never
      // too low). Before, all of it stayed: a quota counted 121-284 above the requests served,
      // credits 21 above the units recorded (`test/fault/pgbouncer.test.ts`).
      const undo: SettleOp[] = record
        ? [{ type: 'cancel', key: record.key, ttlMs: record.ttlMs, at: now, checks: leaseChecks }]
        : leaseChecks.flatMap((c): SettleOp[] =>
            c.type === 'hold'
              ? [{ type: 'release', key: c.key, holdId: c.holdId, charge: 0, ifHeld: true }]
              : [],
          )
      if (undo.length > 0) void giveBack(undo, now)
      return false
    }
    // Refused for a counter not made yet, not for lack of room: no check cools down.
    const unmade = !r.allowed && r.results.some((x) => x.missing)
    for (let i = 0; i < want.length; i++) {
      const [c, n] = want[i]!
      const s = state(c.key, now)
      const res = r.results[i]!
      if (res.missing) {
        // Not a lack of room: the store has not made the counter yet. The admission goes to
        // the store, whose `missing` answer makes the core rebuild it; the next admissions
        // lease once a central answer shows it made (a cooldown here made a burst on a new
        // account all central).
        s.unmade = true
        lost(s, now)
        continue
      }
      s.remaining = res.remaining
      s.resetMs = res.resetMs
      if (!r.allowed) {
        if (!unmade) s.coolUntil = now + cooldownMs
        continue
      }
      // The leases before this one: a window's unused part goes back; a credit lease's local
      // holds in flight move into the new lease (its amount carries them), and the old one
      // is released with what its requests were charged.
      const moved = new LocalHolds()
      const ends: SettleOp[] = []
      if (c.type === 'hold') {
        for (const old of holdLeases(s)) {
          old.holds.moveTo(moved, now)
          ends.push(endOp(c.key, old, now)!)
        }
        s.retired = []
      } else if (s.lease) {
        const op = endOp(c.key, s.lease, now)
        if (op) ends.push(op)
      }
      if (ends.length > 0) void giveBack(ends, now)
      switch (c.type) {
        case 'gcra': {
          const t = c.windowMs / c.limit
          // The bucket's end after the charge, from below: `resetMs` rounds up by under
          // 1 ms, `remaining` rounds the free units down by under one.
          const tat = Math.max(now + res.resetMs - 1, now + (c.limit - res.remaining - 1) * t)
          s.lease = { kind: 'gcra', x: tat - n * t, t, n, next: 0 }
          break
        }
        case 'window':
          s.lease = {
            kind: 'window',
            check: c,
            bucket: bucketOf(c, now),
            // At most `windowLeaseMs`, so a lease the traffic stopped using ends within its
            // bucket and gives back its unused units. Before, it admitted to the bucket's end,
            // and ended then, too late to give anything back: an hourly burst of 300 on a daily
            // quota left 4,416 units counted beyond the 7,200 admitted over a day.
            until:
              c.windowMs === 0
                ? now + windowLeaseMs
                : Math.min(now + windowLeaseMs, (bucketOf(c, now) + 1) * c.bucketMs),
            n,
            used: 0,
            ...(record ? { record } : {}),
          }
          break
        case 'hold':
          s.lease = {
            kind: 'hold',
            check: c,
            id,
            n: amounts.get(c.key)!,
            start: now,
            until: now + holdLeaseMs,
            expiresAt: now + holdTtlMs,
            charged: 0,
            holds: moved,
          }
          break
      }
      s.leasedAt = now
      stats.acquired++
      startTimer()
    }
    if (!r.allowed) stats.refusedLeases++
    return r.allowed
  }

  /**
   * The states of the checks `leaseFor` just looked up, in order, for `tryLocal` (one lookup
   * per check and request, not three). Filled and read synchronously, so one array serves all.
   */
  const found: KeyState[] = []

  /**
   * Answers locally when every check fits its lease; null otherwise (nothing taken). With
   * `known`, the checks' states are those in `found`.
   */
  const tryLocal = (
    checks: ReadonlyArray<Check>,
    now: number,
    admission: AdmissionId | undefined,
    known = false,
  ): ConsumeResult | null => {
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i]!
      const s = known ? found[i] : keys.get(c.key)
      if (!fits(c, s?.lease ?? null, now)) return null
    }
    const local: LocalAdmission | null = admission
      ? { expiresAt: now + admission.ttlMs, cancelled: false, taken: [] }
      : null
    const results: CheckResult[] = new Array(checks.length)
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i]!
      const s = known ? found[i]! : keys.get(c.key)!
      take(c, s.lease!, now, local)
      results[i] = localResult(c, s)
    }
    if (admission && local) admissions.set(admission.key, local)
    stats.localAdmissions++
    return { allowed: true, results }
  }

  /**
   * The admission answered from leases: a result at once (in process), a promise of one while
   * a lease is taken for it (null then: the store must decide), or null at once: the store
   * must decide (see `consumeCentral`). An answer at once is kept for a cancel only when
   * `keep` (see `LeasedCounterStore.lease`): keeping 60 s of a hot key's admissions cost
   * memory and garbage collection on every request.
   */
  const leaseFor = (
    checks: ReadonlyArray<Check>,
    now: number,
    admission: AdmissionId | undefined,
    keep: boolean,
  ): ConsumeResult | Promise<ConsumeResult | null> | null => {
    if (now - lastSweep >= 10) void sweep(now, false)?.catch(() => {})
    if (admission && cancelledCount > 0) {
      const known = admissions.get(admission.key)
      if (known?.cancelled) return cancelled(checks)
    }
    if (checks.length === 0) return null
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i]!
      if (!leasable(c)) return null
      for (let j = 0; j < i; j++) if (checks[j]!.key === c.key) return null
      const s = state(c.key, now)
      if (s.pinned) return null
      observe(s, unitsOf(c), now)
      found[i] = s
    }
    return (
      tryLocal(checks, now, keep ? admission : undefined, true) ??
      leaseAndTake(checks, now, admission)
    )
  }

  /** Takes (or waits for) the leases an admission lacks, then answers it from them. */
  const leaseAndTake = async (
    checks: ReadonlyArray<Check>,
    now: number,
    admission: AdmissionId | undefined,
  ): Promise<ConsumeResult | null> => {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (attempt > 0) {
        const done = tryLocal(checks, now, admission)
        if (done) return done
      }
      // Wait for a lease already being taken for one of these keys.
      const pending = checks.map((c) => keys.get(c.key)!.pending).filter((p) => p !== null)
      if (pending.length > 0) {
        await Promise.all(pending)
        continue
      }
      if (attempt > 0) break
      if (closing) return null
      const want: Array<[Check, number]> = []
      for (const c of checks) {
        const s = keys.get(c.key)!
        if (fits(c, s.lease, now)) continue
        if (now < s.coolUntil || s.unmade) return null
        const n = sizeOf(c, s, now)
        if (n === 0) return null
        want.push([c, n])
      }
      const p = acquire(want, now).then(() => {})
      for (const [c] of want) keys.get(c.key)!.pending = p
      try {
        await p
      } finally {
        for (const [c] of want) {
          const s = keys.get(c.key)
          if (s?.pending === p) s.pending = null
        }
      }
    }
    return tryLocal(checks, now, admission)
  }

  const consume = async (
    checks: ReadonlyArray<Check>,
    now: number,
    admission?: AdmissionId,
  ): Promise<ConsumeResult> => {
    const r = leaseFor(checks, now, admission, true)
    const done = r instanceof Promise ? await r : r
    return done ?? central(checks, now, admission)
  }

  /**
   * Takes the local hold `holdId` out of the credit lease of `key` that holds it and charges
   * `charge` to that lease; false when no lease here holds it. One lookup and one delete: the
   * release of a hot key's every request.
   */
  const releaseLocal = (
    key: string,
    holdId: string,
    charge: number,
    now: number,
    ifHeld?: boolean,
  ): boolean => {
    const s = keys.get(key)
    if (!s) return false
    const l = s.lease
    if (l?.kind === 'hold' && chargeTo(l, holdId, charge, now, ifHeld)) return true
    for (const r of s.retired) if (chargeTo(r, holdId, charge, now, ifHeld)) return true
    return false
  }
  const chargeTo = (l: HoldLease, id: string, charge: number, now: number, ifHeld?: boolean) => {
    const expiresAt = l.holds.take(id)
    if (expiresAt === undefined) return false
    // A retried release (`ifHeld`) of a hold gone already charges nothing.
    if (!ifHeld || expiresAt > now) l.charged = roundAmount(l.charged + charge)
    return true
  }

  const settleLocal = (ops: ReadonlyArray<SettleOp>, now: number): SettleOp[] => {
    const rest: SettleOp[] = []
    let carrying: Set<KeyState> | null = null
    for (const op of ops) {
      if (op.type === 'release') {
        if (releaseLocal(op.key, op.holdId, op.charge, now, op.ifHeld)) stats.localSettles++
        else rest.push(op)
      } else if (op.type === 'renew') {
        // A request in flight past a third of its hold's TTL: a local hold is renewed here,
        // and the key's local holds carried into a new store hold that outlives them (the
        // lease's own would lapse first); one carry per key for all its renewals of a call.
        const s = keys.get(op.key)
        let local = false
        if (s)
          for (const l of holdLeases(s))
            if (l.holds.renew(op.holdId, now + op.ttlMs, now)) local = true
        if (!local) rest.push(op)
        else if (s && !carrying?.has(s)) {
          carrying ??= new Set()
          carrying.add(s)
          void pushHolds(op.key, s, now, true).catch(() => {})
        }
      } else if (op.type === 'add') {
        // A counter trued-up after the fact is never leased (see docs/leases.md). One marked
        // exact (a token limit) never is anyway: nothing is kept for its key. Before, every
        // token-limit counter settled here stayed in `keys` for good (pinned, never swept):
        // one entry per key and window, as many as the deployment's keys.
        if (op.check.exact === true || exact?.(op.check)) {
          rest.push(op)
          continue
        }
        const s = state(op.check.key, now)
        s.pinned = true
        if (s.lease) {
          const end = endOp(op.check.key, s.lease, now)
          s.lease = null
          if (end) void giveBack([end], now)
        }
        rest.push(op)
      } else {
        const a = admissions.get(op.key)
        if (a) {
          if (!a.cancelled) {
            // What it took goes back: it counts nothing, as at the store.
            for (const [c, l] of a.taken) {
              const back = untake(c, l, now)
              if (back) rest.push(back)
            }
            a.taken = []
            a.cancelled = true
            cancelledCount++
            a.expiresAt = now + op.ttlMs
            admissions.delete(op.key)
            admissions.set(op.key, a)
          }
          continue
        }
        rest.push(op)
      }
    }
    if (now - lastSweep >= 10) void sweep(now, false)?.catch(() => {})
    return rest
  }

  const settle = async (ops: ReadonlyArray<SettleOp>, now: number): Promise<void> => {
    const rest = settleLocal(ops, now)
    if (rest.length > 0) await settleInner(rest, now)
  }

  const flush = async (now: number, all = false): Promise<void> => {
    await sweep(now, all)
  }

  /**
   * Ends a key's credit leases, with the charges settled against them, and carries its local
   * holds in flight into one new store hold (a retired lease that admits nothing): that hold
   * is taken before the old ones are released, so the holds in flight are never outside a
   * store hold, and with no limit (the units it takes are held already by the leases it
   * replaces, so it must not be refused for them). Until it is answered the key takes no
   * lease (`pending`): its admissions wait for it, then go to the store.
   */
  const pushHolds = async (
    key: string,
    s: KeyState,
    now: number,
    renewing = false,
  ): Promise<void> => {
    while (s.pending) await s.pending
    const live = s.lease
    if (live?.kind !== 'hold') {
      // Retired leases with nothing charged hold only requests in flight: nothing to send,
      // unless a renewal outlives their store holds.
      if (!renewing && s.retired.every((r) => r.charged === 0)) return
    } else {
      // It admits no more: new local holds would escape the carry below.
      live.until = Math.min(live.until, now)
      s.retired.push(live)
      s.lease = null
    }
    const amount = carried(s, now)
    let carry: HoldLease | null = null
    if (amount > 0) {
      const check = s.retired[0]!.check
      const id = `lease:${instance}:${(leaseSeq++).toString(36)}`
      const hold = heldAlready(key, check, amount, id, storeHoldTtlMs)
      const p = (async () => {
        stats.storeCalls++
        stats.leaseCalls++
        await track(inner.consume([hold], now))
      })()
      s.pending = p
      try {
        await p
      } catch {
        // The store is down: the leases stay, retired, and end as before (sweep).
        return
      } finally {
        if (s.pending === p) s.pending = null
      }
      carry = {
        kind: 'hold',
        check,
        id,
        n: amount,
        start: now,
        until: now,
        expiresAt: now + holdTtlMs,
        charged: 0,
        holds: new LocalHolds(),
      }
    }
    // The leases the sweep has not ended meanwhile: their holds still in flight move into
    // the carry (fewer than it holds, when some have settled meanwhile), and each is
    // released with its charges.
    const ends: SettleOp[] = []
    for (const old of s.retired) {
      if (carry) old.holds.moveTo(carry.holds, now)
      ends.push(endOp(key, old, now)!)
    }
    s.retired = []
    if (carry && carry.holds.size > 0) s.retired.push(carry)
    else if (carry) ends.push(endOp(key, carry, now)!)
    if (ends.length > 0) await giveBack(ends, now)
  }

  /**
   * At close: every request still holding credits of a lease here gets a store hold of its
   * own (its `holdId`, amount and expiry, no limit: its units are held by the lease already),
   * taken before the lease is released, and is no longer held here, so its settle goes to the
   * store and charges there, as a request decided centrally does. Before, close released the
   * leases with their requests in flight still held only in process: the store freed their
   * credits, other instances spent them, and the late settles charged beyond the limit.
   * A hold the store does not take (down) is no longer held here all the same: its settle makes
   * it again at the store, then releases it `ifHeld` (`owed`), so it charges once however often
   * it is retried. Before, the settle (failed too) was retried `ifHeld`, found no hold once the
   * store was back and charged nothing: 10 requests in flight at close lost their 20 credits.
   */
  const holdOut = async (now: number): Promise<void> => {
    const calls: Promise<void>[] = []
    // Holds settled here while theirs was being taken: it is released again, with no charge.
    const orphans: SettleOp[] = []
    for (const [key, s] of keys)
      for (const l of holdLeases(s)) {
        l.until = Math.min(l.until, now)
        for (const [holdId, amount, expiresAt] of l.holds.live(now)) {
          const hold = heldAlready(key, l.check, amount, holdId, expiresAt - now)
          stats.storeCalls++
          stats.leaseCalls++
          // Held here until the store holds it: a settle meanwhile charges the lease.
          calls.push(
            track(inner.consume([hold], now)).then(
              () => {
                if (!l.holds.delete(holdId))
                  orphans.push({ type: 'release', key, holdId, charge: 0, ifHeld: true })
              },
              () => {
                // The store is down: its settle makes the hold again, then releases it once.
                if (l.holds.delete(holdId))
                  owed.set(holdId, {
                    key,
                    check: l.check,
                    amount,
                    heldUntil: 0,
                    ...recordOf(key, holdId),
                    until: expiresAt + owedMs,
                  })
              },
            ),
          )
        }
      }
    await Promise.all(calls)
    if (orphans.length > 0) await giveBack(orphans, now)
  }

  const push = async (now: number): Promise<void> => {
    // The leases due end first, as on the timer.
    const swept = sweep(now, false)
    const ops: SettleOp[] = []
    const holds: Promise<void>[] = []
    for (const [key, s] of keys) {
      if (s.lease?.kind === 'window') {
        const op = endOp(key, s.lease, now)
        s.lease = null
        if (op) ops.push(op)
      }
      if (s.lease?.kind === 'hold' || s.retired.length > 0) holds.push(pushHolds(key, s, now))
    }
    await Promise.all([swept, ops.length > 0 ? giveBack(ops, now) : null, ...holds])
  }

  return {
    consume,
    lease: (checks, now, admission) => leaseFor(checks, now, admission, false),
    consumeCentral: (checks, now, admission) => central(checks, now, admission),
    settle,
    settleLocal,
    settleCentral: (ops, now) => (ops.length > 0 ? settleInner(ops, now) : Promise.resolve()),
    async held(key, now) {
      const total = await track(inner.held(key, now))
      stats.storeCalls++
      const l = keys.get(key)?.lease
      if (l?.kind !== 'hold' || now >= l.expiresAt) return total
      // The store counts the whole lease; this instance knows what it holds of it.
      return Math.max(0, total - l.n + l.charged + l.holds.amount(now))
    },
    claim: (key, ttlMs, now) => inner.claim(key, ttlMs, now),
    claimed: (key, now) => inner.claimed(key, now),
    unclaim: (key) => inner.unclaim(key),
    ...(inner.concurrency !== undefined ? { concurrency: inner.concurrency } : {}),
    ...(inner.durable ? { durable: true as const } : {}),
    stats() {
      let leases = 0
      let parked = 0
      for (const s of keys.values()) {
        // A retired credit lease admits no more but still holds its store hold.
        leases += s.retired.length
        if (!s.lease) continue
        leases++
        parked += free(s.lease, lastSweep)
      }
      return { leases, parkedUnits: parked, trackedKeys: keys.size, ...stats }
    },
    flush,
    push,
    async close(now) {
      closing = true
      if (timer !== null) clearInterval(timer)
      timer = null
      // A lease request in flight when close began is answered meanwhile: the lease it takes
      // (and what admissions took of it) is ended in the next round. Before, it outlived the
      // close: its unused units stayed counted, its credit charges stayed in process.
      for (let round = 0; round < 4; round++) {
        await holdOut(now)
        await flush(now, true)
        await Promise.allSettled([...inFlight])
        let open = inFlight.size
        for (const st of keys.values()) if (st.lease || st.retired.length > 0) open++
        if (open === 0) break
      }
    },
  }
}
