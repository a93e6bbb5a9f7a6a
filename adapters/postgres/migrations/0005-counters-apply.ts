/**
 * @module postgres/migrations/0005-counters-apply
 *
 * `counters_apply(batch, lock_ms, durable)`: a counter transaction in one statement, for an
 * instance that already knows the values of the batch's rows (the ones its own last
 * transactions read or wrote; see `postgres/counters`). It locks every row of the batch in byte
 * order of the key (creating the missing ones, as the two-round-trip transaction does, so the
 * two kinds of transaction never deadlock each other), checks that each row still holds the
 * value the instance computed on, and only then writes the new values. A row that changed
 * raises SQLSTATE `TB409` (naming the first such key) and nothing is written: the instance then runs the transaction that
 * reads under lock first.
 *
 * `batch` is a JSON array with one object per key:
 * - `k`: the key; `o`, `oe`: the state and `expires_at` it was computed on (`o` absent: no
 *   state, the row absent or holding none); `a`: true when a row with no state will do too
 *   (`o` had expired for every step: it may have been pruned since);
 * - `w`: true when the batch writes the key, then `kind`, `s`, `e`: its new kind, state and
 *   `expires_at` (`s` null: the row is deleted). A row with no state that the batch does not
 *   write is deleted too (made only to be locked).
 *
 * `lock_ms` bounds the lock waits (`lock_timeout`); with `durable` false the commit does not
 * wait for its WAL flush (`synchronous_commit`), both for this statement's transaction only.
 * The function's statements are planned once per connection (PL/pgSQL keeps their plans), so
 * the plan must not depend on the table's size when it was made: rows are found by key through
 * the primary key's index only (a plan made while the table was small would scan it whole,
 * and keep doing so as it grows). `search_path` is the schema's, fixed when the migration ran.
 */

/** The SQL of migration 5. */
export const COUNTERS_APPLY_SQL = `
CREATE FUNCTION counters_apply(batch jsonb, lock_ms integer, durable boolean) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
  changed text;
BEGIN
  PERFORM set_config('lock_timeout', lock_ms || 'ms', true);
  IF NOT durable THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  -- Locks without writing a new row version (a DO UPDATE whose condition is false still locks).
  INSERT INTO counters AS c (key, expires_at)
    SELECT v.k, 0 FROM jsonb_to_recordset(batch) AS v(k text) ORDER BY v.k COLLATE "C"
    ON CONFLICT (key) DO UPDATE SET key = excluded.key WHERE false;
  SELECT v.k INTO changed FROM jsonb_to_recordset(batch) AS v(k text, o jsonb, oe bigint, a boolean)
    JOIN counters AS c ON c.key = v.k
    WHERE CASE WHEN c.state IS NULL THEN v.o IS NOT NULL AND v.a IS NOT TRUE
               ELSE c.state IS DISTINCT FROM v.o OR c.expires_at IS DISTINCT FROM v.oe END
    LIMIT 1;
  IF changed IS NOT NULL THEN
    RAISE EXCEPTION 'tollbooth: counter % changed since this instance read it', changed
      USING ERRCODE = 'TB409';
  END IF;
  UPDATE counters AS c SET kind = v.kind, state = v.s, expires_at = v.e
    FROM jsonb_to_recordset(batch) AS v(k text, w boolean, kind text, s jsonb, e bigint)
    WHERE c.key = v.k AND v.w AND v.s IS NOT NULL;
  DELETE FROM counters AS c
    USING jsonb_to_recordset(batch) AS v(k text, w boolean, s jsonb)
    WHERE c.key = v.k AND v.s IS NULL AND (v.w OR c.state IS NULL);
END
$fn$;
`
