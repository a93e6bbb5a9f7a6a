/**
 * @module tollbooth/redis/store
 *
 * What the Redis stores share: the Lua commands registered on the user's client with
 * `defineCommand` (ioredis then runs them by EVALSHA, loading a script on NOSCRIPT; the
 * counters go by FCALL of a Functions library where the server has Functions, see
 * counters.ts), the key layout under `keyPrefix`, and the encoding of numbers across the Lua
 * boundary.
 *
 * Layout (P = keyPrefix):
 * - counters: `P{accountId}:…` (the core's names, hash-tagged by account)
 * - keys, spread over 256 buckets of their hash and of their id (see keys.ts): each record
 *   `P{kh:<bucket>}:k:<hash>` (HASH), the id index `P{ki:<bucket>}:id` (HASH id -> hash), and each
 *   account's ids `P{u:<accountId>}:keys` (ZSET); versions before December 2026 kept them all
 *   under `P{keys}:…` (read and moved, see key-upgrade.ts)
 * - usage, under each account's tag: `P{u:<id>}:ev` (HASH), `P{u:<id>}:t`, `P{u:<id>}:k:<keyId>`
 *   (ZSETs), `P{u:<id>}:h:<hour>`, `P{u:<id>}:d:<day>` (HASHes); and the small index
 *   `P{usage}:keys` (HASH key id -> account id), `P{usage}:accts` (SET) (see usage.ts)
 * - accounts: `Paccount:<id>` (HASH: `j`, `b`, and its top-ups' idempotency records `t:<key>`,
 *   `tn`, `tc`, `tm`: see TOPUP_APPLY); secrets: `Psecrets:<accountId>` (HASH)
 * - failed-auth guard: `P{ipblocks}:n:<ip>`, `P{ipblocks}:until`, `P{ipblocks}:ips` (ip-blocks.ts)
 * - change feed: the pub/sub channel `Pchanges`
 */

import type { Cluster, Redis } from 'ioredis'
import { z } from 'zod'
import { objectOption, parseOptions } from '../../src/internal.js'
import { IP_FAIL, IP_LIFT, IP_LIST } from './ip-blocks.js'
import * as keys from './key-scripts.js'
import * as records from './record-scripts.js'
import { CLAIM, CONSUME } from './scripts.js'

/** An ioredis client or cluster: the user's, never closed by tollbooth (a connection
 * tollbooth opens itself, {@link counterConnection}, it closes). */
export type RedisClient = Redis | Cluster

type Arg = string | number | Buffer
type Run<T> = (numKeys: number, ...args: Arg[]) => Promise<T>
type Reply = string | number | null | Reply[]

/** The client with tollbooth's commands defined on it. */
export interface Commands {
  tollboothConsume: Run<Buffer>
  tollboothClaim: Run<number>
  tollboothKeyCreate: Run<number>
  tollboothKeyCas: Run<number>
  tollboothKeyDrop: Run<number>
  tollboothKeyIndex: Run<number | string>
  tollboothKeyUnindex: Run<number>
  tollboothKeyTouch: Run<number>
  tollboothOldKeyGet: Run<[string, string | null] | null>
  tollboothOldKeyTouch: Run<number>
  tollboothOldKeyUnrecord: Run<number>
  tollboothUsageRecord: Run<[number, number]>
  tollboothUsageSummary: Run<string[]>
  tollboothUsageLogs: Run<string[]>
  tollboothUsagePrune: Run<number>
  tollboothUsageIndex: Run<number>
  tollboothUsageUnrecordOld: Run<number>
  tollboothAccountEnsure: Run<[string, string]>
  tollboothAccountCas: Run<Reply[]>
  tollboothAccountAdd: Run<[string, string] | null>
  tollboothTopUpApply: Run<[number, string, number] | null>
  tollboothIpFail: Run<string | null>
  tollboothIpList: Run<string[]>
  tollboothIpLift: Run<number>
}

/** Every Lua script by command name, so a test can load each one into a real Redis. */
export const SCRIPTS: Record<keyof Commands, string> = {
  tollboothConsume: CONSUME,
  tollboothClaim: CLAIM,
  tollboothKeyCreate: keys.KEY_CREATE,
  tollboothKeyCas: keys.KEY_CAS,
  tollboothKeyDrop: keys.KEY_DROP,
  tollboothKeyIndex: keys.KEY_INDEX,
  tollboothKeyUnindex: keys.KEY_UNINDEX,
  tollboothKeyTouch: keys.KEY_TOUCH,
  tollboothOldKeyGet: keys.OLD_KEY_GET,
  tollboothOldKeyTouch: keys.OLD_KEY_TOUCH,
  tollboothOldKeyUnrecord: keys.OLD_KEY_UNRECORD,
  tollboothUsageRecord: records.USAGE_RECORD,
  tollboothUsageSummary: records.USAGE_SUMMARY,
  tollboothUsageLogs: records.USAGE_LOGS,
  tollboothUsagePrune: records.USAGE_PRUNE,
  tollboothUsageIndex: records.USAGE_INDEX,
  tollboothUsageUnrecordOld: records.USAGE_UNRECORD_OLD,
  tollboothAccountEnsure: records.ACCOUNT_ENSURE,
  tollboothAccountCas: records.ACCOUNT_CAS,
  tollboothAccountAdd: records.ACCOUNT_ADD,
  tollboothTopUpApply: records.TOPUP_APPLY,
  tollboothIpFail: IP_FAIL,
  tollboothIpList: IP_LIST,
  tollboothIpLift: IP_LIFT,
}

/** The user's client with the commands defined (redefining them is harmless); the counters'
 * reply is binary, read by the command's Buffer form. */
export type Client = RedisClient & Commands & { tollboothConsumeBuffer: Run<Buffer> }

/** Defines every tollbooth command on `client` (numkeys given per call) and returns it typed. */
export function defineCommands(client: RedisClient): Client {
  for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, { lua })
  return client as Client
}

/** What every store gets: the typed client and the key prefix. */
export interface Ctx {
  client: Client
  prefix: string
  /** The client's connection as `redisStorage` watches it (see {@link watchLink}); none: not watched. */
  link?: Link
}

/** Whether a client has been ready since tollbooth was given it, and how long a call waits for it. */
export interface Link {
  up: boolean
  /** The client watched. */
  client: RedisClient
  /** How long a call made while it reconnects waits for its `ready` (ms; `reconnectWaitMs`). */
  waitMs: number
}

/**
 * Watches `client` for its first `ready` (at once when it is ready already), after which
 * {@link linked} refuses a call while it is not ready: ioredis's offline queue (on by default)
 * keeps a command sent while the connection is down and runs it once Redis is back, long
 * after tollbooth stopped waiting for it. An admission answered 503 then counted its limits
 * and held its credits; its cancel, queued behind it, undid it only while the core's retry
 * queue had room for one cancel per refused request (with `maxPendingSettles` 5 and 20
 * requests refused while Redis was down: 15 quota units and 15 credit holds left, a top-up and
 * a key created though both callers were told the outcome was unknown;
 * test/fault/redis-late.test.ts). Before the first `ready` calls queue as before: an
 * application may use the client as soon as it creates it.
 */
export function watchLink(client: RedisClient, waitMs: number): Link {
  const link: Link = { up: client.status === 'ready', client, waitMs }
  if (!link.up) {
    const stop = onClient(client, 'ready', () => {
      stop()
      link.up = true
    })
  }
  return link
}

/**
 * Undefined when a call may be sent now (a property read on each call, no round trip); else,
 * the client having lost its connection since it was ready, a promise that resolves once it is
 * ready again within `reconnectWaitMs` (a cut connection comes back in 50-100 ms: the calls
 * made meanwhile are served, not refused), or rejects, nothing sent, when it is not. Never
 * left to ioredis's offline queue (see {@link watchLink}): a call sent late, after the core
 * stopped waiting for it, would count for a request answered 503.
 */
export function linked(ctx: Ctx): Promise<void> | undefined {
  const link = ctx.link
  if (ctx.client.status === 'ready' || link?.up !== true) return undefined
  if (link.waitMs === 0) return Promise.reject(notConnected(ctx.client.status))
  // Each call waiting is answered by the client's one shared `ready` listener ({@link onClient}):
  // one each left 50 calls made in a reconnect's gap with 50 `ready` listeners and a
  // MaxListenersExceededWarning on the user's client (test/fault/redis-reconnect.test.ts).
  return new Promise((resolve, reject) => {
    const stop = onClient(link.client, 'ready', () => {
      stop()
      clearTimeout(timer)
      resolve()
    })
    const timer = setTimeout(() => {
      stop()
      reject(notConnected(ctx.client.status))
    }, link.waitMs)
  })
}

/**
 * A driver's error, as ioredis's own without its offline queue: the core names the call and
 * gives the code (`Storage unavailable (tb.keys.create): the store failed (NOT_CONNECTED)`),
 * a request is answered 503. `notSent`: the core queues no cancel for an admission that was
 * never sent (one per request refused while Redis was down filled the retry queue: 15 of 20
 * dropped as "queue full" with `maxPendingSettles` 5, test/fault/redis-late.test.ts).
 */
function notConnected(status: string): Error {
  return Object.assign(
    new Error(`tollbooth/redis: the client is not connected (status ${status}); nothing was sent`),
    { code: 'NOT_CONNECTED', notSent: true },
  )
}

/** The counters' connection: the user's client, or one of tollbooth's own that `close()` closes. */
export type CounterConnection =
  | { conn: RedisClient; own: false }
  | { conn: RedisClient; own: true; close: () => void }

/**
 * The connection the counters run on (admissions, cancels, settles, claims): `client` itself
 * when its options already say a call is never sent twice nor left unanswered at a drop
 * ({@link neverTwice}), else one tollbooth opens with
 * `client.duplicate()` and options that say so, and closes (`own` true).
 *
 * ioredis sends a call again after a reconnect when its reply was lost with the connection
 * (`autoResendUnfulfilledCommands`, on by default), and a Cluster sends a call whose node
 * connection closed again to the node it finds next (`retryDelayOnFailover`, 100 ms by
 * default). Redis may have run it already: an admission is then counted twice, a settle
 * riding with it sent twice. With a client of ioredis's defaults, Redis frozen, the client's
 * socket cut and Redis thawed, 3 admissions in flight were counted twice (daily and monthly
 * quotas 12 for 9 requests served; thawed past the storage timeout, the 3 cancels undid one
 * run each: 9 for 6; test/fault/redis-resend.test.ts). Making each call idempotent instead, by an
 * id the script records, would add a key written (and kept) per call, settles included, to
 * the hot path; a connection of tollbooth's own costs one more connection per instance (one
 * per node on a cluster) and nothing per call. Its overrides:
 * - `autoResendUnfulfilledCommands: false` (a Cluster's nodes too, and `retryDelayOnFailover:
 *   0`): a call in flight at a drop is never sent again;
 * - `maxRetriesPerRequest: 0`: that call fails at the drop (it may have run: the core cancels
 *   it) instead of waiting, unanswered, for a `commandTimeout` the client may not have;
 * - `enableOfflineQueue: true`: calls made before its first `ready` wait for it (failing when
 *   a connection attempt fails), after it {@link linked} refuses them while it is down;
 * - `lazyConnect: false`.
 * Everything else (host, port, `db`, ACL user and password, TLS, sentinels, `keyPrefix`,
 * timeouts, retry strategy) is the user's client's, as `duplicate()` copies its options. It is
 * closed with the storage and when the user's client ends (`quit()`, `disconnect()`, or given
 * up reconnecting), and connected again when that client is ready again.
 */
export function counterConnection(client: RedisClient): CounterConnection {
  const safe = { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 }
  const common = { enableOfflineQueue: true, lazyConnect: false }
  // Closed already: nothing to open (its calls fail, and `closed()` says why).
  if (client.status === 'end') return { conn: client, own: false }
  if ('nodes' in client) {
    const o = client.options
    if (o.retryDelayOnFailover === 0 && neverTwice(o.redisOptions ?? {}))
      return { conn: client, own: false }
    const conn = client.duplicate(undefined, {
      ...common,
      retryDelayOnFailover: 0,
      redisOptions: { ...o.redisOptions, ...safe },
    })
    return { ...follow(client, conn), own: true }
  }
  if (neverTwice(client.options)) return { conn: client, own: false }
  return { ...follow(client, client.duplicate({ ...common, ...safe })), own: true }
}

/**
 * Whether a client with options `o` neither sends a call in flight at a drop again nor leaves
 * it unanswered: `autoResendUnfulfilledCommands: false`, and the call failed at the drop
 * (`maxRetriesPerRequest: 0`) or after `commandTimeout`. With the first alone (ioredis drops
 * such a call without answering it), the call never ended and its admission's cancel, queued
 * behind it, never went: 3 admissions in flight at a cut left quotas +3 and 3 concurrency
 * slots held (test/fault/redis-resend.test.ts).
 */
function neverTwice(o: {
  autoResendUnfulfilledCommands?: boolean | undefined
  maxRetriesPerRequest?: number | null | undefined
  commandTimeout?: number | undefined
}): boolean {
  return (
    o.autoResendUnfulfilledCommands === false &&
    (o.maxRetriesPerRequest === 0 || (o.commandTimeout ?? 0) > 0)
  )
}

/** A client event tollbooth follows: `ready` (connected again) or `end` (closed for good). */
type ClientEvent = 'ready' | 'end'

/** Per client and event: what its one listener calls, and that listener ({@link onClient}). */
const following = new WeakMap<
  RedisClient,
  Map<ClientEvent, { calls: Set<() => void>; listener: () => void }>
>()

/**
 * Calls `fn` each time `client` emits `event`, until the function returned is called. Every
 * storage on the client shares one listener per event, added with the first call and removed
 * with the last: one each made 22 `end` listeners for 11 storages on one client (the counters'
 * connection for the storage's life, the change feed while subscribed), 11 `ready` ones for 11
 * storages made before it was ready, and a MaxListenersExceededWarning on the user's client
 * (test/storage/redis-client-listeners.test.ts).
 */
export function onClient(client: RedisClient, event: ClientEvent, fn: () => void): () => void {
  let events = following.get(client)
  if (!events) {
    events = new Map()
    following.set(client, events)
  }
  const forEvent = events
  let e = events.get(event)
  if (!e) {
    const calls = new Set<() => void>()
    const listener = () => {
      for (const call of [...calls]) call()
    }
    e = { calls, listener }
    events.set(event, e)
    client.on(event, listener)
  }
  // Each call its own entry, so one function given twice is stopped once each.
  const call = () => fn()
  e.calls.add(call)
  const followed = e
  return () => {
    if (!followed.calls.delete(call) || followed.calls.size > 0) return
    client.off(event, followed.listener)
    forEvent.delete(event)
  }
}

/**
 * `conn` following `client`: disconnected when it ends, and connected again when it is ready
 * again (an application may `connect()` a client that ended, as after a `retryStrategy` that
 * gave up: the counters' connection stayed closed, every request 503 and `closed()` saying
 * it gave up reconnecting, test/fault/redis-resend.test.ts); its errors left to the calls that
 * meet them. `close()` disconnects it and stops following.
 */
function follow(client: RedisClient, conn: RedisClient): { conn: RedisClient; close: () => void } {
  conn.on('error', () => {
    // Reconnects by itself; a call it fails answers as the store's error.
  })
  let closed = false
  const reconnect = () => {
    if (closed || client.status !== 'ready') return
    conn.connect().catch(() => {
      // Its calls meet the failure, and it reconnects as the client's options say.
    })
  }
  let stopReady: (() => void) | undefined
  const onReady = () => {
    stopReady?.()
    stopReady = undefined
    // Its disconnect may not have ended yet when the client is back that fast.
    if (conn.status === 'end') reconnect()
    else conn.once('end', reconnect)
  }
  const stop = onClient(client, 'end', () => {
    conn.disconnect()
    stopReady ??= onClient(client, 'ready', onReady)
  })
  return {
    conn,
    close: () => {
      closed = true
      stop()
      stopReady?.()
      conn.disconnect()
    },
  }
}

/**
 * `store` with each method refused while the client is not connected ({@link linked}), as a
 * rejected promise, before anything is sent.
 */
export function whileLinked<T extends object>(ctx: Ctx, store: T): T {
  const out = {} as Record<string, unknown>
  for (const [name, f] of Object.entries(store)) {
    out[name] =
      typeof f === 'function'
        ? (...args: unknown[]) => {
            const wait = linked(ctx)
            return wait ? wait.then(() => f.apply(store, args)) : f.apply(store, args)
          }
        : f
  }
  return out as T
}

/** A number for Lua: `inf` for infinities (tonumber reads the rest exactly). */
export function enc(x: number): string {
  return x === Infinity ? 'inf' : x === -Infinity ? '-inf' : String(x)
}

/** A number from Lua (`%.17g` or `inf`); -0 becomes 0. */
export function dec(s: string): number {
  return s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s) + 0
}

/** Whether a rejection is one of the scripts' duplicate errors. */
export function isDuplicate(err: unknown): boolean {
  return err instanceof Error && err.message.includes('TOLLBOOTH_DUPLICATE')
}

/** Retries a read-modify-write until its compare-and-set lands (bounded). */
export async function casLoop<T>(attempt: () => Promise<T | typeof RETRY>): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const r = await attempt()
    if (r !== RETRY) return r
  }
  throw new Error('tollbooth/redis: a record kept changing during an update (100 attempts)')
}

/** Returned by a `casLoop` attempt whose compare failed. */
export const RETRY: unique symbol = Symbol('retry')

/** The ioredis client option, of `redisStorage` and `upgradeUsageTotals`. */
export const redisClientSchema = objectOption<RedisClient>(
  (v) => typeof (v as { defineCommand?: unknown } | null)?.defineCommand === 'function',
  'must be an ioredis Redis or Cluster instance',
)
/** The key prefix option, of `redisStorage` and `upgradeUsageTotals`. */
export const keyPrefixSchema = z
  .string({ error: 'must be a string without braces (tollbooth sets the hash tags)' })
  .regex(/^[^{}]*$/, 'must be a string without braces (tollbooth sets the hash tags)')
  .default('tollbooth:')

/**
 * The options of an upgrade function (`upgradeKeyRecords`, `upgradeUsageTotals`): the client and
 * the `keyPrefix` given to `redisStorage`, checked under the function's name, as a Ctx.
 *
 * @throws {ConfigError} naming a bad option
 */
export function upgradeCtx(
  factory: string,
  options: { client: RedisClient; keyPrefix?: string | undefined },
): Ctx {
  const { client, keyPrefix } = parseOptions(
    factory,
    z.object({ client: redisClientSchema, keyPrefix: keyPrefixSchema }).strict(),
    options,
  )
  return { client: defineCommands(client), prefix: keyPrefix }
}
