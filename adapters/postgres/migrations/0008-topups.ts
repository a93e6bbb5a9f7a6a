/**
 * @module postgres/migrations/0008-topups
 *
 * Top-ups' idempotency records (`AccountStore.topUp`, `tb.accounts.addCredits` with
 * `idempotencyKey`): one row per account and key (a key is its account's), kept until
 * `expires_at` (the caller's clock, ms), and deleted with its account. The record and the
 * balance are written by one statement, so a top-up whose process died after it, or that lands
 * after its own retry, is credited once. Expired rows are deleted by later top-ups. A schema not migrated to 8 keeps serving everything else; a top-up
 * with a key, or a billing credit grant (a top-up under its grant's key), then fails with the
 * hint to migrate.
 */

/** The SQL of migration 8. */
export const TOPUPS_SQL = `
CREATE TABLE topups (
  account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  key         text COLLATE "C" NOT NULL,
  amount      float8 NOT NULL,
  expires_at  bigint NOT NULL,
  PRIMARY KEY (account_id, key)
);
CREATE INDEX topups_expires_idx ON topups (expires_at);
`
