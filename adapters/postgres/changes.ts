/**
 * @module postgres/changes
 *
 * The change feed on LISTEN/NOTIFY: `publish` is one `pg_notify` on the pool; subscribers
 * share one dedicated client taken from the pool for as long as anyone listens (it holds one
 * of the pool's connections). When that connection drops, or cannot be had, the feed tries
 * again with a growing delay (250 ms doubling up to 5 s, jittered) until it listens again, for
 * as long as anyone is subscribed. Notifications sent meanwhile are lost: subscribers hear
 * `onStatus(false)` when it drops and `onStatus(true)` once it listens again, and tollbooth
 * trusts its caches for `cache.feedDownTtlMs` only in between.
 * NOTIFY is transactional and delivered to every listening session, this one included.
 * Each time it listens, the feed sends itself a probe through the publishing pool and counts
 * as delivering only once the probe arrives (within {@link PROBE_MS}): behind a pooler in
 * transaction mode the LISTEN's server connection goes back to the pooler's pool right after
 * it, and no notification ever reaches the feed. It then says so once (`onError`, naming
 * `listenPool`), stays down (caches trusted for `cache.feedDownTtlMs`) and keeps trying.
 * A LISTEN that goes deaf later (a half-open connection) is noticed by tollbooth's own
 * periodic probe (`cache.feedProbeMs`, src/tollbooth.ts), which this feed delivers as any
 * message (its prefix is not this one's).
 * The LISTEN connection comes from `listenPool` when given (a direct or session-pooled one).
 * A pool ended under tollbooth (`pool.end()` before `tb.close()`) gets the client back within
 * 100 ms (the feed looks at `pool.ending`), so `pool.end()` resolves; the feed stops there.
 */

import type { Notification, PoolClient } from 'pg'
import type { ChangeFeed, SubscribeOptions } from '../../src/internal.js'
import { ConfigError } from '../../src/internal.js'
import { connect, type Db, type PgPool } from './db.js'

export interface PostgresChangeFeed extends ChangeFeed {
  /** Stops listening and returns the client to the pool. */
  close(): Promise<void>
}

/** The channel of a schema: every instance on the same schema shares it. */
export function channelOf(schema: string): string {
  return `tollbooth_${schema}`
}

/** The longest wait between two attempts to listen again. */
const MAX_RETRY_MS = 5000
/** How often the listening feed looks whether the pool is ending (`pool.end()` waits as long). */
const WATCH_MS = 100
/** How long a probe may take to come back before the LISTEN is taken for deaf. */
export const PROBE_MS = 1000
/** The start of a probe's payload: never a message (a key hash or `account:<id>`). */
const PROBE = 'tollbooth:probe:'

/** Thrown when the feed did not hear its own probe: notifications do not reach the LISTEN. */
class DeafFeedError extends ConfigError {}

interface Subscriber {
  listener: (message: string) => void
  onStatus: ((live: boolean) => void) | undefined
}

/**
 * @param db the storage's pool and schema: messages are published through its pool
 * @param onError errors off the request path
 * @param [listenPool=db.pool] the pool the LISTEN connection is taken from
 */
export function postgresChanges(
  db: Db,
  onError: (err: unknown) => void,
  listenPool: PgPool = db.pool,
): PostgresChangeFeed {
  const channel = channelOf(db.schema)
  const subscribers = new Set<Subscriber>()
  /** The listening client and its `'error'` listener. */
  let client: { c: PoolClient; onClientError: (err: Error) => void } | null = null
  let live = false
  let closed = false
  let retryMs = 0
  let timer: ReturnType<typeof setTimeout> | null = null
  // Starts and stops run one at a time, in call order.
  let chain: Promise<void> = Promise.resolve()
  /** The probe this feed waits for, if any. */
  let probe: { token: string; heard: () => void } | null = null
  /** A deaf LISTEN was reported once; the retries that find it deaf again stay quiet. */
  let deafSaid = false
  const report = (err: unknown) => {
    if (err instanceof DeafFeedError || (err as Error | null)?.cause instanceof DeafFeedError) {
      if (deafSaid) return
      deafSaid = true
    }
    onError(err)
  }

  const deliver = (m: Notification) => {
    if (m.channel !== channel || m.payload === undefined) return
    if (m.payload.startsWith(PROBE)) {
      if (m.payload === probe?.token) probe.heard()
      return
    }
    for (const s of subscribers) {
      try {
        s.listener(m.payload)
      } catch (err) {
        onError(err)
      }
    }
  }

  const setLive = (up: boolean) => {
    if (live === up) return
    live = up
    for (const s of subscribers) {
      try {
        s.onStatus?.(up)
      } catch (err) {
        onError(err)
      }
    }
  }

  /** True once the user called `pool.end()`: pg waits for every client out, this one too. */
  const ending = () =>
    (db.pool as { ending?: boolean }).ending === true ||
    (listenPool as { ending?: boolean }).ending === true
  /** While listening, looks for `pool.ending` (pg's Pool emits nothing when `end()` is called). */
  let watch: ReturnType<typeof setInterval> | null = null
  const stopWatch = () => {
    if (watch) clearInterval(watch)
    watch = null
  }
  /**
   * The pool is ending under tollbooth (`pool.end()` before `tb.close()`): the listening
   * client goes back, so `pool.end()` resolves, and the feed listens no more (tollbooth
   * reports the closed pool once, on the next call that fails).
   */
  const letGo = () => {
    stopWatch()
    const held = client
    if (!held) return
    client = null
    drop(held.c, held.onClientError)
    setLive(false)
  }

  /** Tries to listen again later, while anyone is subscribed. */
  const retry = () => {
    if (closed || subscribers.size === 0 || timer || ending()) return
    retryMs = Math.min(MAX_RETRY_MS, retryMs ? retryMs * 2 : 250)
    timer = setTimeout(
      () => {
        timer = null
        sync().catch(report)
      },
      retryMs * (0.5 + Math.random() / 2),
    )
    timer.unref?.()
  }

  /** Returns the client to the pool, or destroys it when given the error that broke it. */
  const drop = (c: PoolClient, onClientError: (err: Error) => void, err?: Error) => {
    c.removeListener('notification', deliver)
    c.removeListener('error', onClientError)
    c.release(err)
  }

  const listen = async () => {
    let c: PoolClient | null = null
    let failed: Error | undefined
    const onClientError = (err: Error) => {
      if (c === null || client?.c !== c) {
        failed = err
        return
      }
      // The listening connection is gone: notifications are being missed from now on.
      client = null
      stopWatch()
      drop(c, onClientError, err)
      setLive(false)
      onError(err)
      retry()
    }
    c = await connect(listenPool, onClientError)
    c.on('notification', deliver)
    try {
      await c.query(`LISTEN "${channel}"`)
      if (failed) throw failed
      if (!(await hears())) throw deaf()
      if (failed) throw failed
    } catch (err) {
      drop(c, onClientError, err as Error)
      throw err
    }
    client = { c, onClientError }
    retryMs = 0
    setLive(true)
    watch ??= setInterval(() => ending() && letGo(), WATCH_MS)
    watch.unref?.()
  }

  /** Sends a probe through the publishing pool: true once it arrived, false after PROBE_MS. */
  const hears = async () => {
    const token = `${PROBE}${Math.random().toString(36).slice(2)}`
    let timer: ReturnType<typeof setTimeout> | undefined
    let heard = false
    const arrived = new Promise<boolean>((resolve) => {
      probe = {
        token,
        heard: () => {
          heard = true
          resolve(true)
        },
      }
      timer = setTimeout(() => resolve(heard), PROBE_MS)
    })
    try {
      // The answer waits for the publish's own reply too (a notification can arrive before
      // it, while its connection is still taken from the pool), but no longer than PROBE_MS:
      // a publish that waits for a connection of a busy pool does not hold the feed (and
      // `close()`, which waits for it) past that.
      const sent = db.query('SELECT pg_notify($1, $2)', [channel, token])
      const done = sent.then(
        () => arrived,
        () => arrived,
      )
      const late = new Promise<boolean>((resolve) => {
        const at = setTimeout(() => resolve(heard), PROBE_MS)
        done.finally(() => clearTimeout(at))
      })
      return await Promise.race([done, late])
    } finally {
      clearTimeout(timer)
      probe = null
    }
  }

  const deaf = () =>
    new DeafFeedError(
      `tollbooth/postgres: the change feed's LISTEN did not hear a notification sent through options.pool within ${PROBE_MS} ms: a pooler in transaction mode (PgBouncer, Supavisor, RDS Proxy) hands the LISTEN's server connection to other clients, so a key revoked or an account changed on one instance would stay cached on the others for cache.ttlMs. Until it hears, caches are trusted for cache.feedDownTtlMs only, and the feed keeps trying. Give it a pool that reaches PostgreSQL directly or through session pooling: postgresStorage({ pool, listenPool })`,
    )

  const unlisten = async ({
    c,
    onClientError,
  }: {
    c: PoolClient
    onClientError: (err: Error) => void
  }) => {
    client = null
    stopWatch()
    // A connection that cannot UNLISTEN is not returned to the pool still listening.
    const err = await c.query(`UNLISTEN "${channel}"`).then(
      () => undefined,
      (e: Error) => e,
    )
    drop(c, onClientError, err)
  }

  const sync = () => {
    const step = chain.then(async () => {
      const want = subscribers.size > 0 && !closed
      if (want && !client) {
        try {
          await listen()
        } catch (err) {
          setLive(false)
          retry()
          throw err
        }
      } else if (!want && client) {
        await unlisten(client)
        live = false
      }
    })
    chain = step.catch(() => {})
    return step
  }

  return {
    async publish(message) {
      await db.query('SELECT pg_notify($1, $2)', [channel, message])
    },
    async subscribe(listener, options?: SubscribeOptions) {
      const s: Subscriber = { listener, onStatus: options?.onStatus }
      subscribers.add(s)
      const off = () => {
        if (subscribers.delete(s) && subscribers.size === 0) sync().catch(onError)
      }
      try {
        await sync()
      } catch (err) {
        // Reported by the caller: the retries that find the LISTEN deaf again stay quiet.
        if (err instanceof DeafFeedError) deafSaid = true
        // Still subscribed: the feed keeps trying, and reports when it listens.
        throw new Error(
          'tollbooth/postgres: the change feed could not LISTEN; it keeps trying, and until then caches are trusted for cache.feedDownTtlMs only',
          { cause: err },
        )
      }
      return off
    },
    async close() {
      closed = true
      if (timer) clearTimeout(timer)
      timer = null
      await sync()
    },
  }
}
