/**
 * @module postgres/usage
 *
 * Usage events in `<schema>.usage_events`: the meter and the request log. A batch is one
 * `INSERT … SELECT FROM unnest(…)` (one statement, however many events), idempotent by id
 * with `ON CONFLICT DO NOTHING`, its rows in id order so concurrent batches never deadlock. Totals are a `GROUP BY category` over the
 * `(account_id, occurred_at)` index; a key's log pages walk `(key_id, occurred_at DESC, id DESC)`.
 */

import {
  decodeLogCursor,
  encodeLogCursor,
  type UsageEvent,
  type UsageStore,
  type UsageSummary,
} from '../../src/index.js'
import type { Db } from './db.js'

interface EventRow {
  id: string
  request_id: string
  key_id: string
  account_id: string
  occurred_at: string
  units: number
  overage: number
  tokens: number
  category: string | null
  status: number
  duration_ms: number
  ip: string | null
  method: string
  path: string
  bypassed: boolean
  provider: string | null
}

/** Column, array type, and the event's value, in insert order. */
const FIELDS: ReadonlyArray<[string, string, (e: UsageEvent) => unknown]> = [
  ['id', 'text', (e) => e.id],
  ['request_id', 'text', (e) => e.requestId],
  ['key_id', 'text', (e) => e.keyId],
  ['account_id', 'text', (e) => e.accountId],
  ['occurred_at', 'bigint', (e) => e.time],
  ['units', 'float8', (e) => e.units],
  ['overage', 'float8', (e) => e.overage],
  ['tokens', 'float8', (e) => e.tokens],
  ['category', 'text', (e) => e.category],
  ['status', 'int4', (e) => e.status],
  ['duration_ms', 'float8', (e) => e.durationMs],
  ['ip', 'text', (e) => e.ip],
  ['method', 'text', (e) => e.method],
  ['path', 'text', (e) => e.path],
  ['bypassed', 'bool', (e) => e.bypassed],
  ['provider', 'text', (e) => e.provider],
]

const COLUMNS = FIELDS.map((f) => f[0]).join(', ')

function toEvent(r: EventRow): UsageEvent {
  return {
    id: r.id,
    requestId: r.request_id,
    keyId: r.key_id,
    accountId: r.account_id,
    time: Number(r.occurred_at),
    units: r.units,
    overage: r.overage,
    tokens: r.tokens,
    category: r.category,
    status: r.status,
    durationMs: r.duration_ms,
    ip: r.ip,
    method: r.method,
    path: r.path,
    bypassed: r.bypassed,
    provider: r.provider,
  }
}

export function postgresUsage(db: Db): UsageStore {
  const t = db.table('usage_events')
  const recordSql = `INSERT INTO ${t} (${COLUMNS})
    SELECT * FROM unnest(${FIELDS.map((f, i) => `$${i + 1}::${f[1]}[]`).join(', ')})
    ON CONFLICT (id) DO NOTHING`
  return {
    async record(events) {
      if (events.length === 0) return
      // In id order: two batches sharing events (a retried flush, an Idempotency-Key replayed
      // on another instance) then wait on each other's rows in one order, never in a cycle.
      const sorted = events.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      await db.execute(
        recordSql,
        FIELDS.map(([, , get]) => sorted.map(get)),
      )
    },
    async summarize(accountId, from, to): Promise<UsageSummary> {
      const rows = await db.query<{ category: string | null; requests: number; units: number }>(
        `SELECT category, count(*)::int AS requests, sum(units) AS units FROM ${t}
         WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3
         GROUP BY category`,
        [accountId, from, to],
      )
      const out: UsageSummary = { requests: 0, units: 0, byCategory: {} }
      // A Map, not the record: a category named `__proto__` or `constructor` is a category.
      const cats = new Map<string, { requests: number; units: number }>()
      for (const r of rows) {
        out.requests += r.requests
        out.units += r.units
        const cat = r.category ?? 'uncategorized'
        const c = cats.get(cat) ?? { requests: 0, units: 0 }
        cats.set(cat, c)
        c.requests += r.requests
        c.units += r.units
      }
      out.byCategory = Object.fromEntries(cats)
      return out
    },
    async logs(keyId, { limit, cursor }) {
      const [time, id] = cursor ? decodeLogCursor(cursor) : [null, null]
      const rows = await db.query<EventRow>(
        `SELECT ${COLUMNS} FROM ${t}
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
      return db.execute(`DELETE FROM ${t} WHERE occurred_at < $1`, [before])
    },
  }
}
