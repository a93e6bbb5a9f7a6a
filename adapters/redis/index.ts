/**
 * @module tollbooth/redis
 *
 * `redisStorage()`: every tollbooth store on Redis, through the user's ioredis client, for
 * deployments with several instances. Admission is one round trip (one Lua script checks and
 * counts every limit, all or none); key lookups are cached by the core; usage is written in
 * batches off the hot path; revocations reach every instance through pub/sub.
 *
 * Counters live under `{<accountId>}` hash tags, usage and each account's key list under
 * `{u:<accountId>}`, key records under 256 buckets of their hash (`{kh:<b>}`) and the id index
 * under 256 buckets of the id (`{ki:<b>}`), the small remaining stores under one tag of their
 * own, so each script touches a single slot and the storage runs on Redis Cluster, counters,
 * usage and keys spread over its masters.
 */

import { z } from 'zod'
import {
  type CounterStore,
  integer,
  markSendWait,
  parseOptions,
  type Storage,
} from '../../src/internal.js'
import { redisAccounts, redisSecrets } from './accounts.js'
import { redisChanges } from './changes.js'
import { redisCounters } from './counters.js'
import { watchEviction } from './eviction.js'
import { redisIpBlocks } from './ip-blocks.js'
import { redisKeys } from './keys.js'
import {
  type CounterConnection,
  type Ctx,
  counterConnection,
  defineCommands,
  keyPrefixSchema,
  type RedisClient,
  redisClientSchema,
  watchLink,
  whileLinked,
} from './store.js'
import { redisUsage } from './usage.js'

export { escapeHoldId, hashTag } from './counter-calls.js'
export { upgradeKeyRecords } from './key-upgrade.js'
export { CONSUME } from './scripts.js'
export { type Commands, type RedisClient, SCRIPTS } from './store.js'
export { upgradeUsageTotals } from './usage.js'

export interface RedisStorageOptions {
  /**
   * Your ioredis client (`new Redis(url, options)`) or cluster; tollbooth defines its Lua
   * commands on it and never closes it. Recommended options, so a Redis outage turns into
   * fast 503s instead of queued requests, and a command whose reply was lost is never run
   * twice: `{ maxRetriesPerRequest: 1, enableOfflineQueue: false,
   * autoResendUnfulfilledCommands: false, connectTimeout: 2000, commandTimeout: 1000 }`
   * (with `enableOfflineQueue: false`, wait for the client's `ready` event before serving),
   * and an `error` listener on the client. With the offline queue on, a call made while a
   * client that has been ready is not (it lost its connection) fails at once all the same,
   * nothing sent (`watchLink` in store.ts). Unless its options say a call in flight at a drop
   * is never sent twice nor left unanswered (`autoResendUnfulfilledCommands: false` with a
   * `commandTimeout` or `maxRetriesPerRequest: 0`; on a Cluster those in `redisOptions` and
   * `retryDelayOnFailover: 0`), the counters run on a connection tollbooth opens with
   * `client.duplicate()` and closes (`counterConnection` in store.ts).
   */
  client: RedisClient
  /** Prepended to every Redis key and to the pub/sub channel. No braces. Default `tollbooth:`. */
  keyPrefix?: string
  /**
   * How long an idle counter is kept past the moment it turns idle, in ms: covers clock
   * differences between instances. Default 60000.
   */
  idleSlackMs?: number
  /**
   * The longest a settle (a credit reservation released and charged, tokens counted) waits to
   * ride along with its account's next admission, in ms; settles still queued then are sent
   * together, one call per account. Under load this makes one round trip per request instead
   * of two. 0 sends each settle at once. Default 5.
   */
  settleBatchMs?: number
  /** How long the change feed's first subscribe may wait for Redis, in ms. Default 5000. */
  subscribeTimeoutMs?: number
  /**
   * How long a call made while the client has lost its connection (after it was ready) waits
   * for it to be ready again, in ms; past it the call is refused with nothing sent (a request
   * answered 503). A cut connection is back in 50-100 ms: the requests meanwhile are served.
   * Never left in ioredis's offline queue, where it would run after tollbooth stopped waiting
   * (counted for a request answered 503). Below `storageTimeoutMs`, or `createTollbooth`
   * throws a ConfigError. 0 refuses at once. Default 250.
   */
  reconnectWaitMs?: number
}

const optionsSchema = z
  .object({
    client: redisClientSchema,
    keyPrefix: keyPrefixSchema,
    idleSlackMs: integer(0).default(60_000),
    settleBatchMs: integer(0).default(5),
    subscribeTimeoutMs: integer(0).default(5000),
    reconnectWaitMs: integer(0).default(250),
  })
  .strict()

/**
 * Storage on Redis.
 *
 * @param options.client an ioredis `Redis` or `Cluster`, created and closed by you
 * @param [options.keyPrefix='tollbooth:'] prefix of every key and of the change channel
 * @param [options.idleSlackMs=60000] extra life of idle counters (ms)
 * @param [options.settleBatchMs=5] longest wait of a settle for its account's next admission (ms)
 * @param [options.subscribeTimeoutMs=5000] bound on the change feed's first subscribe (ms)
 * @param [options.reconnectWaitMs=250] how long a call made while the client reconnects waits
 *   for it before it is refused, nothing sent (ms; below `storageTimeoutMs`, or
 *   `createTollbooth` throws a ConfigError)
 * @returns a {@link Storage} whose `close()` closes only the connections it opened (the
 *   subscriber, the counters' own)
 * @throws {ConfigError} naming a bad option
 * @example
 * ```ts
 * import { Redis } from 'ioredis'
 * import { createTollbooth } from 'tollbooth'
 * import { redisStorage } from 'tollbooth/redis'
 *
 * const client = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1, commandTimeout: 1000 })
 * const tb = createTollbooth({ secret, storage: redisStorage({ client }) })
 * ```
 */
export function redisStorage(options: RedisStorageOptions): Storage {
  const { keyPrefix, idleSlackMs, settleBatchMs, subscribeTimeoutMs, reconnectWaitMs } =
    parseOptions('redisStorage', optionsSchema, options)
  const ctx: Ctx = {
    client: defineCommands(options.client),
    prefix: keyPrefix,
    link: watchLink(options.client, reconnectWaitMs),
  }
  // The counters on a connection that never sends a call twice (the user's client when its
  // options say so, see `counterConnection`), opened on the first counter call: a storage
  // whose counters are not used (usage alone, an upgrade) opens none.
  let counter: CounterConnection | undefined
  let closing = false
  const counters = lazily((): CounterStore => {
    counter = counterConnection(options.client)
    const c: Ctx = counter.own
      ? {
          client: defineCommands(counter.conn),
          prefix: keyPrefix,
          link: watchLink(counter.conn, reconnectWaitMs),
        }
      : ctx
    return redisCounters(c, idleSlackMs, settleBatchMs)
  })
  watchEviction(options.client)
  const changes = redisChanges(options.client, `${keyPrefix}changes`, subscribeTimeoutMs)
  const sendWait = { ms: reconnectWaitMs, option: 'redisStorage({ reconnectWaitMs })' }
  // Each store carries the wait too: one taken into another storage (`{ ...postgres, counters:
  // redis.counters }`) is checked against `storageTimeoutMs` all the same.
  const linked = <T extends object>(store: T): T => markSendWait(whileLinked(ctx, store), sendWait)
  return {
    // Refused at once while the client is not connected, never queued (see `watchLink`); the
    // counters check it in their one call path.
    keys: linked(redisKeys(ctx)),
    counters: markSendWait(counters, sendWait),
    usage: linked(redisUsage(ctx)),
    accounts: linked(redisAccounts(ctx)),
    secrets: linked(redisSecrets(ctx)),
    ipBlocks: linked(redisIpBlocks(ctx)),
    changes: { publish: changes.publish, subscribe: changes.subscribe },
    sendWait,
    close: async () => {
      await changes.close()
      closing = true
      if (counter?.own) counter.close()
    },
    closed: () =>
      options.client.status === 'end'
        ? 'tollbooth/redis: options.client was closed (quit() or disconnect(), or it gave up reconnecting)'
        : counter?.own && counter.conn.status === 'end'
          ? closing
            ? "tollbooth/redis: the storage was closed (storage.close() closed the counters' connection)"
            : "tollbooth/redis: the counters' connection (a duplicate of options.client) gave up reconnecting"
          : undefined,
  }
}

/** The counter store `make` returns, made on the first call of one of its methods. */
function lazily(make: () => CounterStore): CounterStore {
  let store: CounterStore | undefined
  const get = () => {
    store ??= make()
    return store
  }
  return {
    consume: (checks, now, admission) => get().consume(checks, now, admission),
    settle: (ops, now) => get().settle(ops, now),
    claim: (key, ttlMs, now) => get().claim(key, ttlMs, now),
    claimed: (key, now) => get().claimed(key, now),
    unclaim: (key) => get().unclaim(key),
    held: (key, now) => get().held(key, now),
  }
}
