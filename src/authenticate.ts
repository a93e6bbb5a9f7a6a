/**
 * @module authenticate
 *
 * The request pipeline, cheapest step first so bad traffic costs little:
 * 1. extract the credential; 2. parse it with no I/O (prefix, charset, length, checksum);
 * 3. the failed-auth guard; 4. hash and look up through the cache; 5. status, kind, scopes,
 * time blocks; 6. admission: every limit in one atomic `consume`, credits reserved;
 * 7. BYOK provider keys from headers (stored ones on demand).
 */

import type { CachedKey } from './cache.js'
import type { Context } from './context.js'
import {
  Admission,
  type Decision,
  type Denial,
  deny,
  publicKey,
  type SettleState,
} from './decision.js'
import { type ErrorCode, isTollboothError, StorageUnavailableError } from './errors.js'
import {
  type LimitFigures,
  setIetfHeaders,
  setRateLimitHeaders,
  setRetryAfter,
  withHeader,
  wwwAuthenticate,
} from './headers.js'
import { isWellFormedKey } from './keys/format.js'
import {
  type CheckTemplate,
  compileKeyLimits,
  decidingRefusal,
  instantiate,
  refusal,
} from './limits/admission.js'
import { withinTimeBlocks } from './limits/time-blocks.js'
import { type AdmissionAccount, CREDIT_KEEP_MS } from './metering/accounts.js'
import { rebuildBase, rebuildSource } from './metering/rebuild.js'
import type { ResolvedRoute } from './options.js'
import {
  clientIp,
  extractKey,
  idempotencyKey,
  incomingRequestId,
  isForwarded,
  isMapped,
  readHeader,
  type TollboothRequest,
} from './request.js'
import { syncCounters } from './storage/state-counters.js'
import type {
  AdmissionId,
  Check,
  CheckResult,
  ConsumeResult,
  KeyKind,
  KeyRecord,
  SettleOp,
} from './storage/types.js'
import { warnOnce } from './warnings.js'

export const MESSAGES = {
  missing: 'Missing API Key',
  notBearer: 'The Authorization header must be "Bearer <key>"',
  invalid: 'Invalid API Key',
  inactive: 'Inactive API Key',
  expired: 'Expired API Key',
  ipBlocked: 'IP temporarily blocked',
  storage: 'Storage unavailable',
} as const

/** A cache entry for a stored key: its limits compiled once. */
export function toCached(record: KeyRecord): CachedKey {
  return { record, info: publicKey(record), templates: compileKeyLimits(record) }
}

function kindOf(ctx: Context, key: string): KeyKind | null {
  const p = ctx.options.prefixes
  if (isWellFormedKey(key, p.consumption)) return 'consumption'
  if (isWellFormedKey(key, p.management)) return 'management'
  return null
}

/** A cache miss: the storage lookup, remembered (a miss too) for the cache's TTL. */
async function lookup(ctx: Context, hash: string): Promise<CachedKey | null> {
  const record = await ctx.guard(ctx.storage.keys.getByHash(hash))
  const entry = record ? toCached(record) : null
  ctx.cache.set(hash, entry)
  return entry
}

/** Answers an unusable key, counting the failure against the caller's IP. */
async function invalid(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  now: number,
  base: Record<string, string>,
  requestId: string,
): Promise<Decision> {
  if (ctx.ipGuard && req.ip) {
    // Without trusted proxies, forwarding headers may mean a proxy's address, shared by
    // many clients: only a flood blocks it (`proxiedLimit`).
    const proxied = route.trustProxy === false && isForwarded(req.headers)
    if (proxied) warnForwarded()
    try {
      const ms = await ctx.guard(ctx.ipGuard.fail(req.ip, now, proxied))
      if (ms > 0) return ipBlocked(ms, base, requestId)
    } catch (err) {
      ctx.report(err)
    }
  }
  return deny(
    401,
    'invalid_api_key',
    MESSAGES.invalid,
    withHeader(base, 'WWW-Authenticate', wwwAuthenticate(true)),
    requestId,
  )
}

/** 403 `ip_blocked`, with `Retry-After`: the seconds until the block ends. */
function ipBlocked(ms: number, base: Record<string, string>, requestId: string): Decision {
  const out = withHeader(base)
  setRetryAfter(out, ms)
  return deny(403, 'ip_blocked', MESSAGES.ipBlocked, out, requestId)
}

function unauthorized(
  code: ErrorCode,
  message: string,
  base: Record<string, string>,
  requestId: string,
): Denial {
  return deny(
    401,
    code,
    message,
    withHeader(base, 'WWW-Authenticate', wwwAuthenticate(true)),
    requestId,
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
  let best: LimitFigures | null = null
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i]!
    if (c.type === 'hold') continue
    const r = results[i]!
    if (
      best === null ||
      r.remaining < best.remaining ||
      (r.remaining === best.remaining && r.resetMs > best.resetMs)
    ) {
      best = {
        name: c.name,
        limit: c.limit,
        remaining: r.remaining,
        resetMs: r.resetMs,
        windowMs: c.windowMs,
      }
    }
  }
  return best
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

let seq = 0

/**
 * Forwarding headers on a route that does not trust proxies usually mean a proxy is in front
 * and every client shares its address. Looked for in the first 1,000 requests, and at every
 * failed authentication; warned about once.
 */
let forwardedChecks = 1000
function checkForwarded(req: TollboothRequest): void {
  forwardedChecks--
  if (isForwarded(req.headers)) warnForwarded()
}

function warnForwarded(): void {
  forwardedChecks = 0
  warnOnce(
    'TOLLBOOTH_UNTRUSTED_FORWARDED_FOR',
    'a request carries X-Forwarded-For or Forwarded but trustProxy is off, so every client behind a proxy shares its address and the failed-auth guard only stops floods there (failedAuth.proxiedLimit); set trustProxy to the number of proxies in front',
  )
}

/**
 * Decides one request. Never throws for a request's own faults: every outcome is a value.
 * Storage failures become a 503 `storage_unavailable` denial, unless `failOpen` lets the
 * request through uncounted (a key that cannot be looked up is never let through).
 *
 * Returns the decision itself when no step needs I/O (a cached key, a cached account and
 * in-process counters, see `syncCounters`), else a promise of it: `tb.decide()` passes that
 * on to the adapters, `tb.authenticate()` always returns a promise.
 */
export function authenticate(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
): Decision | Promise<Decision> {
  const now = ctx.clock.now()
  const internalId = `req_${ctx.instanceId}${(++seq).toString(36)}`
  const requestId = (route.headers.requestId && incomingRequestId(req)) || internalId
  const base: Record<string, string> = route.headers.requestId ? { 'X-Request-Id': requestId } : {}

  if (route.trustProxy !== false || isMapped(req.ip)) {
    // The client behind the trusted proxies, seen by the guard, key sources and the log.
    req = { ...req, ip: clientIp(req.ip, req.headers, route.trustProxy) }
  }
  if (forwardedChecks > 0 && route.trustProxy === false) checkForwarded(req)

  const key = extractKey(req, route.keySources)
  if (key === undefined) {
    // A key sent as `Authorization: <key>` is a client mistake worth naming, and never read:
    // guessing the scheme would accept whatever else a client puts in that header.
    if (route.keySources.includes('bearer') && readHeader(req.headers, 'authorization')) {
      return deny(
        401,
        'invalid_request',
        MESSAGES.notBearer,
        withHeader(base, 'WWW-Authenticate', 'Bearer error="invalid_request"'),
        requestId,
      )
    }
    return deny(
      401,
      'missing_api_key',
      MESSAGES.missing,
      withHeader(base, 'WWW-Authenticate', wwwAuthenticate(false)),
      requestId,
    )
  }
  if (ctx.ipGuard && req.ip) {
    const ms = ctx.ipGuard.blocked(req.ip, now)
    if (ms > 0) return ipBlocked(ms, base, requestId)
  }
  // A key seen lately (the memo holds well-formed keys only): no format check, no hash.
  const entry = ctx.cache.getByKey(key, now)
  if (entry !== undefined) return verified(ctx, req, route, entry, now, base, requestId, internalId)
  if (kindOf(ctx, key) === null) return invalid(ctx, req, route, now, base, requestId)
  let hash: string
  let hit: CachedKey | null | undefined
  try {
    hash = ctx.hash(key)
    hit = ctx.cache.get(hash)
  } catch (err) {
    return unavailable(ctx, err, base, requestId)
  }
  if (hit === undefined) {
    // A cache miss: the one storage read of the key, then the same steps.
    return lookup(ctx, hash).then(
      (e) => {
        ctx.cache.remember(key, hash)
        return verified(ctx, req, route, e, now, base, requestId, internalId)
      },
      (err: unknown) => unavailable(ctx, err, base, requestId),
    )
  }
  ctx.cache.remember(key, hash)
  return verified(ctx, req, route, hit, now, base, requestId, internalId)
}

function unavailable(
  ctx: Context,
  err: unknown,
  base: Record<string, string>,
  requestId: string,
): Decision {
  ctx.report(err)
  return deny(
    503,
    'storage_unavailable',
    MESSAGES.storage,
    withHeader(base, 'Retry-After', '1'),
    requestId,
  )
}

/**
 * A request refused for a known key (its status, kind, scopes, time blocks, limits or
 * credits), logged like a served one: one event pushed to the usage out-box, written in its
 * batches and pruned by its retention, with the status and code and 0 credits. Summaries and
 * billing skip it (`code` is set). Unknown, malformed and revoked keys are not logged.
 */
function logged(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  r: KeyRecord,
  now: number,
  id: string,
  d: Denial,
): Denial {
  ctx.outbox.push({
    id,
    requestId: d.requestId,
    keyId: r.id,
    accountId: r.accountId,
    time: now,
    units: 0,
    overage: 0,
    tokens: 0,
    category: route.category ?? null,
    status: d.status,
    durationMs: 0,
    ttfbMs: null,
    code: d.code,
    ip: req.ip,
    method: req.method,
    path: req.path,
    bypassed: false,
    provider: null,
  })
  return d
}

/** Step 5: the key's status, kind, scopes and time blocks; the refusal, or null to go on. */
function keyRefusal(
  r: KeyRecord,
  route: ResolvedRoute,
  now: number,
  base: Record<string, string>,
  requestId: string,
): Denial | null {
  if (!r.active) return unauthorized('inactive_api_key', MESSAGES.inactive, base, requestId)
  if (r.expiresAt !== null && r.expiresAt <= now)
    return unauthorized('expired_api_key', MESSAGES.expired, base, requestId)
  if (r.kind !== route.kind) {
    const msg =
      route.kind === 'consumption'
        ? 'Management keys cannot be used on this route; use a consumption key'
        : 'This route accepts management keys only; consumption keys are refused'
    return deny(403, 'wrong_key_kind', msg, base, requestId)
  }
  for (const scope of route.scopes) {
    if (!r.scopes.includes(scope))
      return deny(403, 'insufficient_scope', `Missing scope: ${scope}`, base, requestId)
  }
  if (!withinTimeBlocks(r.limits.timeBlocks, now)) {
    return deny(
      403,
      'outside_time_block',
      'This key can only be used during its reserved time blocks',
      base,
      requestId,
    )
  }
  return null
}

/** Steps 5 to 7 for a key found (or remembered as unknown). */
function verified(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey | null,
  now: number,
  base: Record<string, string>,
  requestId: string,
  internalId: string,
): Decision | Promise<Decision> {
  if (!entry) return invalid(ctx, req, route, now, base, requestId)
  const r = entry.record
  if (r.revokedAt !== null && r.revokedAt <= now)
    return invalid(ctx, req, route, now, base, requestId)
  const refused = keyRefusal(r, route, now, base, requestId)
  // A refusal of a known key is logged; an admitted request pays nothing for this.
  if (refused) return logged(ctx, req, route, r, now, internalId, refused)

  // Step 7 first: a caller's own provider key means the request is not expected to be charged.
  let providerKeys: Record<string, string> = EMPTY
  for (const [provider, header] of route.byok) {
    const v = readHeader(req.headers, header)
    if (v) {
      if (providerKeys === EMPTY) providerKeys = {}
      providerKeys[provider] = v
    }
  }
  const callerProviders = providerKeys === EMPTY ? NO_PROVIDERS : new Set(Object.keys(providerKeys))
  const metered = route.cost !== undefined
  const routeCost =
    typeof route.cost === 'function' ? costOf(route.cost, req, 'cost') : (route.cost ?? 0)
  const tokens =
    typeof route.tokens === 'function' ? costOf(route.tokens, req, 'tokens') : (route.tokens ?? 0)
  // A caller's own provider key: nothing is held, so a BYOK caller needs no credits.
  const estimate = callerProviders.size > 0 ? 0 : routeCost

  return admit(ctx, req, route, entry, {
    now,
    internalId,
    requestId,
    base,
    metered,
    estimate,
    routeCost,
    tokens,
    providerKeys,
    callerProviders,
  })
}

/**
 * A route's estimate function (`cost`, `tokens`), checked: a bad value would poison the
 * counters.
 * @throws {RangeError} naming the route option when it returns anything but a finite number >= 0
 */
function costOf(
  estimate: (r: TollboothRequest) => number,
  req: TollboothRequest,
  option: 'cost' | 'tokens',
): number {
  const v = estimate(req)
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw new RangeError(
      `route option ${option}(request) must return a finite number >= 0, got ${v}`,
    )
  return v
}

const EMPTY: Record<string, string> = Object.freeze({}) as Record<string, string>
/** Admissions of one account that may wait for a turn, per slot of `accountInFlight`. */
const WAITING_PER_SLOT = 32
const NO_PROVIDERS: ReadonlySet<string> = new Set()

interface AdmitInput {
  now: number
  internalId: string
  requestId: string
  base: Record<string, string>
  metered: boolean
  estimate: number
  routeCost: number
  /** Tokens reserved against token-rate limits. */
  tokens: number
  providerKeys: Record<string, string>
  callerProviders: ReadonlySet<string>
}

/**
 * Step 6. Synchronous when the account is cached and the counters are in-process
 * (`syncCounters`): then a request is decided without a promise or a microtask.
 */
function admit(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey,
  a: AdmitInput,
): Decision | Promise<Decision> {
  let account: AdmissionAccount | null = null
  if (a.metered || ctx.accounts.hasPlans) {
    const cached = ctx.accounts.peek(entry.record.accountId, a.now)
    if (cached === undefined) return admitLater(ctx, req, route, entry, a)
    account = cached
  }
  return count(ctx, req, route, entry, a, account)
}

/** Step 6 after the account is read from storage. */
async function admitLater(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey,
  a: AdmitInput,
): Promise<Decision> {
  let account: AdmissionAccount
  try {
    account = await ctx.guard(ctx.accounts.forAdmission(entry.record.accountId, a.now))
  } catch (err) {
    return storageFailure(ctx, err, req, route, entry, a)
  }
  return count(ctx, req, route, entry, a, account)
}

/** Every limit and the credit reservation in one atomic `consume`. */
function count(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey,
  a: AdmitInput,
  account: AdmissionAccount | null,
): Decision | Promise<Decision> {
  const o = ctx.options
  const templates: CheckTemplate[] = []
  const checks: Check[] = []
  if (account) for (const t of account.planTemplates) templates.push(t)
  for (const t of entry.templates) templates.push(t)
  for (const t of templates)
    checks.push(
      instantiate(
        t,
        a.internalId,
        a.estimate,
        t.role === 'concurrency' ? o.leaseTtlMs : o.reservationTtlMs,
        a.tokens,
      ),
    )
  if (a.metered && account) {
    const overage = account.plan?.allowOverage === true
    const credit: Check = {
      type: 'hold',
      key: account.creditKey,
      name: 'credits',
      limit: overage ? Infinity : account.creditLimit,
      amount: a.estimate,
      holdId: a.internalId,
      ttlMs: o.reservationTtlMs,
      keepUntil: account.period.end + CREDIT_KEEP_MS,
    }
    templates.push({ role: 'credits', tokens: false, check: credit })
    checks.push(credit)
  }
  if (checks.length === 0)
    return decide(ctx, req, route, entry, a, account, templates, checks, null)
  const counters = ctx.storage.counters
  // Counters in another process that may come back empty: the counts that must survive that
  // are rebuilt from the durable usage when missing (metering/rebuild).
  const sync = syncCounters(counters)
  if (!sync && !counters.durable) {
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i]!
      const t = templates[i]!
      if (c.type === 'gcra') continue
      if (
        t.role === 'credits' ||
        t.role === 'budget' ||
        (t.role === 'quota' && c.type === 'window' && c.windowMs === 0)
      )
        checks[i] = { ...c, rebuild: {} }
    }
  }
  if (sync) {
    let result: ConsumeResult
    try {
      result = sync.consume(checks, a.now)
    } catch (err) {
      return storageFailure(ctx, err, req, route, entry, a)
    }
    return decide(ctx, req, route, entry, a, account, templates, checks, result)
  }
  return remoteConsume(ctx, entry.record.accountId, checks, a.now, a.internalId).then(
    (result) =>
      result.allowed || !result.results.some((r) => r.missing)
        ? decide(ctx, req, route, entry, a, account, templates, checks, result)
        : rebuildAndCount(ctx, req, route, entry, a, account, templates, checks, result),
    (err: unknown) => storageFailure(ctx, err, req, route, entry, a),
  )
}

/** The counters answered `missing`: reads their counts from the usage, then counts again. */
async function rebuildAndCount(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey,
  a: AdmitInput,
  account: AdmissionAccount | null,
  templates: CheckTemplate[],
  checks: Check[],
  first: ConsumeResult,
): Promise<Decision> {
  const r = entry.record
  try {
    const rebuilt = await Promise.all(
      checks.map(async (c, i) => {
        if (!first.results[i]!.missing || c.type === 'gcra') return c
        const allTime = c.type === 'window' && c.windowMs === 0
        const source = rebuildSource(
          templates[i]!.role,
          allTime,
          r.accountId,
          r.id,
          account?.period ?? null,
        )
        if (!source) return c
        const base = await ctx.guard(rebuildBase(ctx, c.key, source))
        return { ...c, rebuild: { base } }
      }),
    )
    // The same admission id: the refused first consume recorded nothing under it (a store
    // answers `missing` before it writes a record), and one that timed out never gets here.
    const result = await remoteConsume(ctx, r.accountId, rebuilt, a.now, a.internalId)
    if (!result.allowed && result.results.some((x) => x.missing))
      throw new Error('counter store answered missing after a rebuild')
    return decide(ctx, req, route, entry, a, account, templates, rebuilt, result)
  } catch (err) {
    return storageFailure(ctx, err, req, route, entry, a)
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
function remoteConsume(
  ctx: Context,
  accountId: string,
  checks: Check[],
  now: number,
  internalId: string,
): Promise<ConsumeResult> {
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
  const admission: AdmissionId = {
    key: `{${accountId}}:a:${internalId}`,
    ttlMs: ctx.admissionTtlMs,
  }
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
      raw = ctx.storage.counters.consume(checks, now, admission)
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
  return ctx.guard(p).catch((err: unknown) => {
    abandoned = true
    if (raw) {
      const cancel: SettleOp = {
        type: 'cancel',
        key: admission.key,
        ttlMs: admission.ttlMs,
        at: now,
        checks,
      }
      ctx.retries.add([cancel], raw, true)
    }
    throw err
  })
}

/** The decision from the counters' answer: a refusal with its headers, or the admission. */
function decide(
  ctx: Context,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey,
  a: AdmitInput,
  account: AdmissionAccount | null,
  templates: CheckTemplate[],
  checks: Check[],
  result: ConsumeResult | null,
): Decision {
  const r = entry.record
  const headers = a.base
  if (result && !result.allowed) {
    const i = decidingRefusal(templates, result.results, route.quotaStatus)
    const t = templates[i]!
    const rf = refusal(t, result.results[i]!, route.quotaStatus)
    const out = withHeader(headers)
    const c = checks[i]!
    if (c.type !== 'hold')
      setLimitHeaders(out, route, {
        name: c.name,
        limit: c.limit,
        remaining: 0,
        resetMs: result.results[i]!.resetMs,
        windowMs: c.windowMs,
      })
    setRetryAfter(out, rf.retryAfterMs)
    const d = deny(rf.status, rf.code, rf.message, out, a.requestId)
    return logged(ctx, req, route, r, a.now, a.internalId, d)
  }
  if (result) setLimitHeaders(headers, route, tightest(checks, result.results))

  const s = settleState(
    req,
    route,
    a,
    a.metered,
    account?.creditLimit ?? Infinity,
    account?.plan?.allowOverage === true,
  )
  const idk = idempotencyKey(req)
  if (idk) s.idempotencyId = `${r.id}:${idk}`
  const overrun = route.overrun
  // A report above the estimate: cut to it (strict prepaid, the default), charged in full (a
  // plan with overage and no key budget), or up to an overdraft past what was left.
  let capped = false
  let headroom = Infinity
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i]!
    const t = templates[i]!
    if (c.type === 'hold') {
      const credit = t.role === 'credits' || t.role === 'budget'
      s.holds.push([c.key, c.holdId, credit, c.keepUntil])
      if (t.role === 'credits') s.creditUsed = result!.results[i]!.used
      if (credit) {
        if (overrun === undefined && (t.role === 'budget' || !account?.plan?.allowOverage))
          capped = true
        headroom = Math.min(headroom, c.limit - result!.results[i]!.used)
      }
    } else if (t.tokens && c.type === 'gcra') {
      s.tokenChecks.push(c)
    }
  }
  if (overrun === 'cap' || capped) s.maxCharge = a.routeCost
  else if (overrun !== undefined && s.holds.some((h) => h[2]))
    s.maxCharge = a.routeCost + Math.max(0, headroom + overrun.maxOverdraft)
  const admission = new Admission({
    requestId: a.requestId,
    key: entry.info,
    providerKeys: a.providerKeys,
    headers,
    settle: s,
    usageHeaders: route.headers.usage,
    category: route.category ?? null,
  })
  // Stored provider keys serve every route; the route's `byok` option governs headers only.
  admission._resolveProvider = ctx.resolveStoredProvider
  return admission
}

/** What settle needs of an admission, before its holds are listed. */
function settleState(
  req: TollboothRequest,
  route: ResolvedRoute,
  a: AdmitInput,
  metered: boolean,
  creditLimit: number,
  creditOverage: boolean,
): SettleState {
  return {
    holds: [],
    tokenChecks: [],
    estimate: a.estimate,
    routeCost: a.routeCost,
    creditUsed: 0,
    creditLimit,
    creditOverage,
    metered,
    maxCharge: Infinity,
    tokenEstimate: a.tokens,
    startedAt: a.now,
    eventId: a.internalId,
    ip: req.ip,
    method: req.method,
    path: req.path,
    callerProviders: a.callerProviders,
    chargeWhen: route.chargeWhen,
  }
}

function storageFailure(
  ctx: Context,
  err: unknown,
  req: TollboothRequest,
  route: ResolvedRoute,
  entry: CachedKey,
  a: AdmitInput,
): Decision {
  ctx.report(err)
  if (!ctx.options.failOpen || (isTollboothError(err) && err.code !== 'storage_unavailable')) {
    return deny(
      503,
      'storage_unavailable',
      MESSAGES.storage,
      withHeader(a.base, 'Retry-After', '1'),
      a.requestId,
    )
  }
  // Fail open: serve uncounted; nothing is held, so settle only records the event.
  const s = settleState(req, route, a, false, Infinity, false)
  return new Admission({
    requestId: a.requestId,
    key: entry.info,
    providerKeys: a.providerKeys,
    headers: a.base,
    settle: s,
    usageHeaders: false,
    category: route.category ?? null,
  })
}
