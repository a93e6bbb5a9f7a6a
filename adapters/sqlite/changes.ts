/**
 * @module sqlite/changes
 *
 * The change feed of processes sharing one file: `publish` appends a row to `changes`; each
 * process with subscribers reads the rows after the last id it has seen every `pollMs` (one
 * probe of the table's integer key when nothing changed), so a revocation made by one process
 * reaches every other within `pollMs` plus a poll. The publisher's own subscribers hear it at
 * once (the publish polls). Rows older than {@link KEEP_MS} are deleted now and then; a process
 * that missed some (it was paused longer than that) reports the feed down and up, and tollbooth
 * empties its caches.
 */

import type { ChangeFeed, SubscribeOptions } from '../../src/internal.js'
import type { Db } from './db.js'

/** How long a published message stays readable. */
const KEEP_MS = 10 * 60_000
/** Publishes between two deletions of old messages. */
const PRUNE_EVERY = 256
/** At most this many messages are read per poll (the rest on the next). */
const BATCH = 1000

export interface SqliteChangeFeed extends ChangeFeed {
  /** Stops polling. */
  close(): void
}

interface Subscriber {
  listener: (message: string) => void
  onStatus: ((live: boolean) => void) | undefined
}

export function sqliteChanges(
  d: Db,
  pollMs: number,
  onError: (err: unknown) => void,
): SqliteChangeFeed {
  const subscribers = new Set<Subscriber>()
  let last = 0
  let timer: ReturnType<typeof setInterval> | null = null
  let publishes = 0

  const each = (fn: (s: Subscriber) => void) => {
    for (const s of subscribers) {
      try {
        fn(s)
      } catch (err) {
        onError(err)
      }
    }
  }

  const poll = async () => {
    if (subscribers.size === 0) return
    for (;;) {
      const rows = await d.run(
        () =>
          d
            .stmt('SELECT id, message FROM changes WHERE id > ? ORDER BY id LIMIT ?')
            .all(last, BATCH) as Array<{
            id: number
            message: string
          }>,
      )
      if (rows.length === 0) return
      // Rows between the last seen and the first read were deleted unread: caches are emptied.
      if (rows[0]!.id > last + 1 && last > 0) {
        const gap = await d.run(() => d.stmt('SELECT 1 FROM changes WHERE id = ?').get(last + 1))
        if (!gap) {
          each((s) => s.onStatus?.(false))
          each((s) => s.onStatus?.(true))
        }
      }
      for (const r of rows) {
        if (r.id <= last) continue
        last = r.id
        each((s) => s.listener(r.message))
      }
      if (rows.length < BATCH) return
    }
  }

  // One poll at a time (a poll may wait for the file's lock): a poll asked for meanwhile runs
  // once it ends.
  let polling: Promise<void> | null = null
  let again = false
  const safePoll = (): Promise<void> => {
    if (polling) {
      again = true
      return polling
    }
    polling = (async () => {
      do {
        again = false
        // The user's handle closed under tollbooth (`db.close()` before `tb.close()`): polling
        // stops, reporting nothing (the core reports the closed handle once, through `closed()`).
        if (d.db.open === false) {
          if (timer) clearInterval(timer)
          timer = null
          return
        }
        try {
          await poll()
        } catch (err) {
          // A file gone was reported once, when found.
          if (err !== d.gone) onError(err)
        }
      } while (again)
    })().finally(() => {
      polling = null
    })
    return polling
  }

  return {
    async publish(message) {
      const now = Date.now()
      const prune = ++publishes % PRUNE_EVERY === 0
      await d.tx(() => {
        d.stmt('INSERT INTO changes (message, at) VALUES (?, ?)').run(message, now)
        if (prune) d.stmt('DELETE FROM changes WHERE at < ?').run(now - KEEP_MS)
      })
      await safePoll()
    },
    async subscribe(listener, options?: SubscribeOptions) {
      const s: Subscriber = { listener, onStatus: options?.onStatus }
      const first = subscribers.size === 0
      subscribers.add(s)
      if (first) {
        const top = (await d.run(() => d.stmt('SELECT max(id) AS id FROM changes').get())) as {
          id: number | null
        }
        last = Math.max(last, top.id ?? 0)
        if (timer === null && subscribers.size > 0) {
          timer = setInterval(safePoll, pollMs)
          timer.unref?.()
        }
      }
      return () => {
        if (subscribers.delete(s) && subscribers.size === 0 && timer) {
          clearInterval(timer)
          timer = null
        }
      }
    },
    close() {
      if (timer) clearInterval(timer)
      timer = null
      subscribers.clear()
    },
  }
}
