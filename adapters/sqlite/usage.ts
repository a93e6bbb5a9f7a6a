/**
 * @module sqlite/usage
 *
 * Usage events in `usage_events`: the meter and the request log. A batch is one transaction,
 * each event inserted unless its id is there already (idempotent); the admitted events that
 * were inserted are summed per `usage_totals` row (account, UTC hour, usage category, key
 * category), and each sum added with one upsert in the same transaction (as the PostgreSQL
 * store's one statement does), so a summary reads those totals for the whole hours of a range
 * and the events only for its sub-hour edges. Pruning deletes events and takes them out of
 * their totals, the oldest first, in slices of `SLICE_ROWS` events (give or take those of one millisecond), each slice one
 * short transaction, with a pause between them: a backlog of a million events never holds the
 * file's write lock (nor this process's event loop) for more than milliseconds at a time, where
 * one transaction held them for seconds and other processes' admissions failed at
 * `busyTimeoutMs`. A prune under way when the storage closes stops after its slice.
 */

import {
  addToSummary,
  decodeLogCursor,
  EVENT_COLUMNS,
  EVENT_FIELDS,
  type EventRow,
  emptySummary,
  encodeLogCursor,
  roundAmount,
  roundAmountSql,
  splitUsageRange,
  eventFromRow as toEvent,
  USAGE_HOUR_MS,
  type UsageEvent,
  type UsageStore,
  type UsageSummary,
} from '../../src/internal.js'
import { bit, type Db, nextSlice, SLICE_ROWS } from './db.js'

/** An event's values in column order; a flag as 0/1 (SQLite takes no booleans). */
const eventValues = (e: UsageEvent): unknown[] =>
  EVENT_FIELDS.map(([, , get]) => {
    const v = get(e)
    return typeof v === 'boolean' ? bit(v) : v
  })

/** One row of `usage_totals` as a batch adds to it. */
interface HourTotal {
  account: string
  hour: number
  category: string
  keyCategory: string
  requests: number
  units: number
}

const hourOf = (t: number) => t - (((t % USAGE_HOUR_MS) + USAGE_HOUR_MS) % USAGE_HOUR_MS)

export function sqliteUsage(d: Db): UsageStore {
  const insertSql = `INSERT INTO usage_events (${EVENT_COLUMNS}) VALUES (${EVENT_FIELDS.map(() => '?').join(', ')})
    ON CONFLICT (id) DO NOTHING`
  const totalSql = `INSERT INTO usage_totals
      (account_id, hour, category, key_category, requests, units)
    VALUES (@account, @hour, @category, @keyCategory, @requests, @units)
    ON CONFLICT (account_id, hour, category, key_category) DO UPDATE
    SET requests = requests + excluded.requests,
        units = ${roundAmountSql('units + excluded.units', 'sqlite')}`
  return {
    async record(events) {
      if (events.length === 0) return
      await d.tx(() => {
        const insert = d.stmt(insertSql)
        // Summed here first: one upsert per hourly total of the batch, not one per event.
        const groups = new Map<string, HourTotal>()
        for (const e of events) {
          const inserted = Number(insert.run(...eventValues(e)).changes) > 0
          if (!inserted || (e.code !== null && e.code !== undefined)) continue
          const hour = hourOf(e.time)
          const category = e.category ?? 'uncategorized'
          const keyCategory = e.keyCategory ?? 'uncategorized'
          const id = JSON.stringify([e.accountId, hour, category, keyCategory])
          const g = groups.get(id)
          if (g) {
            g.requests++
            g.units = roundAmount(g.units + e.units)
          } else
            groups.set(id, {
              account: e.accountId,
              hour,
              category,
              keyCategory,
              requests: 1,
              units: e.units,
            })
        }
        const total = d.stmt(totalSql)
        for (const g of groups.values()) total.run(g)
      })
    },
    async summarize(accountId, from, to, filter): Promise<UsageSummary> {
      const { hours, edges } = splitUsageRange(from, to)
      const [e1, e2] = [edges[0] ?? [0, 0], edges[1] ?? [0, 0]]
      const rows = await d.run(
        () =>
          d
            .stmt(
              `SELECT category, key_category, sum(requests) AS requests, sum(units) AS units
               FROM (
                 SELECT category, key_category, requests, units FROM usage_totals
                 WHERE account_id = @account AND hour >= @h1 AND hour < @h2
                 UNION ALL
                 SELECT coalesce(category, 'uncategorized'),
                        coalesce(key_category, 'uncategorized'), 1, units FROM usage_events
                 WHERE account_id = @account AND code IS NULL
                   AND ((occurred_at >= @a1 AND occurred_at < @a2)
                     OR (occurred_at >= @b1 AND occurred_at < @b2))
               ) GROUP BY category, key_category`,
            )
            .all({
              account: accountId,
              h1: hours?.[0] ?? 0,
              h2: hours?.[1] ?? 0,
              a1: e1[0],
              a2: e1[1],
              b1: e2[0],
              b2: e2[1],
            }) as Array<{
            category: string
            key_category: string
            requests: number
            units: number
          }>,
      )
      const out = emptySummary()
      for (const r of rows)
        if (r.requests > 0)
          addToSummary(out, r.category, r.key_category, r.requests, r.units, filter)
      return out
    },
    async logs(keyId, { limit, cursor }) {
      const [time, id] = cursor ? decodeLogCursor(cursor) : [null, null]
      const rows = await d.run(
        () =>
          d
            .stmt(
              `SELECT ${EVENT_COLUMNS} FROM usage_events
               WHERE key_id = @key AND (@time IS NULL OR occurred_at < @time
                 OR (occurred_at = @time AND id < @id))
               ORDER BY occurred_at DESC, id DESC LIMIT @limit`,
            )
            .all({ key: keyId, time, id, limit: limit + 1 }) as EventRow[],
      )
      const more = rows.length > limit
      const data = (more ? rows.slice(0, limit) : rows).map(toEvent)
      const last = data[data.length - 1]
      return { data, nextCursor: more && last ? encodeLogCursor(last) : null }
    },
    async prune(before) {
      let pruned = 0
      for (;;) {
        const slice = await d.tx(() => {
          // This slice: the events before `upTo`, the time of the SLICE_ROWS-th oldest event
          // (past the oldest's, so a slice always deletes something), or all before `before`.
          const nth = d
            .stmt(
              'SELECT occurred_at AS at FROM usage_events WHERE occurred_at < ? ORDER BY occurred_at LIMIT 1 OFFSET ?',
            )
            .get(before, SLICE_ROWS) as { at: number } | undefined
          let upTo = before
          if (nth !== undefined) {
            const first = d.stmt('SELECT min(occurred_at) AS at FROM usage_events').get() as {
              at: number
            }
            upTo = Math.min(before, Math.max(nth.at, first.at + 1))
          }
          d.stmt(
            `UPDATE usage_totals AS x SET requests = x.requests - g.requests, units = ${roundAmountSql('x.units - g.units', 'sqlite')}
             FROM (
               SELECT account_id, occurred_at - (occurred_at % ${USAGE_HOUR_MS}) AS hour,
                      coalesce(category, 'uncategorized') AS category,
                      coalesce(key_category, 'uncategorized') AS key_category,
                      count(*) AS requests, sum(units) AS units
               FROM usage_events WHERE occurred_at < ? AND code IS NULL GROUP BY 1, 2, 3, 4
             ) AS g
             WHERE x.account_id = g.account_id AND x.hour = g.hour AND x.category = g.category
               AND x.key_category = g.key_category`,
          ).run(upTo)
          const n = Number(
            d.stmt('DELETE FROM usage_events WHERE occurred_at < ?').run(upTo).changes,
          )
          // Totals of whole hours before `upTo` are now 0.
          d.stmt('DELETE FROM usage_totals WHERE hour <= ?').run(upTo - USAGE_HOUR_MS)
          return { n, more: upTo < before }
        })
        pruned += slice.n
        if (!slice.more) return pruned
        // The file's write lock, and this process's event loop, go to the requests a while.
        if (!(await nextSlice(d))) return pruned
      }
    },
  }
}
