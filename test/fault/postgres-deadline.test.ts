/**
 * @module test/fault/postgres-deadline
 *
 * A PostgreSQL admission that the caller was answered 503 for commits nothing later. The core
 * answers 503 after `storageTimeoutMs` (1,000 ms here) while the store's call goes on; with
 * `statementTimeoutMs` (700 ms) the counter transaction is not run when its pooled connection
 * came after that deadline, and on the server no statement of it waits past it (a row lock held
 * by someone else), and statements the server only gets to after it (a frozen server) are
 * rolled back instead of committed. Each case, on a private server: a key with a `total` quota
 * of 2 has used 1; a request times out; once the obstacle is gone the key must still have
 * exactly 1 left (the timed-out request used nothing), where a late commit would have used it up.
 * The core also queues a cancel of the timed-out admission; on PostgreSQL it locks the same rows,
 * so in the lock case it is what waits (each attempt under the same deadline) until the lock goes,
 * and then it completes and nothing waits any more.
 *
 * Without `statementTimeoutMs`, the store's deadline follows the core's `storageTimeoutMs`
 * (750 ms for 1,000): before, it was 1,750 whatever the core's timeout, and an admission
 * waiting on a row lock held 1,300 ms committed 300 ms after its request was answered 503
 * (counted until its cancel undid it). A `statementTimeoutMs` given not below
 * `storageTimeoutMs` is a ConfigError (test/package/options).
 */

import type pg from 'pg'
import { describe, expect, it, type TestContext } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth, type Tollbooth } from '../../src/index.js'
import { request } from '../support/core.js'
import { privateStores } from '../support/fault.js'

const SECRET = 'postgres-deadline-secret-postgres-deadline'

const servers = privateStores()

describe('PostgreSQL admissions past the caller deadline', () => {
  const schema = 'tb_deadline'
  /** The pool the schema was migrated with (2 connections), once for the file. */
  let admin: Promise<pg.Pool> | undefined

  /**
   * The private server and its admin pool; a tollbooth on its own pool of `max` (one
   * connection of which its change feed holds), and a key (cached) that has used 1 of a total
   * of 2.
   */
  const setup = async (
    ctx: TestContext,
    max: number,
    // null: postgresStorage's default.
    statementTimeoutMs: number | null = 700,
  ) => {
    const server = await servers.postgres(ctx)
    const newPool = (n: number) => servers.pool(server, { max: n, connectionTimeoutMillis: 5000 })
    admin ??= (async (migrated) => {
      await migrate({ pool: migrated, schema })
      return migrated
    })(newPool(2))
    const adminPool = await admin
    const pool = newPool(max)
    const storage = postgresStorage(
      statementTimeoutMs === null ? { pool, schema } : { pool, schema, statementTimeoutMs },
    )
    const tb = createTollbooth({
      secret: SECRET,
      storage,
      storageTimeoutMs: 1000,
      failedAuth: false,
      usage: { flushIntervalMs: 60_000, maxBatch: 10_000, retentionMs: 86_400_000 },
    })
    const { key } = await tb.keys.create({
      accountId: `acct_${Math.random().toString(36).slice(2, 8)}`,
      limits: { quotas: { total: 2 } },
    })
    const first = await tb.authenticate(request(key))
    expect(first.allowed).toBe(true)
    const close = async () => {
      await tb.close()
      await storage.close()
    }
    return { server, admin: adminPool, pool, storage, tb, key, close }
  }

  /** Waits until only the change feed's connection is out of `pool` (abandoned calls are done). */
  const settled = async (pool: pg.Pool) => {
    while (pool.waitingCount > 0 || pool.totalCount - pool.idleCount > 1)
      await new Promise((r) => setTimeout(r, 10))
  }

  /** After the timed-out request: exactly one more is admitted, then the quota is spent. */
  const oneLeft = async (tb: Tollbooth, key: string) => {
    expect((await tb.authenticate(request(key))).allowed).toBe(true)
    expect(await tb.authenticate(request(key))).toMatchObject({ allowed: false, status: 429 })
  }

  it('does not run an admission whose pooled connection came after the deadline', async (ctx) => {
    const { pool, tb, key, close } = await setup(ctx, 2)
    try {
      const busy = await pool.connect()
      const t = Date.now()
      const pending = tb.authenticate(request(key))
      setTimeout(() => busy.release(), 1500)
      expect(await pending).toMatchObject({ status: 503, code: 'storage_unavailable' })
      expect(Date.now() - t).toBeLessThan(1500)
      // The abandoned call has had the connection and given it back (or not taken it).
      await settled(pool)
      await oneLeft(tb, key)
    } finally {
      await close()
    }
  })

  it('gives up a lock wait on the server at the deadline, committing nothing', async (ctx) => {
    const { admin, tb, key, close } = await setup(ctx, 4)
    const locker = await admin.connect()
    try {
      await locker.query('BEGIN')
      const locked = await locker.query(`SELECT key FROM "${schema}".counters FOR UPDATE`)
      expect(locked.rowCount).toBeGreaterThan(0)
      const t = Date.now()
      expect(await tb.authenticate(request(key))).toMatchObject({
        status: 503,
        code: 'storage_unavailable',
      })
      expect(Date.now() - t).toBeLessThan(1500)
      await new Promise((r) => setTimeout(r, 300))
      // The server cancelled the admission's wait at its deadline (lock_timeout). What may wait
      // on the lock now is the cancel the core queued for it (a failed admission's outcome is
      // not known in general): it locks the same rows, each attempt under the same deadline,
      // and is retried until the lock is free. Its statements began after the admission's
      // deadline (t + 700 ms at the earliest); the admission's began right after t.
      const waiting = (since: number) =>
        admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%' AND pid <> $2
             AND query_start < to_timestamp($3::float8 / 1000)`,
          [schema, (locker as unknown as { processID: number }).processID, since],
        )
      expect((await waiting(t + 500)).rows[0]!.n).toBe(0)
      // The cancel is queued behind the lock, or already done: since a key's first use takes
      // a counter of the account (keys/first-use), it has been seen to mark the admission
      // cancelled without waiting on the quota's row (the admission never wrote it). Either
      // way, what follows must hold: nothing counted, nothing held, nothing left waiting.
      expect(tb.stats().settleRetries.pending).toBeLessThanOrEqual(1)
      await locker.query('COMMIT')
      // The cancel goes through once the lock is free, and then nothing waits at all.
      await tb.flush()
      expect(tb.stats().settleRetries).toMatchObject({ pending: 0, dropped: 0 })
      expect((await waiting(Date.now() + 60_000)).rows[0]!.n).toBe(0)
      const holds = await admin.query<{ state: { holds: unknown[] } }>(
        `SELECT state FROM "${schema}".counters WHERE kind = 'hold'`,
      )
      for (const r of holds.rows) expect(r.state.holds).toEqual([])
      await oneLeft(tb, key)
    } finally {
      locker.release()
      await close()
    }
  })

  it('rolls back an admission the server only got to after the deadline (frozen server)', async (ctx) => {
    const { server, pool, tb, key, close } = await setup(ctx, 4)
    try {
      server.freeze(true)
      const t = Date.now()
      let decision: Awaited<ReturnType<Tollbooth['authenticate']>>
      try {
        decision = await tb.authenticate(request(key))
      } finally {
        setTimeout(() => server.freeze(false), 500)
      }
      expect(decision).toMatchObject({ status: 503, code: 'storage_unavailable' })
      expect(Date.now() - t).toBeLessThan(1500)
      // Thawed, the server runs the statements it had been sent; the call sees its deadline
      // has passed and rolls back instead of committing.
      await settled(pool)
      await oneLeft(tb, key)
    } finally {
      await close()
    }
  })

  it('commits no admission after its 503 with the default statementTimeoutMs and a storageTimeoutMs below it', async (ctx) => {
    // storageTimeoutMs 1,000 and postgresStorage's default statementTimeoutMs (1,750): the
    // rows locked for 1,300 ms, the requests are answered 503 at 1,000 while their admissions
    // wait on the lock; a trigger notes each admission's record written (`{ mark: 'c' }`),
    // rolled back with its transaction unless it commits.
    const { admin, tb, key, close } = await setup(ctx, 4, null)
    await admin.query(`
      CREATE TABLE IF NOT EXISTS "${schema}".admitted (key text, at timestamptz);
      CREATE OR REPLACE FUNCTION "${schema}".note_admitted() RETURNS trigger AS $$
      BEGIN
        IF NEW.kind IS NULL AND NEW.state->>'mark' = 'c' THEN
          INSERT INTO "${schema}".admitted VALUES (NEW.key, clock_timestamp());
        END IF;
        RETURN NEW;
      END $$ LANGUAGE plpgsql;
      DROP TRIGGER IF EXISTS note_admitted ON "${schema}".counters;
      CREATE TRIGGER note_admitted AFTER INSERT OR UPDATE ON "${schema}".counters
        FOR EACH ROW EXECUTE FUNCTION "${schema}".note_admitted();`)
    const locker = await admin.connect()
    try {
      await locker.query('BEGIN')
      await locker.query(`SELECT key FROM "${schema}".counters FOR UPDATE`)
      const t = Date.now()
      setTimeout(() => void locker.query('COMMIT'), 1300)
      const answered = await Promise.all(
        Array.from({ length: 5 }, () => tb.authenticate(request(key))),
      )
      const refusedAt = Date.now()
      for (const d of answered) expect(d).toMatchObject({ status: 503 })
      await new Promise((r) => setTimeout(r, 1000))
      await tb.flush()
      const late = await admin.query<{ n: number }>(
        `SELECT count(DISTINCT key)::int AS n FROM "${schema}".admitted WHERE at > to_timestamp($1::float8 / 1000)`,
        [refusedAt],
      )
      console.log(
        `PostgreSQL default statementTimeoutMs, storageTimeoutMs 1,000: 5 answered 503 in ${refusedAt - t} ms, ${late.rows[0]!.n} admission(s) committed after; retries ${JSON.stringify(tb.stats().settleRetries)}`,
      )
      // Before: 5 committed at 1,300 ms, each counted until its cancel undid it.
      expect(late.rows[0]!.n).toBe(0)
      await oneLeft(tb, key)
    } finally {
      locker.release()
      await admin.query(`DROP TRIGGER IF EXISTS note_admitted ON "${schema}".counters`)
      await close()
    }
  })
})
