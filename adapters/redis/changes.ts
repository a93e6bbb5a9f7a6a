/**
 * @module tollbooth/redis/changes
 *
 * The change feed on Redis pub/sub: `publish` is one PUBLISH on the user's client; the first
 * `subscribe` opens a dedicated connection (`client.duplicate()`, since a subscribed
 * connection can run nothing else) that every listener of this storage shares. The
 * subscriber queues its SUBSCRIBE until connected and resubscribes after a reconnect, so a
 * feed opened while Redis is down starts working when Redis is back. Messages published while
 * the connection is down are lost: subscribers hear `onStatus(false)` when it closes and
 * `onStatus(true)` once SUBSCRIBE is confirmed again, and tollbooth trusts its caches for
 * `cache.feedDownTtlMs` only in between. When the user's client ends (closed before
 * `tb.close()`), the subscriber is disconnected with it.
 */

import type { ChangeFeed, SubscribeOptions } from '../../src/internal.js'
import { onClient, type RedisClient } from './store.js'

/** A change feed that can close the connection it opened. */
export interface RedisChangeFeed extends ChangeFeed {
  close(): Promise<void>
}

/**
 * @param client the user's client (used to publish, and duplicated to subscribe)
 * @param channel the pub/sub channel
 * @param timeoutMs how long `subscribe` waits for Redis to confirm before rejecting
 */
export function redisChanges(
  client: RedisClient,
  channel: string,
  timeoutMs: number,
): RedisChangeFeed {
  const listeners = new Map<(message: string) => void, SubscribeOptions['onStatus']>()
  let sub: RedisClient | null = null
  let subscribed: Promise<unknown> | null = null
  let live = false

  const setLive = (up: boolean) => {
    if (live === up) return
    live = up
    for (const onStatus of listeners.values()) onStatus?.(up)
  }

  const open = (): Promise<unknown> => {
    const override = { enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false }
    // A reconnected connection is subscribed by the `ready` listener below, with a handler:
    // ioredis's own resubscribe (`autoResubscribe`) leaves its promise unhandled, so a
    // connection released before Redis answered it ended the process ("Connection is
    // closed." as an unhandled rejection). A cluster's subscriber handles its own.
    const conn =
      'nodes' in client
        ? client.duplicate(undefined, override)
        : client.duplicate({ ...override, autoResubscribe: false })
    conn.on('error', () => {
      // Reconnects by itself; failures surface as the hot path's storage errors.
    })
    conn.on('message', (ch: string, message: string) => {
      if (ch !== channel) return
      for (const listener of listeners.keys()) listener(message)
    })
    // A connection released (its last subscriber gone, or close()) may report its close after
    // a new one is up: only the current one's says the feed is down.
    conn.on('close', () => sub === conn && setLive(false))
    conn.on('ready', () => {
      // ioredis resubscribes by itself; this SUBSCRIBE (idempotent) confirms when it holds.
      if (sub === conn) conn.subscribe(channel).then(() => sub === conn && setLive(true), noop)
    })
    // The user's client closed (quit(), disconnect(), or given up reconnecting): this
    // connection goes too, or it alone would keep the process alive. A later subscribe opens
    // a new one.
    const stop = onClient(client, 'end', () => {
      stop()
      if (sub !== conn) return
      setLive(false)
      release()
    })
    conn.once('end', stop)
    sub = conn
    return conn.subscribe(channel).then(
      (n) => {
        if (sub === conn) setLive(true)
        return n
      },
      (err: unknown) => {
        throw denied(err, channel, 'SUBSCRIBE to')
      },
    )
  }

  const release = () => {
    const conn = sub
    sub = null
    subscribed = null
    live = false
    conn?.disconnect()
  }

  return {
    async publish(message) {
      await client.publish(channel, message).catch((err: unknown) => {
        throw denied(err, channel, 'PUBLISH to')
      })
    },
    async subscribe(listener, options?: SubscribeOptions) {
      listeners.set(listener, options?.onStatus)
      const off = () => {
        // The last subscriber gone, the connection goes too (as the PostgreSQL and SQLite
        // feeds stop listening): an open subscriber would keep the process alive after
        // `tb.close()`. A later subscribe opens a new one.
        if (listeners.delete(listener) && listeners.size === 0) release()
      }
      subscribed ??= open()
      let timer: ReturnType<typeof setTimeout> | undefined
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `tollbooth/redis: the change feed was not subscribed within ${timeoutMs} ms; it keeps trying, and until then the key cache TTL bounds revocation`,
              ),
            ),
          timeoutMs,
        )
      })
      try {
        await Promise.race([subscribed, late])
      } finally {
        clearTimeout(timer)
      }
      return off
    },
    async close() {
      listeners.clear()
      release()
    },
  }
}

const noop = () => {}

/**
 * `err`, or where it is an ACL refusal of the channel (Redis 7 gives a new ACL user no
 * channels: `acl-pubsub-default resetchannels`), an error naming the channel and the rule to
 * add, with `err` as its cause.
 */
function denied(err: unknown, channel: string, verb: string): unknown {
  if (!(err instanceof Error && /^NOPERM.*channel/i.test(err.message))) return err
  return new Error(
    `tollbooth/redis: the Redis user may not ${verb} the change channel '${channel}' (add \`&${channel}\` or \`allchannels\` to its ACL rules); until it may, revocations and account changes reach other instances only once their cache entries expire (cache.feedDownTtlMs)`,
    { cause: err },
  )
}
