/**
 * @module postgres/changes
 *
 * The change feed on LISTEN/NOTIFY: `publish` is one `pg_notify` on the pool; subscribers
 * share one dedicated client taken from the pool for as long as anyone listens (it holds one
 * of the pool's connections). When that connection drops, it is replaced with a growing delay
 * (up to 30 s); notifications sent meanwhile are lost, and the cache TTL bounds what that costs.
 * NOTIFY is transactional and delivered to every listening session, this one included.
 */

import type { Notification, PoolClient } from 'pg'
import type { ChangeFeed } from '../../src/index.js'
import type { Db } from './db.js'

export interface PostgresChangeFeed extends ChangeFeed {
  /** Stops listening and returns the client to the pool. */
  close(): Promise<void>
}

/** The channel of a schema: every instance on the same schema shares it. */
export function channelOf(schema: string): string {
  return `tollbooth_${schema}`
}

export function postgresChanges(db: Db, onError: (err: unknown) => void): PostgresChangeFeed {
  const channel = channelOf(db.schema)
  const listeners = new Set<(hash: string) => void>()
  let client: PoolClient | null = null
  let closed = false
  let retryMs = 0
  let timer: ReturnType<typeof setTimeout> | null = null
  // Starts and stops run one at a time, in call order.
  let chain: Promise<void> = Promise.resolve()

  const deliver = (m: Notification) => {
    if (m.channel !== channel || m.payload === undefined) return
    for (const l of listeners) {
      try {
        l(m.payload)
      } catch (err) {
        onError(err)
      }
    }
  }

  /** Returns the client to the pool, or destroys it when given the error that broke it. */
  const drop = (c: PoolClient, err?: Error) => {
    c.removeListener('notification', deliver)
    c.removeListener('error', lost)
    c.release(err)
  }

  function lost(err: Error) {
    if (!client) return
    const c = client
    client = null
    drop(c, err)
    onError(err)
    if (closed || listeners.size === 0) return
    retryMs = Math.min(30_000, retryMs ? retryMs * 2 : 250)
    timer = setTimeout(() => {
      timer = null
      sync().catch(onError)
    }, retryMs)
    timer.unref?.()
  }

  const sync = () => {
    const step = chain.then(async () => {
      const want = listeners.size > 0 && !closed
      if (want && !client) {
        const c = await db.pool.connect()
        c.on('notification', deliver)
        c.on('error', lost)
        try {
          await c.query(`LISTEN "${channel}"`)
        } catch (err) {
          drop(c, err as Error)
          throw err
        }
        client = c
        retryMs = 0
      } else if (!want && client) {
        const c = client
        client = null
        // A connection that cannot UNLISTEN is not returned to the pool still listening.
        const err = await c.query(`UNLISTEN "${channel}"`).then(
          () => undefined,
          (e: Error) => e,
        )
        drop(c, err)
      }
    })
    chain = step.catch(() => {})
    return step
  }

  return {
    async publish(hash) {
      await db.query('SELECT pg_notify($1, $2)', [channel, hash])
    },
    async subscribe(listener) {
      listeners.add(listener)
      try {
        await sync()
      } catch (err) {
        listeners.delete(listener)
        throw err
      }
      return () => {
        if (listeners.delete(listener) && listeners.size === 0) sync().catch(onError)
      }
    },
    async close() {
      closed = true
      if (timer) clearTimeout(timer)
      timer = null
      await sync()
    },
  }
}
