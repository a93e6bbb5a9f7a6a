/**
 * @module tollbooth
 *
 * `createTollbooth()`: validates the options once and wires storage, cache, clock, hasher,
 * meters and the out-box into the pipeline. Adapters call `route()` once per middleware and
 * then `authenticate()` and `settle()` per request.
 */

import { z } from 'zod'
import { createPipeline } from './authenticate.js'
import { type BoundOptions, boundCalls } from './bounded-calls.js'
import { DEFAULT_PROVIDERS } from './byok/providers.js'
import { createSealer } from './byok/seal.js'
import { ProviderKeyService } from './byok/service.js'
import { createKeyCache } from './cache.js'
import { type FeedFigures, watchFeed } from './change-feed.js'
import { type Clock, systemClock } from './clock.js'
import { type Context, DRAIN_MS, endsWithin, withTimeout } from './context.js'
import type { Decision } from './decision.js'
import { StorageUnavailableError } from './errors.js'
import { withAccessors } from './fast-object.js'
import { ownValue } from './input.js'
import { randomBase62 } from './keys/base62.js'
import { marksUses } from './keys/first-use.js'
import { createKeyHasher, deriveKey } from './keys/hash.js'
import { KeyManager } from './keys/manager.js'
import { createIpGuard, ipAddressSchema, ipBlocksListSchema } from './limits/ip-block.js'
import { AccountService } from './metering/accounts.js'
import { createOutbox } from './metering/outbox.js'
import { UsageService } from './metering/usage.js'
import {
  argumentError,
  integer,
  optionError,
  parseInput,
  parseOptions,
  type ResolvedOptions,
  type ResolvedRoute,
  type RouteOptions,
  resolveOptions,
  routeOptionsSchema,
  type TollboothOptions,
} from './options.js'
import { Renewals } from './renewal.js'
import type { TollboothRequest } from './request.js'
import { settleAtDeadline } from './response-end.js'
import {
  createRetryQueue,
  createSettleQueue,
  type RetryStats,
  type SettleQueueStats,
} from './retry-queue.js'
import { type Outcome, settle } from './settle.js'
import { closedMessage, reportClosedOnce } from './storage/closed.js'
import { isInProcess } from './storage/in-process.js'
import { type LeasedCounterStore, leasedCounters } from './storage/leased-counters.js'
import { memoryStorage } from './storage/memory.js'
import type { ChangeFeed, IpBlock, Page, Storage, UsageEvent } from './storage/types.js'
import { clusterWorker, env, warnOnce } from './warnings.js'

export interface Tollbooth {
  readonly options: ResolvedOptions
  readonly storage: Storage
  /** Key lifecycle: create, list, get, update, revoke, delete, rotate. */
  readonly keys: KeyManager
  /** Accounts: tier, prepaid credits, credit figures. */
  readonly accounts: AccountService
  /** Usage reports and request logs. */
  readonly usage: UsageService
  /** Stored (sealed) BYOK provider keys. */
  readonly providerKeys: ProviderKeyService
  /** Addresses blocked by the failed-auth guard: list, look up, lift. */
  readonly ipBlocks: IpBlocks
  /**
   * Validates route options once (throws a ConfigError naming the bad option) and returns the
   * compiled route that `authenticate()` takes.
   */
  route(options?: RouteOptions): ResolvedRoute
  /**
   * Decides a request; never throws for the request's own faults.
   *
   * @throws {ConfigError} (rejects with) for a bad argument (no request, route options given
   *   for `route`) or a route's `cost`/`tokens` function returning no finite number >= 0;
   *   and with whatever that function throws
   */
  authenticate(request: TollboothRequest, route?: ResolvedRoute): Promise<Decision>
  /**
   * `authenticate()` for adapters: the decision itself when it needs no I/O (a cached key on
   * in-process counters), else its promise, so the common path costs no microtask. Throws
   * (synchronously or by rejecting) only what `authenticate()` rejects with.
   */
  decide(request: TollboothRequest, route?: ResolvedRoute): Decision | Promise<Decision>
  /**
   * Settles an admitted request exactly once (later calls and denials do nothing). A bad
   * figure of `outcome` (`cost: -5`) goes to `onError`, and the request settles without it.
   *
   * @throws {ConfigError} (rejects with) when `decision` or `outcome` is not an object
   */
  settle(decision: Decision, outcome: Outcome): Promise<UsageEvent | null>
  /**
   * `settle()` for adapters that do not wait for it: synchronous when the counters are
   * in-process; a storage failure, or a bad argument, goes to `onError`, never to the caller.
   */
  settleLater(decision: Decision, outcome: Outcome): void
  /**
   * Waits for settles in flight on remote counters, puts what leases hold in the store (credit
   * charges settled locally, quota units not used), then writes queued usage events and
   * `lastUsedAt`. Bounded as `close()` is: its waits on the store end within 10 s (and a
   * storage timeout more for the usage events) while the store is down or frozen; it then
   * rejects with a `StorageUnavailableError` naming how many usage events are not confirmed
   * written (they stay queued: the next flush tries again).
   */
  flush(): Promise<void>
  /**
   * Calls `listener` with each batch of usage events once it is recorded in storage (how a
   * billing provider's meter out-box learns of overage). A batch may be seen again after a
   * retried write: event ids are unique. A listener that throws is reported to `onError` and
   * never fails the flush. Returns the function that removes the listener.
   *
   * @throws {ConfigError} when `listener` is not a function
   */
  onUsageFlushed(listener: (events: ReadonlyArray<UsageEvent>) => void): () => void
  /**
   * Calls `listener` with each batch of usage events before it is written to storage, and
   * writes the batch once the listener's promise settles (a write-ahead: how the billing
   * meter notes accounts with overage durably before their usage exists, so a crash right
   * after the write loses nothing), or once `storageTimeoutMs` has passed: a listener whose
   * store does not answer holds no write longer (it runs on). A listener that throws or
   * rejects is reported to `onError` and never fails the write. Returns the function that
   * removes the listener.
   *
   * @throws {ConfigError} when `listener` is not a function
   */
  onUsageWriting(listener: (events: ReadonlyArray<UsageEvent>) => Promise<void> | void): () => void
  /**
   * Waits for the requests in flight that an adapter serves (`requireApiKey`, `tb.decide`:
   * admitted, not settled: a stream, a WebSocket session, a handler still running) up to
   * `options.waitMs` (default 10 s; 0: none), then settles those still running as aborted
   * (499, charged what they reported so far, the rest of their holds refunded); then waits
   * for settles in flight, flushes, stops timers and unsubscribes from the change feed. It
   * does not refuse new requests: stop your server accepting first.
   * The storage is the caller's to close. Its waits on the store end within 10 s (and a
   * storage timeout more for the usage events) while the store is down or frozen; it then
   * rejects with a `StorageUnavailableError` when queued usage events are not known written
   * (they stay queued: `flush()` tries again). Call it before closing the storage's client: on
   * a client already closed (`storage.closed()`), it waits for nothing and rejects at once,
   * naming the events it could not write.
   *
   * @throws {ConfigError} when `options.waitMs` is not an integer >= 0
   */
  close(options?: { waitMs?: number }): Promise<void>
  /**
   * Figures of this instance: counter operations pending (settles and cancels whose first
   * attempt failed, at most `maxPendingSettles`, and those `waiting` for their first attempt to
   * end, outside that bound), retried, and dropped because the queue was full; its leases
   * (null when the counters are not leased: in-process counters, or `leases: false`); its
   * change feed (null without one): whether it delivers, and whether it went silent; and the
   * keys and provider keys found only under one of `previousSecrets` since start (store reads,
   * not requests: a key found is cached): while they grow, a previous secret is still needed.
   */
  stats(): {
    settleRetries: SettleQueueStats
    feedRetries: RetryStats
    leases: LeaseFigures | null
    feed: FeedFigures | null
    previousSecrets: { keys: number; providerKeys: number }
  }
}

/** What this instance's leases did (docs/leases.md). */
export interface LeaseFigures {
  /** Leases alive now. */
  held: number
  /** Units of live leases not used yet: capacity other instances cannot have now. */
  parkedUnits: number
  /** Leases taken since the start, and lease requests the store refused. */
  acquired: number
  refused: number
  /** Admissions answered in process, and those the store decided. */
  localAdmissions: number
  centralAdmissions: number
  /** Calls made to the counter store, and those leases spared it (local admissions and settles, less the lease calls). */
  storeCalls: number
  storeCallsSaved: number
  /** Units given back when leases ended (quotas, credits). */
  returnedUnits: number
  /** Refusals by the store on a limit this instance was leasing: at most this many were early. */
  earlyRefusals: number
  /** Give-backs of ended leases the store never took (down through their retries). */
  lostGiveBacks: number
  /** Counters this instance keeps lease state for (rate estimates, leases): idle ones go. */
  trackedKeys: number
}

/** close(): the pause before the usage events a store refused are sent again (doubling). */
const CLOSE_RETRY_MS = 50
const CLOSE_RETRY_MAX_MS = 1000

/** The failed-auth guard's blocks, as the management API shows and lifts them. */
export interface IpBlocks {
  /** Blocks in force, by ascending address. */
  list(options?: { limit?: number; cursor?: string | null }): Promise<Page<IpBlock>>
  /** `ip`'s block in force, or null. */
  get(ip: string): Promise<IpBlock | null>
  /**
   * Ends `ip`'s block and forgets its failures: at once on this instance; another instance
   * holding the block re-reads it on that address's first request 5 s or more after its
   * last read, and serves the request after that one. False when it was not blocked.
   */
  lift(ip: string): Promise<boolean>
}

const ROUTE = Symbol('tollbooth.route')

const STORES = ['keys', 'counters', 'usage', 'accounts', 'secrets', 'ipBlocks'] as const

/**
 * Creates a tollbooth instance.
 *
 * @param options.secret at least 32 characters; derives the key hash and sealing keys
 * @param [options.prefixes={ consumption: 'sk_live_', management: 'mk_live_' }] key prefixes
 * @param [options.storage=memoryStorage()] where keys, counters and usage live
 * @throws {ConfigError} naming every bad or unknown option
 * @example
 * ```ts
 * const tb = createTollbooth({ secret: process.env.TOLLBOOTH_SECRET, prefixes: { consumption: 'plabs_sk_live_' } })
 * const { key } = await tb.keys.create({ accountId: 'acct_1', name: 'Production Key' })
 * ```
 */
export function createTollbooth(options: TollboothOptions = {} as TollboothOptions): Tollbooth {
  const input = { ...(options as Record<string, unknown>) }
  if (input['secret'] === undefined && env('NODE_ENV') === 'test') {
    input['secret'] = randomBase62(43)
    warnOnce(
      'TOLLBOOTH_TEST_SECRET',
      'no secret given; using a random one because NODE_ENV=test (keys will not survive a restart)',
    )
  } else if (input['secret'] === undefined) {
    throw optionError(
      'createTollbooth',
      'options.secret',
      'is required (at least 32 characters, e.g. `openssl rand -base64 32`)',
    )
  }
  const o = resolveOptions(input)
  const storage = o.storage ?? memoryStorage()
  // A storage's own deadline defaulted from ours stays below it (PostgreSQL's, when
  // `statementTimeoutMs` is not given: its 1,750 ms let an admission commit after a 503 for
  // a storageTimeoutMs of 1,000, test/fault/postgres-deadline).
  storage.storageTimeout?.(o.storageTimeoutMs)
  const clock = o.clock ?? systemClock
  const now = () => clock.now()
  const localCounters = isInProcess(storage.counters)
  // Counters in another process are leased (docs/leases.md); in-process ones (memory, SQLite)
  // answer without a network hop already.
  const leased: LeasedCounterStore | null =
    o.leases !== false && !localCounters ? leaseCounters(storage, o, clock) : null
  const store: Storage = leased ? withCounters(storage, leased) : storage
  const inProcess = isInProcess(storage.keys) && localCounters && isInProcess(storage.accounts)
  if (o.storage === undefined && env('NODE_ENV') === 'production') {
    warnOnce(
      'TOLLBOOTH_MEMORY_STORAGE',
      'no storage option: keys, balances and usage live in memory and are lost on restart; use tollbooth/sqlite (one machine), tollbooth/postgres or tollbooth/redis',
    )
  }
  // A durable in-process store (SQLite) shares its counts through its file.
  if (localCounters && !storage.counters.durable) {
    const worker = clusterWorker()
    if (worker || env('NODE_ENV') === 'production') {
      warnOnce(
        'TOLLBOOTH_LOCAL_COUNTERS',
        `${worker ? `this process is ${worker}: ` : ''}the in-memory storage counts per process; use tollbooth/sqlite (one machine), tollbooth/redis or tollbooth/postgres with several instances`,
      )
    }
  }
  /** `close()` was called while the storage's client was still open (the right order). */
  let closedFirst = false
  const onError = reportClosedOnce(
    storage,
    o.onError ?? ((err: unknown) => console.error('[tollbooth]', withCauses(err))),
    () => closedFirst,
  )
  const providers: Record<string, string> = {}
  for (const [p, h] of Object.entries(o.providers ?? DEFAULT_PROVIDERS))
    providers[p] = h.toLowerCase()

  const flushListeners = new Set<(events: ReadonlyArray<UsageEvent>) => void>()
  const writeListeners = new Set<(events: ReadonlyArray<UsageEvent>) => Promise<void> | void>()
  // Waited for one storage timeout at most: a listener on a store that does not answer (the
  // meter journal's table locked by a migration) holds no usage write longer; it runs on.
  const beforeWrite = (events: ReadonlyArray<UsageEvent>) =>
    writeListeners.size === 0
      ? undefined
      : endsWithin(
          Promise.all(
            [...writeListeners].map(async (listener) => {
              try {
                await listener(events)
              } catch (err) {
                onError(err)
              }
            }),
          ),
          o.storageTimeoutMs,
        ).then(() => {})
  const feed = publisher(storage.changes, o, onError)
  let instanceId: string | undefined
  const fields: Omit<Context, 'instanceId'> = {
    options: o,
    storage: store,
    clock,
    hash: createKeyHasher(o.secret),
    previousHashes: o.previousSecrets.map(createKeyHasher),
    previous: { keys: 0, providerKeys: 0 },
    cache: createKeyCache(o.cache, now),
    ipGuard: o.failedAuth === false ? null : createIpGuard(o.failedAuth, storage.ipBlocks, onError),
    accounts: new AccountService(store, o, now, feed.publish),
    outbox: createOutbox(
      store,
      { ...o.usage, now },
      onError,
      (events) => {
        for (const listener of flushListeners) {
          try {
            listener(events)
          } catch (err) {
            onError(err)
          }
        }
      },
      beforeWrite,
    ),
    providers,
    async invalidate(hash: string) {
      ctx.cache.delete(hash)
      await feed.publish(hash)
    },
    guard: inProcess
      ? <T>(p: Promise<T>) => p
      : <T>(p: Promise<T>, ms?: number) => withTimeout(p, ms || o.storageTimeoutMs),
    retries: createSettleQueue({
      counters: store.counters,
      now,
      report: onError,
      max: o.maxPendingSettles,
    }),
    // Every third of the shorter hold TTL: a hold is renewed twice before it would lapse.
    renewals: new Renewals(() => ctx, Math.min(o.leaseTtlMs, o.reservationTtlMs) / 3),
    leases: leased,
    firstUses: marksUses(storage.counters) ? storage.counters : null,
    admitting: new Map(),
    accountInFlight:
      o.accountInFlight ??
      (storage.counters.concurrency
        ? Math.max(1, Math.floor(storage.counters.concurrency / 2))
        : 64),
    // Long past any answer a store can still send late (a cancel goes right after it).
    admissionTtlMs: Math.max(60_000, 10 * o.storageTimeoutMs),
    resolveStoredProvider: (accountId: string, provider: string): Promise<string | undefined> =>
      providerKeys.get(accountId, provider).catch(() => undefined),
    report: onError,
  }
  // Its getter apart, so it keeps fast properties (`fast-object`).
  const ctx: Context = withAccessors(fields, {
    // Drawn on first use: Workers allow no random numbers at module scope, where the README
    // builds the instance.
    get instanceId() {
      instanceId ??= randomBase62(6)
      return instanceId
    },
  })
  const providerKeys: ProviderKeyService = new ProviderKeyService(
    ctx,
    createSealer(
      deriveKey(o.secret, 'provider-key-seal'),
      o.previousSecrets.map((s) => deriveKey(s, 'provider-key-seal')),
      () => ctx.previous.providerKeys++,
    ),
    o.verifiers,
  )
  const unsubscribe = watchFeed(
    storage,
    ctx,
    onError,
    o.cache === false
      ? { probeMs: 0, feedDownTtlMs: 0 }
      : { probeMs: o.cache.feedProbeMs, feedDownTtlMs: o.cache.feedDownTtlMs },
  )
  const decide = createPipeline(ctx)

  const route = (routeOptions: RouteOptions = {}): ResolvedRoute => {
    const r = parseOptions('tb.route', routeOptionsSchema, routeOptions)
    const byok: Array<[string, string]> =
      r.byok === false
        ? []
        : (r.byok === true ? Object.keys(providers) : r.byok.map((p) => p.toLowerCase())).map(
            (p) => {
              const header = ownValue(providers, p)
              if (!header)
                throw optionError(
                  'tb.route',
                  'options.byok',
                  `must name providers of the instance (${Object.keys(providers).join(', ')}): unknown provider "${p}"`,
                )
              return [p, header]
            },
          )
    const resolved: ResolvedRoute = {
      ...r,
      headers: { ...o.headers, ...r.headers },
      keySources: r.keySources ?? o.keySources,
      quotaStatus: r.quotaStatus ?? o.quotaStatus,
      byok,
    }
    Object.defineProperty(resolved, ROUTE, { value: true })
    return resolved
  }
  const defaultRoute = route()
  /**
   * The route of `authenticate(request, route)`, its arguments checked (route options given
   * for the route, the request left out), in the format of a bad option.
   */
  const routeOf = (fn: string, request: TollboothRequest, r?: ResolvedRoute): ResolvedRoute => {
    const headers = (request as Partial<TollboothRequest> | null | undefined)?.headers
    if (headers === null || (typeof headers !== 'object' && typeof headers !== 'function'))
      throw argumentError(
        fn,
        'request',
        'must be a request ({ headers, ip, method, path })',
        request,
      )
    if (r === undefined) return defaultRoute
    if (!isRoute(r)) throw argumentError(fn, 'route', 'must be a route from tb.route(options)', r)
    return r
  }

  // Settles waiting on remote counters: flush() and close() wait for them, so the events of
  // requests already answered are not left out of the last batch (or lost at shutdown).
  const inFlight = new Set<Promise<unknown>>()
  const track = <T>(r: T | Promise<T>): T | Promise<T> => {
    if (r instanceof Promise) {
      inFlight.add(r)
      const done = () => {
        inFlight.delete(r)
      }
      r.then(done, done)
    }
    return r
  }
  const settled = async () => {
    while (inFlight.size > 0) await Promise.allSettled([...inFlight])
  }
  /**
   * Waits for the out-box's write `written` for what is left of `left`, and at least one
   * storage timeout: the error naming the usage events not confirmed written when the store did
   * not answer in time (the write under way may still land; the events stay queued), else
   * undefined (written, or refused: `written` then rejects with the store's error).
   */
  const unconfirmed = async (
    written: Promise<void>,
    left: () => number,
    who: string,
    pending = '',
  ): Promise<StorageUnavailableError | undefined> => {
    const waitMs = Math.max(left(), o.storageTimeoutMs)
    if (await endsWithin(written, waitMs)) return undefined
    return new StorageUnavailableError(
      `${who}: ${ctx.outbox.unwritten} usage event(s) not confirmed written${pending}: the store did not answer within ${waitMs} ms (the write under way may still land; the events stay queued for tb.flush())`,
    )
  }

  // The calls off the request path, bounded as the request path's (`bounded-calls`), unless
  // every store is in-process (it cannot hang). Billing applies its changes unbounded.
  const local = STORES.every((name) => isInProcess(storage[name]))
  const bound = <T extends object>(service: T, name: string, extra: Partial<BoundOptions> = {}) =>
    local ? service : boundCalls(service, name, { ms: o.storageTimeoutMs, storage, ...extra })
  const accounts = bound(ctx.accounts, 'accounts')

  const tb: Tollbooth = {
    options: o,
    storage,
    // A delete may wait on purpose for other instances' out-boxes (`KeyManager.delete`).
    keys: bound(new KeyManager(ctx), 'keys', {
      longer: {
        delete: (...[, , d]) =>
          (d as { evenIfUsed?: boolean } | undefined)?.evenIfUsed === true || !storage.changes
            ? o.storageTimeoutMs
            : o.usage.flushIntervalMs + 2 * o.storageTimeoutMs,
      },
    }),
    accounts,
    usage: bound(new UsageService(ctx), 'usage'),
    providerKeys: bound(providerKeys, 'providerKeys', { skip: new Set(['verify']) }),
    // Parsed here, so every store is handed the same values (a NUL reached PostgreSQL alone).
    ipBlocks: bound(
      {
        list: async (l = {}) =>
          (ctx.ipGuard ?? storage.ipBlocks).list(now(), parseInput(ipBlocksListSchema, l)),
        get: async (ip) =>
          (ctx.ipGuard ?? storage.ipBlocks).get(parseInput(ipAddressSchema, ip, 'ip'), now()),
        lift: async (ip) =>
          (ctx.ipGuard ?? storage.ipBlocks).lift(parseInput(ipAddressSchema, ip, 'ip'), now()),
      } satisfies IpBlocks,
      'ipBlocks',
    ),
    route,
    authenticate: async (request, r) =>
      decide(request, routeOf('tb.authenticate', request, r), false),
    decide: (request, r) => decide(request, routeOf('tb.decide', request, r), true),
    settle: async (decision, outcome) => {
      checkSettle('tb.settle', decision, outcome)
      return track(settle(ctx, decision, outcome))
    },
    settleLater(decision, outcome) {
      try {
        checkSettle('tb.settleLater', decision, outcome)
        const p = track(settle(ctx, decision, outcome))
        if (p instanceof Promise) p.catch(onError)
      } catch (err) {
        onError(err)
      }
    },
    async flush() {
      // close()'s bound: every wait on the store ends within `DRAIN_MS` together, the usage
      // events get at least a storage timeout more. A store frozen or down past it no longer
      // holds flush() (and a Worker's waitUntil awaiting it) for as long as it stays so.
      const left = deadline(DRAIN_MS, storage)
      const unsettled = (await endsWithin(settled(), left())) ? 0 : inFlight.size
      await ctx.retries.drain(left())
      // What the leases know goes to the store once the settles are in them: credit leases
      // are released with their charges (requests in flight move to a new hold), window
      // leases give back their unused units.
      if (leased && !(await endsWithin(leased.push(now()).catch(onError), left())))
        onError(
          new StorageUnavailableError(
            `flush(): the store did not take this instance's lease figures within ${DRAIN_MS} ms; the next flush pushes them`,
          ),
        )
      const written = ctx.outbox.flush()
      const pending =
        unsettled > 0
          ? ` (and ${unsettled} settle(s) still waiting for the store, their events not queued yet)`
          : ''
      const late = await unconfirmed(written, left, 'flush()', pending)
      if (late) throw late
      // A write the store refused rejects as before, with the store's error (events kept).
      await written
      if (unsettled > 0)
        throw new StorageUnavailableError(
          `flush(): ${unsettled} settle(s) still waiting for the store after ${DRAIN_MS} ms; their usage events are not queued yet`,
        )
    },
    stats: () => ({
      settleRetries: ctx.retries.stats(),
      feedRetries: feed.queue.stats(),
      leases: leased && leaseFigures(leased),
      previousSecrets: { ...ctx.previous },
      feed: unsubscribe?.figures() ?? null,
    }),
    onUsageFlushed(listener) {
      checkListener('tb.onUsageFlushed', listener)
      flushListeners.add(listener)
      return () => {
        flushListeners.delete(listener)
      }
    },
    onUsageWriting(listener) {
      checkListener('tb.onUsageWriting', listener)
      writeListeners.add(listener)
      return () => {
        writeListeners.delete(listener)
      }
    },
    async close(options) {
      const waitMs = closeWaitOf(options)
      if (storage.closed?.() === undefined) closedFirst = true
      // The requests in flight first, for up to `waitMs`: a stream or a WebSocket session open
      // at close() settled after it, when the process had exited (its usage never recorded,
      // its holds left to lapse). Those still running then are settled as a departed client's
      // (499, what they reported), as the process is about to end them.
      // Those of an adapter (`tb.decide`): one of `tb.authenticate` is its caller's to settle.
      // One whose response is complete (its settle waits for `waitUntil()` promises, or for a
      // HEAD's handler) keeps its outcome: 499 made a 200 of 3 credits charged 0 (streaming).
      // No wait while the storage's client is closed under it: their settles cannot reach the
      // store (it waited its 10 s for a request still running, then rejected all the same).
      const serving = () => ctx.renewals.inFlight().filter((s) => s.admission && !s.settled)
      for (const left = deadline(waitMs, storage); serving().length > 0 && left() > 0; )
        await new Promise((r) => setTimeout(r, Math.min(10, left())))
      for (const s of serving()) if (s.admission) settleAtDeadline(tb, s.admission)
      // One bound for every wait on the store (`DRAIN_MS`), and a storage timeout more for
      // the usage events: a store frozen or down past it no longer holds close() (and a
      // SIGTERM handler awaiting it) for as long as it stays so.
      const left = deadline(DRAIN_MS, storage)
      if (!(await endsWithin(settled(), left())))
        onError(
          new StorageUnavailableError(
            `close(): ${inFlight.size} settle(s) still waiting for the store after ${DRAIN_MS} ms`,
          ),
        )
      // Unused lease capacity goes back to the store (a credit lease is released with what
      // its requests were charged) before the retried settles are drained.
      if (leased && !(await endsWithin(leased.close(now()).catch(onError), left())))
        onError(
          new StorageUnavailableError(
            `close(): the store did not take back this instance's leases within ${DRAIN_MS} ms; credit leases lapse by their TTL, unused quota units stay counted`,
          ),
        )
      // The two queues' bounds run together, not one after the other.
      const feedDrained = feed.queue.drain(left())
      if (!(await ctx.retries.drain(left())))
        onError(
          new StorageUnavailableError(
            `close(): ${ctx.retries.stats().pending} counter operation(s) still waiting for the store; their holds expire by their TTL`,
          ),
        )
      // The queued usage events get at least one storage timeout, even when the settle
      // queue used up the bound; a write the store could not take (a lock, a blip) is tried again
      // while the bound lasts, as the process is about to exit with them. Those not known
      // written make close() reject, saying so.
      let failure: unknown
      let written = ctx.outbox.close()
      for (let pause = CLOSE_RETRY_MS; ; pause = Math.min(pause * 2, CLOSE_RETRY_MAX_MS)) {
        try {
          failure = await unconfirmed(written, left, 'close()')
          if (failure === undefined) await written
          break
        } catch (err) {
          const closed = storage.closed?.()
          failure = new StorageUnavailableError(
            `close(): ${ctx.outbox.unwritten} usage event(s) not written (they stay queued for tb.flush()): ${closed === undefined ? (err instanceof Error ? err.message : String(err)) : closedMessage(closed)}`,
            { cause: err },
          )
          // Only a store that could not take them now (a lock, a lost connection): one that
          // refuses them (a closed store, an error of the data) would refuse them again.
          if (closed !== undefined || !(err instanceof StorageUnavailableError) || left() <= pause)
            break
          await new Promise((resolve) => setTimeout(resolve, pause))
          written = ctx.outbox.flush()
        }
      }
      if (!(await feedDrained))
        onError(
          new Error(
            `close(): ${feed.queue.stats().pending} change-feed message(s) not delivered; other instances drop what they name by their cache TTL`,
          ),
        )
      unsubscribe?.stopProbing()
      const off = unsubscribe && (await within(unsubscribe.off, o.storageTimeoutMs))
      off?.()
      // Requests still in flight keep their holds no longer: they lapse by their TTL.
      ctx.renewals.close()
      if (failure !== undefined) throw failure
    },
  }
  return tb
}

/** How long `tb.close()` waits for the requests in flight (ms), by default. */
const CLOSE_WAIT_MS = 10_000

/** `tb.close(options)`'s options, strict: a misspelt `waitMs` was taken as none (10 s waited). */
const closeOptions = z.object({ waitMs: integer().optional() }).strict()

/**
 * `options.waitMs` of `tb.close(options)`, checked.
 *
 * @throws {ConfigError} `tb.close: options.waitMs must be an integer >= 0 (milliseconds), got -1`
 */
function closeWaitOf(options: { waitMs?: number } | undefined): number {
  if (options === undefined) return CLOSE_WAIT_MS
  return parseOptions('tb.close', closeOptions, options).waitMs ?? CLOSE_WAIT_MS
}

/**
 * What is left of a bound of `ms` from now, in ms: 0 once spent, and 0 while `storage`'s client
 * is closed under tollbooth (`closed()`): nothing waited for on it can come.
 */
function deadline(ms: number, storage: Pick<Storage, 'closed'>): () => number {
  const until = Date.now() + ms
  return () => (storage.closed?.() === undefined ? Math.max(0, until - Date.now()) : 0)
}

/** `p`'s value if it resolves within `ms`, else (or when it rejects) undefined then. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return withTimeout(p, ms).catch(() => undefined)
}

/** The leased counters of a remote store, with the instance's options. */
function leaseCounters(storage: Storage, o: ResolvedOptions, clock: Clock): LeasedCounterStore {
  const l = o.leases as Exclude<ResolvedOptions['leases'], false>
  return leasedCounters(storage.counters, {
    leaseMs: l.spanMs,
    maxShare: l.maxShare,
    minUnits: l.minUnits,
    exhaustDivisor: l.exhaustDivisor,
    holdLeaseMs: l.ttlMs,
    windowLeaseMs: l.ttlMs,
    // A request's credit hold lives `reservationTtlMs`; the lease's store hold outlives every
    // local hold taken within it by two timer periods (see leased-counters).
    holdGraceMs: o.reservationTtlMs + 4 * l.flushEveryMs,
    cooldownMs: l.cooldownMs,
    flushEveryMs: l.flushEveryMs,
    clockSkewMs: l.clockSkewMs,
    clock: () => clock.now(),
  })
}

/** `storage` with other counters; every other store, and the change feed, its own. */
function withCounters(storage: Storage, counters: Storage['counters']): Storage {
  const s: Storage = {
    keys: storage.keys,
    counters,
    usage: storage.usage,
    accounts: storage.accounts,
    secrets: storage.secrets,
    ipBlocks: storage.ipBlocks,
  }
  if (storage.changes) s.changes = storage.changes
  return s
}

function leaseFigures(l: LeasedCounterStore): LeaseFigures {
  const s = l.stats()
  return {
    held: s.leases,
    parkedUnits: s.parkedUnits,
    acquired: s.acquired,
    refused: s.refusedLeases,
    localAdmissions: s.localAdmissions,
    centralAdmissions: s.centralAdmissions,
    storeCalls: s.storeCalls,
    storeCallsSaved: s.localAdmissions + s.localSettles - s.leaseCalls,
    returnedUnits: s.returnedUnits,
    earlyRefusals: s.refusedWhileLeasing,
    lostGiveBacks: s.lostGiveBacks,
    trackedKeys: s.trackedKeys,
  }
}

/**
 * Sends the change feed's messages. One whose publish fails (the publishing connection is
 * down, while other instances may still be listening and caching) is reported and sent again
 * until the feed takes it. Without it, a key revoked during a moment the publisher alone was
 * cut off stayed valid on the other instances for their whole cache TTL. Retried however old:
 * another instance may cache for longer than this one, and a late message only drops an entry.
 */
function publisher(
  changes: ChangeFeed | undefined,
  o: ResolvedOptions,
  report: (err: unknown) => void,
) {
  const queue = createRetryQueue<string>({
    attempt: (message) => changes!.publish(message),
    report,
    max: o.maxPendingSettles,
    full: (dropped) =>
      new StorageUnavailableError(
        `change-feed retry queue full (${o.maxPendingSettles}): ${dropped} message(s) dropped; other instances drop what they name by their cache TTL`,
      ),
  })
  return {
    queue,
    async publish(message: string): Promise<void> {
      if (!changes) return
      try {
        await changes.publish(message)
      } catch (err) {
        report(err)
        // Only a failed message takes a place in the queue (a burst of changes never fills it).
        queue.add(message, Promise.reject(err), false)
      }
    },
  }
}

/**
 * An error's message followed by its causes' (`Storage unavailable: READONLY You can't write
 * against a read only replica.`), for the default `onError` log: a store's own words say
 * what is wrong (memory full, a demoted primary, a refused command), and `Storage
 * unavailable` alone said none of it. Causes are the store client's errors, which carry no
 * credentials; they are never sent to API clients.
 */
function withCauses(err: unknown): unknown {
  if (!(err instanceof Error)) return err
  let text = err.message
  let cause = err.cause
  for (let depth = 0; cause instanceof Error && depth < 3; depth++) {
    if (!text.includes(cause.message)) text += `: ${cause.message}`
    cause = cause.cause
  }
  return text
}

/** Checks the arguments of `tb.settle(decision, outcome)` (or `settleLater`). */
function checkSettle(fn: string, decision: Decision, outcome: Outcome): void {
  if (typeof decision !== 'object' || decision === null)
    throw argumentError(fn, 'decision', 'must be a decision of tb.authenticate()', decision)
  if (typeof outcome !== 'object' || outcome === null)
    throw argumentError(fn, 'outcome', 'must be an outcome ({ status })', outcome)
}

/** Checks a listener given to `onUsageFlushed` or `onUsageWriting`. */
function checkListener(fn: string, listener: unknown): void {
  if (typeof listener !== 'function')
    throw argumentError(fn, 'listener', 'must be a function of the batch of usage events', listener)
}

/** True for a route compiled by `tb.route()`. */
export function isRoute(value: unknown): value is ResolvedRoute {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[ROUTE] === true
  )
}
