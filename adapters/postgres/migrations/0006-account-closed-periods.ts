/**
 * @module postgres/migrations/0006-account-closed-periods
 *
 * A closed month's statement: `accounts` gains `closed_periods`, the credit figures of the
 * account's last closed periods (plan credits, carryover, balance, use; at most 12, oldest
 * first) as the rollover closed them, written in the same compare-and-set `UPDATE` as
 * `period_start`. Existing accounts start with none (null): a month closed before this migration has
 * no figures kept, and a read of it shows its use against its plan's credits alone (carryover
 * and balance unknown).
 */

/** The SQL of migration 6. */
export const ACCOUNT_CLOSED_PERIODS_SQL = `
ALTER TABLE accounts ADD COLUMN closed_periods jsonb;
`
