/**
 * @module postgres/usage
 *
 * Usage events in `<schema>.usage_events`: the meter and the request log. A batch is one
 * `INSERT … SELECT FROM unnest(…)` (one statement, however many events), idempotent by id
 * with `ON CONFLICT DO NOTHING`, its rows in id order so concurrent batches never deadlock.
 * The same statement adds the admitted events it inserted (and only those) to
 * `<schema>.usage_totals`, per account, UTC hour, usage category and key category, in key order. Summaries read
 * those totals for the whole hours of a range and the events only of sub-hour edges; pruning
 * deletes events and takes them out of their totals in one statement. A key's log pages walk
 * `(key_id, occurred_at DESC, id DESC)`.
 */

import {
  addToSummary,
  decodeLogCursor,
  EVENT_COLUMNS,
  EVENT_FIELDS,
  type EventRow,
  emptySummary,
  encodeLogCursor,
  roundAmountSql,
  splitUsageRange,
  eventFromRow as toEvent,
  USAGE_HOUR_MS,
  type UsageStore,
  type UsageSummary,
} from '../../src/internal.js'
import type { Db } from './db.js'

export function postgresUsage(db: Db): UsageStore {
  const t = db.table('usage_events')
  const totals = db.table('usage_totals')
  const hourOf = `occurred_at - occurred_at % ${USAGE_HOUR_MS}`
  const recordSql = `WITH ins AS (
      INSERT INTO ${t} (${EVENT_COLUMNS})
      SELECT * FROM unnest(${EVENT_FIELDS.map((f, i) => `$${i + 1}::${f[1]}[]`).join(', ')})
      ON CONFLICT (id) DO NOTHING
      RETURNING account_id, occurred_at, category, key_category, units, code
    )
    INSERT INTO ${totals} AS x (account_id, hour, category, key_category, requests, units)
    SELECT account_id, ${hourOf}, coalesce(category, 'uncategorized'),
           coalesce(key_category, 'uncategorized'), count(*), sum(units)
    FROM ins WHERE code IS NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, hour, category, key_category) DO UPDATE
    SET requests = x.requests + excluded.requests,
        units = ${roundAmountSql('x.units + excluded.units', 'postgres')}`
  const pruneSql = `WITH del AS (
      DELETE FROM ${t} WHERE occurred_at < $1
      RETURNING account_id, occurred_at, category, key_category, units, code
    ), gone AS (
      SELECT account_id, ${hourOf} AS hour, coalesce(category, 'uncategorized') AS category,
             coalesce(key_category, 'uncategorized') AS key_category,
             count(*) AS requests, sum(units) AS units
      FROM del WHERE code IS NULL GROUP BY 1, 2, 3, 4
    ), upd AS (
      UPDATE ${totals} x SET requests = x.requests - g.requests,
        units = ${roundAmountSql('x.units - g.units', 'postgres')}
      FROM gone g
      WHERE x.account_id = g.account_id AND x.hour = g.hour AND x.category = g.category
        AND x.key_category = g.key_category
    )
    SELECT count(*)::int AS n FROM del`
  return {
    async record(events) {
      if (events.length === 0) return
      // In id order: two batches sharing events (a retried flush, an Idempotency-Key replayed
      // on another instance) then wait on each other's rows in one order, never in a cycle.
      const sorted = events.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      await db.execute(
        recordSql,
        EVENT_FIELDS.map(([, , get]) => sorted.map((e) => get(e))),
      )
    },
    async summarize(accountId, from, to, filter): Promise<UsageSummary> {
      const { hours, edges } = splitUsageRange(from, to)
      const [e1, e2] = [edges[0] ?? [0, 0], edges[1] ?? [0, 0]]
      const rows = await db.query<{
        category: string
        key_category: string
        requests: number
        units: number
      }>(
        `SELECT category, key_category, sum(requests)::float8 AS requests, sum(units) AS units
         FROM (
           SELECT category, key_category, requests, units FROM ${totals}
           WHERE account_id = $1 AND hour >= $2 AND hour < $3
           UNION ALL
           SELECT coalesce(category, 'uncategorized'), coalesce(key_category, 'uncategorized'),
                  1, units FROM ${t}
           WHERE account_id = $1 AND code IS NULL
             AND ((occurred_at >= $4 AND occurred_at < $5)
               OR (occurred_at >= $6 AND occurred_at < $7))
         ) s GROUP BY category, key_category`,
        [accountId, hours?.[0] ?? 0, hours?.[1] ?? 0, e1[0], e1[1], e2[0], e2[1]],
      )
      const out = emptySummary()
      for (const r of rows)
        if (r.requests > 0)
          addToSummary(out, r.category, r.key_category, r.requests, r.units, filter)
      return out
    },
    async logs(keyId, { limit, cursor }) {
      const [time, id] = cursor ? decodeLogCursor(cursor) : [null, null]
      const rows = await db.query<EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM ${t}
         WHERE key_id = $1 AND ($2::bigint IS NULL OR (occurred_at, id) < ($2, $3::text))
         ORDER BY occurred_at DESC, id DESC
         LIMIT $4`,
        [keyId, time, id, limit + 1],
      )
      const more = rows.length > limit
      const data = (more ? rows.slice(0, limit) : rows).map(toEvent)
      const last = data[data.length - 1]
      return { data, nextCursor: more && last ? encodeLogCursor(last) : null }
    },
    async prune(before) {
      const [row] = await db.query<{ n: number }>(pruneSql, [before])
      // Totals of whole hours before `before` are now 0: drop them (harmless if this fails).
      await db.execute(`DELETE FROM ${totals} WHERE hour <= $1`, [before - USAGE_HOUR_MS])
      return row?.n ?? 0
    },
  }
}
