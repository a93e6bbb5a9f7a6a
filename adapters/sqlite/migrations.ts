/**
 * @module sqlite/migrations
 *
 * The schema of `tollbooth/sqlite`, as versioned steps. Ids only grow; a released step never
 * changes. `migrate()` records each applied step in `tollbooth_migrations`.
 *
 * Choices:
 * - Times are INTEGER milliseconds since the epoch; amounts REAL (a JavaScript number).
 * - Text compares in the BINARY collation, byte order of UTF-8: `ORDER BY id DESC` is the order
 *   of JavaScript's string comparison for the ids tollbooth makes.
 * - JSON fields (scopes, metadata, limits, a counter's state) are TEXT.
 * - `counters` and `usage_totals` are WITHOUT ROWID: the row lives in its primary key's b-tree,
 *   one lookup per counter.
 * - `changes` is the change feed: one row per published message, polled by every process on the
 *   file by its growing id.
 */

/** One versioned step of the schema. */
export interface Migration {
  id: number
  name: string
  sql: string
}

/** The SQL of migration 1. */
export const INIT_SQL: string = `
CREATE TABLE keys (
  id            TEXT PRIMARY KEY,
  hash          TEXT NOT NULL UNIQUE,
  start         TEXT NOT NULL,
  name          TEXT NOT NULL,
  account_id    TEXT NOT NULL,
  kind          TEXT NOT NULL CHECK (kind IN ('consumption', 'management')),
  category      TEXT,
  scopes        TEXT NOT NULL DEFAULT '[]',
  metadata      TEXT NOT NULL DEFAULT '{}',
  active        INTEGER NOT NULL DEFAULT 1,
  created_at    INTEGER NOT NULL,
  expires_at    INTEGER,
  last_used_at  INTEGER,
  revoked_at    INTEGER,
  limits        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX keys_account_idx ON keys (account_id, id);

CREATE TABLE accounts (
  id                   TEXT PRIMARY KEY,
  tier                 TEXT,
  balance              REAL NOT NULL DEFAULT 0,
  carryover            REAL NOT NULL DEFAULT 0,
  period_start         INTEGER NOT NULL,
  tier_expires_at      INTEGER,
  billing_customer_id  TEXT,
  metadata             TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE usage_events (
  id           TEXT PRIMARY KEY,
  request_id   TEXT NOT NULL,
  key_id       TEXT NOT NULL,
  account_id   TEXT NOT NULL,
  occurred_at  INTEGER NOT NULL,
  units        REAL NOT NULL,
  overage      REAL NOT NULL DEFAULT 0,
  tokens       REAL NOT NULL DEFAULT 0,
  category     TEXT,
  status       INTEGER NOT NULL,
  duration_ms  REAL NOT NULL,
  ttfb_ms      REAL,
  code         TEXT,
  ip           TEXT,
  method       TEXT NOT NULL,
  path         TEXT NOT NULL,
  bypassed     INTEGER NOT NULL DEFAULT 0,
  provider     TEXT
);
CREATE INDEX usage_events_key_idx ON usage_events (key_id, occurred_at, id);
CREATE INDEX usage_events_account_idx ON usage_events (account_id, occurred_at);
CREATE INDEX usage_events_time_idx ON usage_events (occurred_at);

CREATE TABLE usage_totals (
  account_id  TEXT NOT NULL,
  hour        INTEGER NOT NULL,
  category    TEXT NOT NULL,
  requests    INTEGER NOT NULL,
  units       REAL NOT NULL,
  PRIMARY KEY (account_id, hour, category)
) WITHOUT ROWID;
CREATE INDEX usage_totals_hour_idx ON usage_totals (hour);

CREATE TABLE provider_keys (
  account_id   TEXT NOT NULL,
  provider     TEXT NOT NULL,
  sealed       TEXT NOT NULL,
  last4        TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  verified_at  INTEGER,
  PRIMARY KEY (account_id, provider)
) WITHOUT ROWID;

CREATE TABLE counters (
  key         TEXT PRIMARY KEY,
  state       TEXT NOT NULL,
  expires_at  INTEGER
) WITHOUT ROWID;

CREATE TABLE ip_blocks (
  ip             TEXT PRIMARY KEY,
  window_start   INTEGER NOT NULL,
  failures       INTEGER NOT NULL,
  blocked_until  INTEGER,
  expires_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ip_blocks_expires_idx ON ip_blocks (expires_at);

CREATE TABLE changes (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  message  TEXT NOT NULL,
  at       INTEGER NOT NULL
);
`

/**
 * The SQL of migration 2: usage by the category of the key that made each request.
 * - `usage_events` gains `key_category`, the key's category when the request was made (null
 *   when it had none, and for every event recorded before this step).
 * - `usage_totals` is keyed by (account, hour, usage category, key category). SQLite cannot
 *   change a primary key, so the table is rebuilt; existing totals become the pair (their
 *   category, `uncategorized`), as their events count.
 */
export const USAGE_KEY_CATEGORY_SQL = `
ALTER TABLE usage_events ADD COLUMN key_category TEXT;

CREATE TABLE usage_totals_next (
  account_id    TEXT NOT NULL,
  hour          INTEGER NOT NULL,
  category      TEXT NOT NULL,
  key_category  TEXT NOT NULL,
  requests      INTEGER NOT NULL,
  units         REAL NOT NULL,
  PRIMARY KEY (account_id, hour, category, key_category)
) WITHOUT ROWID;
INSERT INTO usage_totals_next (account_id, hour, category, key_category, requests, units)
SELECT account_id, hour, category, 'uncategorized', requests, units FROM usage_totals;
DROP TABLE usage_totals;
ALTER TABLE usage_totals_next RENAME TO usage_totals;
CREATE INDEX usage_totals_hour_idx ON usage_totals (hour);
`

/**
 * The SQL of migration 3: a closed month's statement. `accounts` gains `closed_periods`, the
 * credit figures of the account's last closed periods (plan credits, carryover, balance, use;
 * at most 12, oldest first) as the rollover closed them, written in the same compare-and-set
 * `UPDATE` as `period_start`. Existing accounts start with none (null): a month closed before this
 * step has no figures kept (its read shows its use against its plan's credits alone).
 */
export const ACCOUNT_CLOSED_PERIODS_SQL = `
ALTER TABLE accounts ADD COLUMN closed_periods TEXT;
`

/**
 * The SQL of migration 4: top-ups' idempotency records (`AccountStore.topUp`), one per account
 * and key (a key is its account's), each kept until `expires_at` (the caller's clock, ms); the
 * balance and the record are written in one transaction. Expired ones are deleted by the next
 * top-up, and an account's with it when its row is deleted (by an operator: tollbooth never
 * does; a trigger, foreign keys being off): a record left behind answered the account made
 * again under that id a replay of its key, uncredited (test/money/topup-idempotency).
 */
export const TOPUPS_SQL = `
CREATE TABLE topups (
  account_id  TEXT NOT NULL,
  key         TEXT NOT NULL,
  amount      REAL NOT NULL,
  expires_at  INTEGER NOT NULL,
  PRIMARY KEY (account_id, key)
) WITHOUT ROWID;
CREATE INDEX topups_expires_idx ON topups (expires_at);
CREATE TRIGGER topups_account_deleted AFTER DELETE ON accounts BEGIN
  DELETE FROM topups WHERE account_id = old.id;
END;
`

/** Every migration, in order. */
export const MIGRATIONS: ReadonlyArray<Migration> = [
  { id: 1, name: '0001-init', sql: INIT_SQL },
  { id: 2, name: '0002-usage-key-category', sql: USAGE_KEY_CATEGORY_SQL },
  { id: 3, name: '0003-account-closed-periods', sql: ACCOUNT_CLOSED_PERIODS_SQL },
  { id: 4, name: '0004-topups', sql: TOPUPS_SQL },
]
