/**
 * @module postgres/migrations/0004-usage-key-category
 *
 * Usage broken down by the category of the key that made each request (seed 002: categories
 * "appear in dashboard filters and analytics").
 * - `usage_events` gains `key_category`: the key's category when the request was made (null
 *   when it had none; null too for every event recorded before this migration).
 * - `usage_totals` gains `key_category` in its primary key, so totals are kept per (account,
 *   hour, usage category, key category) and one read answers both breakdowns and any filter.
 *   Existing totals become the pair (their category, `uncategorized`), as their events count:
 *   nothing is re-read from the events. Summaries read by the primary key's prefix
 *   (`account_id, hour`), so no other index is needed.
 */

/** The SQL of migration 4. */
export const USAGE_KEY_CATEGORY_SQL = `
ALTER TABLE usage_events ADD COLUMN key_category text;

ALTER TABLE usage_totals ADD COLUMN key_category text COLLATE "C" NOT NULL DEFAULT 'uncategorized';
ALTER TABLE usage_totals ALTER COLUMN key_category DROP DEFAULT;
ALTER TABLE usage_totals DROP CONSTRAINT usage_totals_pkey;
ALTER TABLE usage_totals ADD PRIMARY KEY (account_id, hour, category, key_category);
`
