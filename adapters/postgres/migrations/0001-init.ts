/**
 * @module postgres/migrations/0001-init
 *
 * The first schema of `tollbooth/postgres`: keys, accounts, usage events, provider keys and
 * counters. `migrate()` runs it with `search_path` set to the target schema, so the names are
 * unqualified; to apply it by hand: `SET search_path TO tollbooth;` then this SQL.
 *
 * Choices:
 * - Times are `bigint` milliseconds since the epoch, as in the storage contract (no rounding
 *   through `timestamptz`'s microseconds and float epochs).
 * - Ids, hashes and counter names are `COLLATE "C"`: byte order, so `ORDER BY id DESC` is the
 *   same order as in JavaScript and does not depend on the database's locale.
 * - Amounts are `double precision`, the exact type of a JavaScript number.
 * - `counters` has no index on `expires_at`: an indexed column that changes on every admission
 *   would rule out HOT updates; pruning scans the (small, pruned) table instead. Its fill factor
 *   leaves room on each page for those in-place updates.
 */

/** The SQL of migration 1. */
export const INIT_SQL: string = `
CREATE TABLE keys (
  id            text COLLATE "C" PRIMARY KEY,
  hash          text COLLATE "C" NOT NULL UNIQUE,
  start         text NOT NULL,
  name          text NOT NULL,
  account_id    text COLLATE "C" NOT NULL,
  kind          text NOT NULL CHECK (kind IN ('consumption', 'management')),
  category      text,
  scopes        text[] NOT NULL DEFAULT '{}',
  metadata      jsonb NOT NULL DEFAULT '{}',
  active        boolean NOT NULL DEFAULT true,
  created_at    bigint NOT NULL,
  expires_at    bigint,
  last_used_at  bigint,
  revoked_at    bigint,
  limits        jsonb NOT NULL DEFAULT '{}'
);
-- An account's keys, newest first (the unique constraint on hash serves lookups by hash).
CREATE INDEX keys_account_id_idx ON keys (account_id, id DESC);

CREATE TABLE accounts (
  id                   text COLLATE "C" PRIMARY KEY,
  tier                 text,
  balance              double precision NOT NULL DEFAULT 0,
  carryover            double precision NOT NULL DEFAULT 0,
  period_start         bigint NOT NULL,
  tier_expires_at      bigint,
  billing_customer_id  text,
  metadata             jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE usage_events (
  id           text COLLATE "C" PRIMARY KEY,
  request_id   text NOT NULL,
  key_id       text COLLATE "C" NOT NULL,
  account_id   text COLLATE "C" NOT NULL,
  occurred_at  bigint NOT NULL,
  units        double precision NOT NULL,
  overage      double precision NOT NULL DEFAULT 0,
  tokens       double precision NOT NULL DEFAULT 0,
  category     text,
  status       integer NOT NULL,
  duration_ms  double precision NOT NULL,
  ip           text,
  method       text NOT NULL,
  path         text NOT NULL,
  bypassed     boolean NOT NULL DEFAULT false,
  provider     text
);
-- A key's request log, newest first (time, then id).
CREATE INDEX usage_events_key_idx ON usage_events (key_id, occurred_at DESC, id DESC);
-- An account's totals for a period, answered from the index alone.
CREATE INDEX usage_events_account_idx ON usage_events (account_id, occurred_at)
  INCLUDE (category, units);
-- Retention: prune(before).
CREATE INDEX usage_events_time_idx ON usage_events (occurred_at);

CREATE TABLE provider_keys (
  account_id   text COLLATE "C" NOT NULL,
  provider     text COLLATE "C" NOT NULL,
  sealed       text NOT NULL,
  last4        text NOT NULL,
  created_at   bigint NOT NULL,
  verified_at  bigint,
  PRIMARY KEY (account_id, provider)
);

-- Admission counters: one row per limit, its algorithm's state as JSON. kind is null only on a
-- row created by an admission still in flight. expires_at: when the state is equivalent to no
-- state at all (null: never, e.g. an all-time quota or a period's settled credits).
CREATE TABLE counters (
  key         text COLLATE "C" PRIMARY KEY,
  kind        text CHECK (kind IN ('window', 'gcra', 'hold')),
  state       jsonb,
  expires_at  bigint
) WITH (fillfactor = 50);
`
