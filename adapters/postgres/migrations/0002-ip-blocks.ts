/**
 * @module postgres/migrations/0002-ip-blocks
 *
 * The failed-auth guard's shared state: one row per address that kept failing (the core
 * counts in process first, so only those get here), with its window's failures and its
 * block. `expires_at` is when the row means nothing any more (window over, block over), for
 * the prune.
 */

/** The SQL of migration 2. */
export const IP_BLOCKS_SQL = `
CREATE TABLE ip_blocks (
  ip             text COLLATE "C" PRIMARY KEY,
  window_start   bigint NOT NULL,
  failures       integer NOT NULL,
  blocked_until  bigint,
  expires_at     bigint NOT NULL
);
CREATE INDEX ip_blocks_expires_idx ON ip_blocks (expires_at);
`
