/**
 * @module postgres/migrations/0003-usage-aggregates
 *
 * Usage summaries read totals, not events, and the request log records what seed 002 asks.
 * - `usage_events` gains `ttfb_ms` (time to first byte, ms; null when unknown) and `code` (the
 *   error code of a refused request; null for an admitted one).
 * - `usage_totals`: an account's admitted requests and units per UTC hour and category,
 *   upserted by the same statement that inserts the events (only the rows it inserted), so a
 *   summary of a month reads at most 744 rows per category, however many events it holds.
 *   Existing events are totalled here once. The `hour` index serves pruning.
 */

/** The SQL of migration 2. */
export const USAGE_AGGREGATES_SQL: string = `
ALTER TABLE usage_events ADD COLUMN ttfb_ms double precision, ADD COLUMN code text;

CREATE TABLE usage_totals (
  account_id  text COLLATE "C" NOT NULL,
  hour        bigint NOT NULL,
  category    text COLLATE "C" NOT NULL,
  requests    bigint NOT NULL,
  units       double precision NOT NULL,
  PRIMARY KEY (account_id, hour, category)
);
CREATE INDEX usage_totals_hour_idx ON usage_totals (hour);

INSERT INTO usage_totals (account_id, hour, category, requests, units)
SELECT account_id, occurred_at - occurred_at % 3600000, coalesce(category, 'uncategorized'),
       count(*), sum(units)
FROM usage_events GROUP BY 1, 2, 3;
`
