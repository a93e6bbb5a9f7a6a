/**
 * @module authenticate
 *
 * The request pipeline as data: one record per request (an {@link Attempt}), and a list of
 * steps, cheapest first so bad traffic costs little. Each step reads and fills the record and
 * answers a refusal, or nothing to go on, or the promise of either when it needs I/O; one
 * driver ({@link run}) runs them and owns the only seam between synchronous and asynchronous:
 * a request that needs no I/O (a cached key, a cached account, in-process counters) is
 * decided without a promise or a microtask.
 *
 * 1. the credential; 2. the failed-auth guard; 3. the key: memo, parse with no I/O (prefix,
 * charset, length, checksum), hash, cache, storage; 4. its status, kind, scopes, time blocks;
 * 5. the estimates (cost, tokens, BYOK provider keys from headers); 6. the account;
 * 7. admission: every limit in one atomic `consume`, credits reserved; 8. the refusal of a
 * limit. Then the admission, with what settle needs (src/settle.ts).
 */

import { type CachedKey, MARKED, NEVER } from './cache.js'
import type { Context } from './context.js'
import { Admission, type Decision, type Denial, publicKey } from './decision.js'
import { denial } from './denials.js'
import { isTollboothError, StorageUnavailableError } from './errors.js'
import {
  type LimitFigures,
  setBypassHeaders,
  setIetfHeaders,
  setRateLimitHeaders,
  setRetryAfter,
  setUsageHeaders,
  withHeader,
} from './headers.js'
import { useCheck } from './keys/first-use.js'
import { isWellFormedKey } from './keys/format.js'
import {
  type CheckTemplate,
  compileKeyLimits,
  decidingRefusal,
  instantiate,
  refusal,
} from './limits/admission.js'
import { roundAmount } from './limits/amount.js'
import { withinTimeBlocks } from './limits/time-blocks.js'
import { type AdmissionAccount, CREDIT_KEEP_MS } from './metering/accounts.js'
import { rebuildBase, rebuildSource } from './metering/rebuild.js'
import { argumentError, type ResolvedRoute } from './options.js'
import {
  clientIp,
  extractKey,
  idempotencyKey,
  incomingRequestId,
  isForwarded,
  isMapped,
  NO_ADDRESS,
  readHeader,
  type TollboothRequest,
} from './request.js'
import { notSent } from './retry-queue.js'
import { holdCredits, openSettlement } from './settle.js'
import { isInProcess } from './storage/in-process.js'
import { syncCounters } from './storage/state-counters.js'
import type {
  AdmissionId,
  Check,
  CheckResult,
  ConsumeResult,
  KeyKind,
  KeyRecord,
  Rebuild,
  SettleOp,
} from './storage/types.js'
import { warnOnce } from './warnings.js'

/**
 * A cache entry for a stored key: its limits compiled once. `touchedAt` is its stored
 * `lastUsedAt` by the cache's clock (`KeyCache.since`).
 */
export function toCached(record: KeyRecord, touchedAt: number): CachedKey {
  const own = compileKeyLimits(record)
  return {
    info: publicKey(record),
    revokedAt: record.revokedAt,
    active: record.active,
    timeBlocks: record.limits.timeBlocks,
    own0: own[0] ?? null,
    own1: own[1] ?? null,
    ownMore: own.length > 2 ? own.slice(2) : null,
    touchedAt,
    // No tally row yet (`TallyPlace`): found by the account's list at the first event.
    tallyRow: -1,
    tallyGen: 0,
    account: undefined,
    // Its slot's fields, filled when the cache takes it (`KeyCache.set`).
    entry: null,
    cachedAt: 0,
    expiresAt: 0,
    dead: false,
  }
}

/** What one tollbooth instance's pipeline keeps between requests. */
interface Pipeline {
  readonly ctx: Context
  /** The last internal request id's sequence number. */
  seq: number
  /** `req_` and the instance's id, made once (each request's id is this and `seq`). */
  idPrefix: string | undefined
  /**
   * Forwarding headers on a route that does not trust proxies usually mean a proxy is in
   * front and every client shares its address. Looked for in the first 1,000 requests, and at
   * every failed authentication; warned about once.
   */
  forwardedChecks: number
}

/** One request on its way through the pipeline: what every step reads and fills. */
interface Attempt {
  readonly p: Pipeline
  /** Decided for an adapter (`tb.decide`), which settles it at its response's end. */
  readonly served: boolean
  readonly ctx: Context
  /** The request, its `ip` the client's (behind the trusted proxies). */
  readonly req: TollboothRequest
  readonly route: ResolvedRoute
  readonly now: number
  /** The request's own id: its event id and its holds' id. */
  readonly internalId: string
  /** The id sent back in `X-Request-Id`: the caller's when the route echoes it. */
  readonly requestId: string
  /** The headers of every answer (`X-Request-Id`), then of the admission. */
  readonly headers: Record<string, string>
  /** The credential presented (step 1). */
  key: string
  /** The key found (step 3): null for one unknown. */
  entry: CachedKey | null
  /** The estimates (step 5). */
  metered: boolean
  routeCost: number
  /** Credits to hold: the route's cost, or 0 when the caller brings its own provider key. */
  estimate: number
  /** Tokens reserved against token-rate limits. */
  tokens: number
  providerKeys: Record<string, string>
  callerProviders: ReadonlySet<string>
  /** The account's admission view (step 6), when metered or on plans. */
  account: AdmissionAccount | null
  /** The checks of the admission, each with its template, and the counters' answer (step 7). */
  /** The request's checks and their templates, in the same order (set by `count`). */
  templates: ReadonlyArray<CheckTemplate>
  checks: ReadonlyArray<Check>
  result: ConsumeResult | null
  /** Storage failed and `failOpen` serves the request uncounted. */
  uncounted: boolean
  /** The `Idempotency-Key` header, checked with the key (step 4). */
  idempotencyKey: string | undefined
  /**
   * The time left (ms) for the store's admission after a lease attempt that came back empty
   * (`remoteConsume`); 0: the whole storage timeout.
   */
  leftMs: number
}

/** A step: a refusal, or undefined to go on (or the promise of either). */
type Step = (a: Attempt) => Denial | undefined | Promise<Denial | undefined>

const EMPTY: Record<string, string> = Object.freeze({}) as Record<string, string>
/** No checks (an attempt's until `count` sets them). */
const NONE: ReadonlyArray<never> = Object.freeze([])
const NO_PROVIDERS: ReadonlySet<string> = new Set()
/** Admissions of one account that may wait for a turn, per slot of `accountInFlight`. */
const WAITING_PER_SLOT = 32

/**
 * The pipeline of one tollbooth instance. Its decide function never throws for a request's
 * own faults: every outcome is a value. Storage failures become a 503 `storage_unavailable`
 * denial, unless `failOpen` lets the request through uncounted (a key that cannot be looked
 * up is never let through). It throws (or rejects with) only what a route's `cost` or
 * `tokens` function throws.
 *
 * It returns the decision itself when no step needs I/O, else a promise of it: `tb.decide()`
 * passes that on to the adapters, `tb.authenticate()` always returns a promise.
 */
export function createPipeline(
  ctx: Context,
): (req: TollboothRequest, route: ResolvedRoute, served: boolean) => Decision | Promise<Decision> {
  const p: Pipeline = { ctx, seq: 0, idPrefix: undefined, forwardedChecks: 1000 }
  return (req, route, served) => run(attempt(p, req, route, served), 0)
}

/** The record of a new request: its ids, its client's address, nothing decided yet. */
function attempt(
  p: Pipeline,
  req: TollboothRequest,
  route: ResolvedRoute,
  served: boolean,
): Attempt {
  const ctx = p.ctx
  // The prefix made once: a request's id, kept with its usage event for `maxEvents` requests,
  // is then one string and its rope, not a third string made anew each time.
  p.idPrefix ??= `req_${ctx.instanceId}`
  const internalId = p.idPrefix + (++p.seq).toString(36)
  const requestId = (route.headers.requestId && incomingRequestId(req)) || internalId
  if (route.trustProxy !== false || isMapped(req.ip)) {
    // The client behind the trusted proxies, seen by the guard, key sources and the log.
    req = { ...req, ip: clientIp(req.ip, req.headers, route.trustProxy) }
  }
  if (p.forwardedChecks > 0 && route.trustProxy === false) {
    p.forwardedChecks--
    if (isForwarded(req.headers)) warnForwarded(p)
  }
  return {
    p,
    ctx,
    req,
    route,
    now: ctx.clock.now(),
    internalId,
    requestId,
    headers: route.headers.requestId ? { 'X-Request-Id': requestId } : {},
    key: '',
    entry: null,
    metered: false,
    routeCost: 0,
    estimate: 0,
    tokens: 0,
    providerKeys: EMPTY,
    callerProviders: NO_PROVIDERS,
    account: null,
    templates: NONE,
    checks: NONE,
    result: null,
    uncounted: false,
    idempotencyKey: undefined,
    served,
    leftMs: 0,
  }
}

/** Cheapest first. */
const STEPS: ReadonlyArray<Step> = [
  credential,
  notBlocked,
  findKey,
  knownKey,
  firstUse,
  estimates,
  account,
  count,
  limits,
]

/**
 * Runs the steps from `from` on: the first refusal answers; past the last step the request is
 * admitted. A step that answers a promise is waited for, and the rest run after it.
 */
function run(a: Attempt, from: number): Decision | Promise<Decision> {
  for (let i = from; i < STEPS.length; i++) {
    const out = STEPS[i]!(a)
    if (out === undefined) continue
    if (out instanceof Promise) return out.then((d) => d ?? run(a, i + 1))
    return out
  }
  return admission(a)
}

function warnForwarded(p: Pipeline): void {
  p.forwardedChecks = 0
  warnOnce(
    'TOLLBOOTH_UNTRUSTED_FORWARDED_FOR',
    'a request carries X-Forwarded-For, Forwarded or X-Real-IP but trustProxy is off, so every client behind a proxy shares its address and the failed-auth guard only stops floods there (failedAuth.proxiedLimit); set trustProxy to the number of proxies in front',
  )
}

/** Step 1: the credential. */
function credential(a: Attempt): Denial | undefined {
  const key = extractKey(a.req, a.route.keySources)
  if (key !== undefined) {
    a.key = key
    return undefined
  }
  // A key sent as `Authorization: <key>` is a client mistake worth naming, and never read:
  // guessing the scheme would accept whatever else a client puts in that header.
  if (a.route.keySources.includes('bearer') && readHeader(a.req.headers, 'authorization'))
    return denial('not_bearer', a)
  return denial('missing_api_key', a)
}

/** Step 2: the failed-auth guard's block of the client's address. */
function notBlocked(a: Attempt): Denial | undefined {
  const guard = a.ctx.ipGuard
  if (guard) {
    const ms = guard.blocked(a.req.ip || NO_ADDRESS, a.now)
    if (ms > 0) return ipBlocked(a, ms)
  }
  return undefined
}

/** 403 `ip_blocked`, with `Retry-After`: the seconds until the block ends. */
function ipBlocked(a: Attempt, ms: number): Denial {
  const out = withHeader(a.headers)
  setRetryAfter(out, ms)
  return denial('ip_blocked', a, { headers: out })
}

function kindOf(ctx: Context, key: string): KeyKind | null {
  const p = ctx.options.prefixes
  if (isWellFormedKey(key, p.consumption)) return 'consumption'
  if (isWellFormedKey(key, p.management)) return 'management'
  // Further consumption prefixes (a prefix per type of key), each checked alike.
  for (let i = 1; i < p.consumptionAll.length; i++)
    if (isWellFormedKey(key, p.consumptionAll[i]!)) return 'consumption'
  return null
}

/**
 * Step 3: the key. One seen lately (the memo holds well-formed keys only) costs no format
 * check and no hash; a malformed one no hash; a cache miss the one storage read of the key.
 */
function findKey(a: Attempt): Denial | undefined | Promise<Denial | undefined> {
  const ctx = a.ctx
  const key = a.key
  const memo = ctx.cache.getByKey(key, a.now)
  if (memo !== undefined) {
    a.entry = memo
    return undefined
  }
  if (kindOf(ctx, key) === null) return invalid(a)
  let hash: string
  let hit: CachedKey | null | undefined
  try {
    hash = ctx.hash(key)
    hit = ctx.cache.get(hash)
  } catch (err) {
    return failure(a, err)
  }
  if (hit === undefined) return lookup(a, hash)
  ctx.cache.remember(key, hash)
  a.entry = hit
  return undefined
}

/** A cache miss: the storage lookup, remembered (a miss too) for the cache's TTL. */
async function lookup(a: Attempt, hash: string): Promise<Denial | undefined> {
  const ctx = a.ctx
  try {
    const generation = ctx.cache.generation()
    let record = await ctx.guard(ctx.storage.keys.getByHash(hash))
    // Not found under `secret`: a key stored under one of `previousSecrets`, newest first. It
    // is cached under the hash it is stored by, which is what a revocation or change names.
    for (let i = 0; record === null && i < ctx.previousHashes.length; i++) {
      const previous = ctx.previousHashes[i]!(a.key)
      record = await ctx.guard(ctx.storage.keys.getByHash(previous))
      if (record !== null) {
        hash = previous
        ctx.previous.keys++
      }
    }
    const entry = record ? toCached(record, ctx.cache.since(record.lastUsedAt, a.now)) : null
    // Not cached when the key was dropped meanwhile (a change-feed message: revoked or changed
    // while this read was on its way, the record may be older than the change); this request
    // uses it.
    if (!ctx.cache.droppedSince(hash, generation)) {
      // Keyed by the record's own hash string where it is the same text: an in-process store's
      // record keeps it already, so the cache holds no second copy (80 bytes a key).
      const k = record !== null && record.hash === hash ? record.hash : hash
      ctx.cache.set(k, entry)
      ctx.cache.remember(a.key, k)
    }
    a.entry = entry
    return undefined
  } catch (err) {
    return failure(a, err)
  }
}

/** Step 4: a key unknown or revoked is invalid; its status, kind, scopes and time blocks. */
function knownKey(a: Attempt): Denial | undefined | Promise<Denial> {
  const entry = a.entry
  if (!entry) return invalid(a)
  if (entry.revokedAt !== null && entry.revokedAt <= a.now) return invalid(a)
  const refused = keyRefusal(a, entry)
  // A refusal of a known key is logged; an admitted request pays nothing for this.
  return refused && logged(a, refused)
}

function keyRefusal(a: Attempt, entry: CachedKey): Denial | undefined {
  const route = a.route
  const r = entry.info
  if (!entry.active) return denial('inactive_api_key', a)
  if (r.expiresAt !== null && r.expiresAt <= a.now) return denial('expired_api_key', a)
  if (r.kind !== route.kind) {
    return denial(
      'wrong_key_kind',
      a,
      route.kind === 'consumption'
        ? 'Management keys cannot be used on this route; use a consumption key'
        : 'This route accepts management keys only; consumption keys are refused',
    )
  }
  for (const scope of route.scopes) {
    if (!r.scopes.includes(scope)) return denial('insufficient_scope', a, `Missing scope: ${scope}`)
  }
  if (!withinTimeBlocks(entry.timeBlocks, a.now)) return denial('outside_time_block', a)
  const idk = idempotencyKey(a.req)
  if (idk === null) return denial('invalid_idempotency_key', a)
  a.idempotencyKey = idk
  return undefined
}

/**
 * Step 4b: a key this instance knows no use of takes its first-use counter in the counter
 * store (`keys/first-use`) before anything of it is counted, once per key and instance: a
 * delete on any instance then refuses (409), or, when a delete took it first, the request is
 * refused as a deleted key's. A key used before costs nothing here.
 */
function firstUse(a: Attempt): Denial | undefined | Promise<Denial | undefined> {
  const entry = a.entry!
  const counters = a.ctx.firstUses
  if (entry.touchedAt !== NEVER || counters === null) return undefined
  const checks = [useCheck(entry.info.accountId, entry.info.id)]
  return a.ctx.guard(counters.consume(checks, a.now)).then(
    (r) => marked(a, entry, r),
    (err: unknown) => failure(a, err),
  )
}

function marked(a: Attempt, entry: CachedKey, r: ConsumeResult): Denial | undefined {
  if (!r.allowed) return denial('invalid_api_key', a)
  if (entry.touchedAt === NEVER) entry.touchedAt = MARKED
  return undefined
}

/** Answers an unusable key, counting the failure against the caller's IP. */
async function invalid(a: Attempt): Promise<Denial> {
  const { ctx, req } = a
  if (ctx.ipGuard) {
    // Without trusted proxies, forwarding headers may mean a proxy's address, shared by
    // many clients: only a flood blocks it (`proxiedLimit`). So for a request without an
    // address, all of them counted as one (a Unix socket: nginx's `proxy_pass http://unix:`).
    const forwarded = a.route.trustProxy === false && isForwarded(req.headers)
    if (forwarded) warnForwarded(a.p)
    try {
      const ms = await ctx.guard(
        ctx.ipGuard.fail(req.ip || NO_ADDRESS, a.now, forwarded || !req.ip),
      )
      if (ms > 0) return ipBlocked(a, ms)
    } catch (err) {
      ctx.report(err)
    }
  }
  return denial('invalid_api_key', a)
}

/**
 * A request refused for a known key (its status, kind, scopes, time blocks, limits or
 * credits), logged like a served one: one event pushed to the usage out-box, written in its
 * batches and pruned by its retention, with the status and code and 0 credits. Summaries and
 * billing skip it (`code` is set). Unknown, malformed and revoked keys are not logged.
 */
function logged(a: Attempt, d: Denial): Denial {
  const r = a.entry!.info
  a.ctx.outbox.push({
    id: a.internalId,
    requestId: d.requestId,
    keyId: r.id,
    accountId: r.accountId,
    time: a.now,
    units: 0,
    overage: 0,
    tokens: 0,
    category: a.route.category ?? null,
    keyCategory: r.category,
    status: d.status,
    durationMs: 0,
    ttfbMs: null,
    code: d.code,
    ip: a.req.ip,
    method: a.req.method,
    path: a.req.path,
    bypassed: false,
    provider: null,
  })
  return d
}

/**
 * Step 5: the estimates, and the caller's own provider keys (BYOK) first: with one, the
 * request is not expected to be charged, so nothing is held and it needs no credits.
 */
function estimates(a: Attempt): undefined {
  const { req, route } = a
  let providerKeys: Record<string, string> = EMPTY
  const byok = route.byok
  for (let i = 0; i < byok.length; i++) {
    const provider = byok[i]![0]
    const v = readHeader(req.headers, byok[i]![1])
    if (v) {
      if (providerKeys === EMPTY) providerKeys = {}
      providerKeys[provider] = v
    }
  }
  a.providerKeys = providerKeys
  if (providerKeys !== EMPTY) a.callerProviders = new Set(Object.keys(providerKeys))
  a.metered = route.cost !== undefined
  // On the amount grid (`limits/amount`): a price × tokens with float noise holds its decimal.
  a.routeCost = roundAmount(
    typeof route.cost === 'function' ? costOf(route.cost, req, 'cost') : (route.cost ?? 0),
  )
  a.tokens =
    typeof route.tokens === 'function' ? costOf(route.tokens, req, 'tokens') : (route.tokens ?? 0)
  a.estimate = a.callerProviders.size > 0 ? 0 : a.routeCost
  return undefined
}

/**
 * A route's estimate function (`cost`, `tokens`), checked: a bad value would poison the
 * counters. This error propagates from `authenticate()` as a throw of the function itself does.
 * @throws {ConfigError} naming the route option when it returns anything but a finite number
 *   >= 0: `tb.route: options.cost(request) must return a finite number >= 0, got NaN`
 */
function costOf(
  estimate: (r: TollboothRequest) => number,
  req: TollboothRequest,
  option: 'cost' | 'tokens',
): number {
  const v = estimate(req)
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw argumentError(
      'tb.route',
      `options.${option}(request)`,
      'must return a finite number >= 0',
      v,
    )
  return v
}

/** Step 6: the account's admission view, when metered or on plans (cached, else read). */
function account(a: Attempt): Promise<Denial | undefined> | undefined {
  if (!a.metered && !a.ctx.accounts.hasPlans) return undefined
  const entry = a.entry!
  const held = a.ctx.accounts.peek(entry.info.accountId, a.now, entry.account)
  if (held === undefined) return readAccount(a)
  // Written only when it changed: the entry is long-lived, the view is as old as its cache.
  if (entry.account !== held) entry.account = held
  a.account = held
  return undefined
}

async function readAccount(a: Attempt): Promise<Denial | undefined> {
  const ctx = a.ctx
  try {
    const entry = a.entry!
    const held = await ctx.guard(ctx.accounts.load(entry.info.accountId, a.now))
    // Kept with the key's entry (as `account` does) once cached: the next request's view.
    if (!held.dead) entry.account = held
    a.account = held
    return undefined
  } catch (err) {
    return failure(a, err)
  }
}

/**
 * Step 7: every limit and the credit reservation in one atomic `consume`. Synchronous when
 * the counters are in-process (`syncCounters`).
 */
function count(a: Attempt): Denial | undefined | Promise<Denial | undefined> {
  if (a.uncounted) return undefined
  const o = a.ctx.options
  const account = a.account
  const plan = account ? account.planTemplates : NONE
  const entry = a.entry!
  const own0 = entry.own0
  const own1 = entry.own1
  const more = entry.ownMore
  const metered = a.metered && account !== null
  // Arrays of their length: one that grows by push makes room for 17 at its first push.
  const nOwn = (own0 === null ? 0 : 1) + (own1 === null ? 0 : 1) + (more === null ? 0 : more.length)
  const n = plan.length + nOwn + (metered ? 1 : 0)
  if (n === 0) return undefined
  const templates = new Array<CheckTemplate>(n)
  let k = 0
  for (let i = 0; i < plan.length; i++) templates[k++] = plan[i]!
  // In order: `toCached` fills own1 only after own0, and ownMore only after both.
  if (own0 !== null) templates[k++] = own0
  if (own1 !== null) templates[k++] = own1
  if (more !== null) for (let i = 0; i < more.length; i++) templates[k++] = more[i]!
  // The checks are the templates themselves (a rate limit's, a quota's) until one is made for
  // this request (a hold, a token limit) or marked: one list for both until then, copied
  // before its first change (`unshared`).
  let checks: Check[] = templates
  for (let i = 0; i < k; i++) {
    const c = instantiate(templates[i]!, a, o)
    if (c !== templates[i]) {
      checks = unshared(checks, templates)
      checks[i] = c
    }
  }
  const counters = a.ctx.storage.counters
  const sync = syncCounters(counters)
  // Counters in another process that may come back empty: the counts that must survive that
  // are rebuilt from the durable usage when missing (metering/rebuild).
  const rebuilds = !sync && !counters.durable
  if (metered) {
    // The request's own check, its template too (where its counter was found: the account's).
    const credit: CheckTemplate = {
      type: 'hold',
      key: account.creditKey,
      name: 'credits',
      limit: account.plan?.allowOverage === true ? Infinity : account.creditLimit,
      amount: a.estimate,
      holdId: a.internalId,
      ttlMs: o.reservationTtlMs,
      keepUntil: account.period.end + CREDIT_KEEP_MS,
      role: 'credits',
      tokens: false,
      where: account.where,
      stamp: account.stamp,
    }
    if (account.plan?.exact === true) credit.exact = true
    if (rebuilds) credit.rebuild = REBUILD
    templates[k] = credit
    checks[k] = credit
  }
  // `exact: true` on the route: every check decided by the store (docs/leases.md).
  if (a.route.exact === true) {
    checks = unshared(checks, templates)
    for (let i = 0; i < checks.length; i++) checks[i] = { ...checks[i]!, exact: true }
  }
  if (rebuilds) {
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i]!
      const t = templates[i]!
      if (c.type === 'gcra' || c.rebuild !== undefined) continue
      if (t.role !== 'budget' && !(t.role === 'quota' && c.type === 'window' && c.windowMs === 0))
        continue
      if (c !== t) {
        // This request's own check (a budget's hold): marked in place.
        c.rebuild = REBUILD
      } else {
        // The key's own template check, marked once for all its requests (a copy per request
        // was 11 % of the admission's own time on Redis).
        t.rebuilt ??= { ...c, rebuild: REBUILD }
        checks = unshared(checks, templates)
        checks[i] = t.rebuilt
      }
    }
  }
  a.templates = templates
  a.checks = checks
  if (sync) {
    try {
      // The templates keep where each counter was found (`Place`); the credit's, the account.
      a.result = sync.consume(checks, a.now, undefined, templates)
      if (metered) {
        account.where = templates[k]!.where
        account.stamp = templates[k]!.stamp
      }
    } catch (err) {
      return failure(a, err)
    }
    return undefined
  }
  // An in-process store's answer cannot be lost on the way (no connection, no timeout): it
  // needs no admission identity to cancel by, nor per-account lanes (SQLite's group commit).
  const answer = isInProcess(counters) ? counters.consume(checks, a.now) : remoteConsume(a, checks)
  // Answered from leases at once: no promise to wait for.
  if (!(answer instanceof Promise)) return counted(a, answer)
  return answer.then(
    (result) => counted(a, result),
    (err: unknown) => failure(a, err),
  )
}

/** `checks`, or a copy of it while it is still the list of `templates` (see `count`). */
function unshared(checks: Check[], templates: CheckTemplate[]): Check[] {
  return checks === templates ? templates.slice() : checks
}

/** The counters' answer: the attempt's result, or, for a counter missing, a rebuild first. */
function counted(a: Attempt, result: ConsumeResult): Promise<Denial | undefined> | undefined {
  if (result.allowed || !result.results.some((r) => r.missing)) {
    a.result = result
    return undefined
  }
  return rebuildAndCount(a, result)
}

/** `rebuild` with no base: the store refuses a missing counter (`missing`) rather than make it. */
const REBUILD: Rebuild = Object.freeze({})

/** The counters answered `missing`: reads their counts from the usage, then counts again. */
async function rebuildAndCount(a: Attempt, first: ConsumeResult): Promise<Denial | undefined> {
  const r = a.entry!.info
  const ctx = a.ctx
  const owner = { accountId: r.accountId, keyId: r.id, period: a.account?.period ?? null }
  try {
    const rebuilt = await Promise.all(
      a.checks.map(async (c, i) => {
        if (!first.results[i]!.missing || c.type === 'gcra') return c
        const allTime = c.type === 'window' && c.windowMs === 0
        const source = rebuildSource(a.templates[i]!.role, allTime, owner)
        if (!source) return c
        const base = await ctx.guard(rebuildBase(ctx, c.key, source))
        return { ...c, rebuild: { base } }
      }),
    )
    // The same admission id: the refused first consume recorded nothing under it (a store
    // answers `missing` before it writes a record), and one that timed out never gets here.
    const result = await remoteConsume(a, rebuilt)
    if (!result.allowed && result.results.some((x) => x.missing))
      throw new Error('counter store answered missing after a rebuild')
    a.checks = rebuilt
    a.result = result
    return undefined
  } catch (err) {
    return failure(a, err)
  }
}

/**
 * One admission on a remote store, with an identity: when its answer is lost (a timeout, a
 * dropped connection), a cancel is queued that undoes it if it was applied, or keeps it from
 * ever applying if it was not, so a request answered 503 leaves no count and no hold behind.
 *
 * At most `accountInFlight` admissions of one account are sent to the store at once; the
 * others wait their turn in this process (within the same storage timeout), so one account's
 * burst on a slow store cannot hold every connection while the other accounts time out.
 */
function remoteConsume(a: Attempt, checks: Check[]): ConsumeResult | Promise<ConsumeResult> {
  const ctx = a.ctx
  const accountId = a.entry!.info.accountId
  const now = a.now
  const admission: AdmissionId = {
    key: `{${accountId}}:a:${a.internalId}`,
    ttlMs: ctx.admissionTtlMs,
    // The admission's holds take its id (limits/admission): a store may let one stand for
    // its record.
    holdId: a.internalId,
  }
  const leases = ctx.leases
  if (leases) {
    // Answered from a lease: no store call of its own, so no turn in the account's queue.
    const r = leases.lease(checks, now, admission)
    if (r !== null) {
      if (!(r instanceof Promise)) return r
      const started = Date.now()
      return ctx.guard(r).then(
        (res) => {
          if (res !== null) return res
          // No lease after all (its store call failed, or it came back without room): the
          // store decides, within what is left of the storage timeout, so a request is
          // answered within one timeout, not two (2,005 ms for a timeout of 1,000 on a
          // PostgreSQL frozen while a lease was being taken).
          a.leftMs = Math.max(1, ctx.options.storageTimeoutMs - (Date.now() - started))
          return queued(a, checks, admission)
        },
        (err: unknown) => {
          if (!notSent(err)) cancelAfter(ctx, admission, now, checks, r)
          throw err
        },
      )
    }
  }
  return queued(a, checks, admission)
}

/**
 * Queues the cancel of `admission`, made at `now` with `checks`, whose answer was lost, for
 * once `raw` (the store call) has ended. Its record's life (`ttlMs`) is counted from then,
 * not from `now`: the store may have run the admission any time until then (a Redis frozen
 * or cut off past it ran the call queued in the socket when it came back), and a record a
 * hold or a list line stands for is taken as there only while `at + ttlMs` has not passed
 * (`AdmissionId.holdId`). From `now`, a cancel of an admission run more than `ttlMs` late
 * found nothing and undid nothing: Redis frozen 61 s (a record's life 60 s), 10 requests
 * answered 503 left their quota units (daily +5 of a key, +5 of another), credit holds and
 * concurrency slots (test/fault/redis-late.test.ts).
 */
function cancelAfter(
  ctx: Context,
  admission: AdmissionId,
  now: number,
  checks: Check[],
  raw: Promise<unknown>,
): void {
  const cancel: Extract<SettleOp, { type: 'cancel' }> = {
    type: 'cancel',
    key: admission.key,
    ttlMs: admission.ttlMs,
    at: now,
    checks,
    holdId: admission.holdId,
  }
  const late = () => {
    cancel.ttlMs = admission.ttlMs + Math.max(0, ctx.clock.now() - now)
  }
  // A call the store says it never sent is not cancelled (the queue drops the cancel).
  ctx.retries.add(
    [cancel],
    raw.then(late, (err: unknown) => {
      late()
      throw err
    }),
    true,
  )
}

/** An admission sent to the store, in its turn among the account's (see `remoteConsume`). */
function queued(a: Attempt, checks: Check[], admission: AdmissionId): Promise<ConsumeResult> {
  const ctx = a.ctx
  const accountId = a.entry!.info.accountId
  const now = a.now
  let lane = ctx.admitting.get(accountId)
  if (!lane) {
    lane = { running: 0, waiting: [] }
    ctx.admitting.set(accountId, lane)
  }
  const l = lane
  if (
    l.running >= ctx.accountInFlight &&
    l.waiting.length >= WAITING_PER_SLOT * ctx.accountInFlight
  )
    return Promise.reject(
      new StorageUnavailableError(
        `Storage busy: ${l.running + l.waiting.length} admissions of this account waiting`,
      ),
    )
  let abandoned = false
  let raw: Promise<ConsumeResult> | undefined
  const next = () => {
    const go = l.waiting.shift()
    if (go) go()
    else if (--l.running === 0) ctx.admitting.delete(accountId)
  }
  const send = (): Promise<ConsumeResult> => {
    // Timed out while waiting its turn: never sent, nothing to undo.
    if (abandoned) {
      next()
      return Promise.reject(new StorageUnavailableError('Storage did not answer in time'))
    }
    try {
      raw = ctx.leases
        ? ctx.leases.consumeCentral(checks, now, admission)
        : ctx.storage.counters.consume(checks, now, admission)
    } catch (err) {
      raw = Promise.reject(err)
    }
    raw.then(next, next)
    return raw
  }
  let p: Promise<ConsumeResult>
  if (l.running < ctx.accountInFlight) {
    l.running++
    p = send()
  } else p = new Promise<void>((resolve) => l.waiting.push(resolve)).then(send)
  return ctx.guard(p, a.leftMs).catch((err: unknown) => {
    abandoned = true
    // Not sent (a client that lost its connection refuses at once): nothing to cancel, and
    // no room taken in the retry queue (see `notSent`).
    if (raw && !notSent(err)) cancelAfter(ctx, admission, now, checks, raw)
    throw err
  })
}

/**
 * Step 8: the counters' refusal, with its headers, answered by the limit that decides it. A
 * request refused only for credits (the account's or its key's budget) whose account has a
 * stored key of one of the route's `byok` providers is counted again without a hold first.
 */
function limits(a: Attempt): Denial | undefined | Promise<Denial | undefined> {
  const result = a.result
  if (!result || result.allowed) return undefined
  if (a.estimate > 0 && a.route.byok.length > 0 && onlyCredits(a.templates, result.results))
    return withStoredKey(a)
  return refused(a)
}

/** True when every refusal in `results` is of a charged hold (credits or a key's budget). */
function onlyCredits(
  templates: ReadonlyArray<CheckTemplate>,
  results: ReadonlyArray<CheckResult>,
): boolean {
  for (let i = 0; i < results.length; i++) {
    const role = templates[i]!.role
    if (!results[i]!.allowed && role !== 'credits' && role !== 'budget') return false
  }
  return true
}

/**
 * The credits cannot cover the estimate: when the account has a stored key, usable under this
 * instance's secret, of a provider the route takes its own keys for, the request is expected
 * to be served on it (BYOK, not charged), as one that sends that key in its header. It is then
 * counted again holding nothing (a refused count changed nothing); otherwise refused as it was.
 */
async function withStoredKey(a: Attempt): Promise<Denial | undefined> {
  const ctx = a.ctx
  const accountId = a.entry!.info.accountId
  let usable = false
  try {
    const stored = await ctx.guard(ctx.storage.secrets.list(accountId))
    for (const r of stored) {
      if (!a.route.byok.some(([p]) => p === r.provider)) continue
      if (await ctx.resolveStoredProvider(accountId, r.provider)) {
        usable = true
        break
      }
    }
  } catch (err) {
    ctx.report(err)
  }
  if (!usable) return refused(a)
  a.estimate = 0
  a.result = null
  const d = await count(a)
  if (d !== undefined) return d
  const again = a.result as ConsumeResult | null
  return again !== null && !again.allowed ? refused(a) : undefined
}

/** The refusal of the limit that decides it, with its headers. */
function refused(a: Attempt): Denial {
  const result = a.result!
  const route = a.route
  const i = decidingRefusal(a.templates, result.results, route.quotaStatus)
  const t = a.templates[i]!
  const rf = refusal(t, result.results[i]!, route.quotaStatus)
  // A monthly allowance used up comes back at the period's reset: `Retry-After` says when.
  const account = a.account
  if (t.role === 'credits' && account && (account.plan?.monthlyCredits ?? 0) > 0)
    rf.retryAfterMs = account.period.end - a.now
  const out = withHeader(a.headers)
  const c = a.checks[i]!
  if (c.type !== 'hold')
    setLimitHeaders(out, route, {
      name: c.name,
      limit: c.limit,
      remaining: 0,
      resetMs: result.results[i]!.resetMs,
      windowMs: c.windowMs,
    })
  setRetryAfter(out, rf.retryAfterMs)
  // "Every authenticated response includes usage information" (seed 001): a metered request
  // refused by a limit or the credits carries the period's figures too, unchanged by it. The
  // refused check reports its counter as it was; a credit check that passed beside a refusal
  // reports what it would have counted with this request's hold, which is not held: take it out.
  if (route.headers.usage && a.metered && account !== null) {
    for (let k = a.templates.length - 1; k >= 0; k--) {
      if (a.templates[k]!.role !== 'credits') continue
      const r = result.results[k]!
      const ck = a.checks[k]!
      const used = r.allowed && ck.type === 'hold' ? roundAmount(r.used - ck.amount) : r.used
      setUsageHeaders(out, used, account.creditLimit)
      setBypassHeaders(out, false, null)
      break
    }
  }
  return logged(a, denial(rf.code, a, { message: rf.message, status: rf.status, headers: out }))
}

/**
 * A storage failure: reported, then a 503, or, with `failOpen` and the key known, the request
 * served uncounted (nothing is held, so settle only records the event).
 */
function failure(a: Attempt, err: unknown): Denial | undefined {
  a.ctx.report(err)
  if (
    a.entry === null ||
    !a.ctx.options.failOpen ||
    (isTollboothError(err) && err.code !== 'storage_unavailable')
  )
    return denial('storage_unavailable', a)
  a.uncounted = true
  return undefined
}

/** The admission: its headers (the tightest limit's figures) and what settle needs. */
function admission(a: Attempt): Admission {
  const { route, entry } = a
  // The key's `lastUsedAt` is queued at admission, not at settle: a key with a request in
  // flight has been used (seed 002: only a key never used can be deleted; `tb.keys.delete`
  // writes the out-box first).
  if (a.ctx.cache.touch(entry!, a.now, a.ctx.options.usage.lastUsedResolutionMs))
    a.ctx.outbox.touch(entry!.info.id, a.now)
  const s = openSettlement({
    estimate: a.estimate,
    routeCost: a.routeCost,
    tokenEstimate: a.tokens,
    startedAt: a.now,
    tally: entry!,
    eventId: a.internalId,
    ip: a.req.ip,
    method: a.req.method,
    path: a.req.path,
    callerProviders: a.callerProviders,
    chargeWhen: route.chargeWhen,
    usageHeaders: !a.uncounted && route.headers.usage,
    onError: a.ctx.report,
    waitMs: route.abortSettleMs ?? a.ctx.options.leaseTtlMs,
  })
  if (!a.uncounted) {
    const result = a.result
    if (result) setLimitHeaders(a.headers, route, tightest(a.checks, result.results))
    const account = a.account
    holdCredits(s, {
      checks: a.checks,
      templates: a.templates,
      results: result ? result.results : [],
      creditLimit: a.metered && account ? account.creditLimit : null,
      overage: a.metered && account !== null && account.plan?.allowOverage === true,
      overrun: route.overrun,
    })
    const idk = a.idempotencyKey
    if (idk !== undefined) s.idempotencyId = `${entry!.info.id}:${idk}`
    // Stored provider keys serve every route; the route's `byok` option governs headers (and
    // which stored keys let in a request its credits cannot cover: `withStoredKey`).
    s.resolveProvider = a.ctx.resolveStoredProvider
  }
  // Listed until it settles when it holds something (renewed, however long its response
  // runs) or an adapter serves it (`tb.close()` waits for it; its admission kept for that).
  // Not the others: listing every admission cost about 40 bytes a request (bench/request-bytes).
  if (s.holds.length > 0 || a.served) a.ctx.renewals.add(s)
  return new Admission(
    {
      requestId: a.requestId,
      key: entry!.info,
      providerKeys: a.providerKeys,
      headers: a.headers,
      settlement: s,
      category: route.category ?? null,
    },
    a.served,
  )
}

/**
 * The figures of the limit closest to refusing, for the rate-limit header families: the
 * fewest units left (a client may send that many before one refuses, whatever the shares of
 * the others), the longer reset on a tie.
 */
function tightest(
  checks: ReadonlyArray<Check>,
  results: ReadonlyArray<CheckResult>,
): LimitFigures | null {
  let best = -1
  for (let i = 0; i < checks.length; i++) {
    if (checks[i]!.type === 'hold') continue
    const r = results[i]!
    const b = best < 0 ? undefined : results[best]!
    if (
      b === undefined ||
      r.remaining < b.remaining ||
      (r.remaining === b.remaining && r.resetMs > b.resetMs)
    )
      best = i
  }
  if (best < 0) return null
  // The figures of the one found: one object a request, not one for each better limit.
  const c = checks[best] as Exclude<Check, { type: 'hold' }>
  const r = results[best]!
  return {
    name: c.name,
    limit: c.limit,
    remaining: r.remaining,
    resetMs: r.resetMs,
    windowMs: c.windowMs,
  }
}

function setLimitHeaders(
  out: Record<string, string>,
  route: ResolvedRoute,
  f: LimitFigures | null,
): void {
  if (!f) return
  if (route.headers.rateLimit) setRateLimitHeaders(out, f)
  if (route.headers.ietf) setIetfHeaders(out, f)
}
