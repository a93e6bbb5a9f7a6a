/**
 * @module postgres/migrations/0007-json-as-given
 *
 * A key's `metadata` and `limits` and an account's `metadata` become `json` (was `jsonb`), so
 * they come back as they were written: `jsonb` stores a parsed form that orders an object's
 * fields by length and then bytes (`{"zeta":1,"a":2}` came back `{"a":2,"zeta":1}`), where
 * memory, SQLite and Redis keep the order given. `json` keeps the text, checked as JSON.
 * No statement of tollbooth uses a `jsonb` operator on these columns (`json` has no equality
 * either, so none may compare them). The counters' `state` stays `jsonb`: it is compared whole
 * in `counters_apply` and never shown.
 *
 * Existing rows keep the order `jsonb` gave them (the order written is gone); rows written
 * afterwards keep theirs. The `ALTER` rewrites both tables under an exclusive lock, for as long
 * as copying them takes.
 */

/** The SQL of migration 7. */
export const JSON_AS_GIVEN_SQL = `
ALTER TABLE keys
  ALTER COLUMN metadata DROP DEFAULT,
  ALTER COLUMN metadata TYPE json USING metadata::json,
  ALTER COLUMN metadata SET DEFAULT '{}',
  ALTER COLUMN limits DROP DEFAULT,
  ALTER COLUMN limits TYPE json USING limits::json,
  ALTER COLUMN limits SET DEFAULT '{}';
ALTER TABLE accounts
  ALTER COLUMN metadata DROP DEFAULT,
  ALTER COLUMN metadata TYPE json USING metadata::json,
  ALTER COLUMN metadata SET DEFAULT '{}';
`
