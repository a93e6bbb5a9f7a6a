/**
 * @module test/storage/postgres-pgbouncer
 *
 * `postgresStorage({ pool })` whose pool goes through PgBouncer (1.18, as Debian ships it), in
 * transaction mode as Supabase, Neon or Heroku run their poolers, and in session mode; a
 * private PgBouncer (`support/pgbouncer`) in front of the shared PostgreSQL, four server
 * connections per mode.
 * - A key revoked on one instance: under transaction pooling the LISTEN's server connection
 *   goes back to the pooler and no notification reaches the other instance, which kept
 *   serving the revoked key for `cache.ttlMs`. Its feed now finds that out (its probe does not
 *   come back), says so once naming `listenPool`, and trusts its cache for
 *   `cache.feedDownTtlMs` only; with `listenPool` (direct) or session pooling the key is
 *   refused at once.
 * - Prepared statements (on by default) through transaction pooling: a statement prepared on
 *   one server connection is missing on the next ("does not exist") or there already ("already
 *   exists"); settles then failed and waited in the retry queue, and account reads threw.
 *   The storage now falls back to unnamed statements and says so once, naming
 *   `preparedStatements: false`. Exact admission, credits, usage and holds are checked
 *   through the pooler with and without the option.
 * - Two instances migrating at once through transaction pooling: each migration applied once
 *   (the advisory lock is transaction-scoped).
 */

import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth, type Tollbooth, type TollboothRequest } from '../../src/index.js'
import { privateServer } from '../support/fault.js'
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.js'
import { freshSchema, newPool, schemaName, skipPostgres } from '../support/postgres.js'

const SECRET = 'pgbouncer-test-secret-0123456789abcdef'
const req = (key: string): TollboothRequest => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'GET',
  path: '/v1/x',
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const text = (e: unknown): string =>
  e instanceof Error ? `${e.message} ${e.cause ? text(e.cause) : ''}` : String(e)

const bouncer: PgBouncer | null = skipPostgres ? null : await privateServer(() => startPgBouncer(4))

describe.skipIf(!bouncer)('postgresStorage through PgBouncer', () => {
  const b = bouncer!
  const direct = newPool(4)
  const pools: pg.Pool[] = []
  let schema = ''
  let drop = async () => {}

  const through = (mode: 'transaction' | 'session', max = 4) => {
    const p = new pg.Pool({ connectionString: b.url(mode), max, connectionTimeoutMillis: 5000 })
    p.on('error', () => {})
    pools.push(p)
    return p
  }

  beforeAll(async () => {
    ;({ schema, drop } = await freshSchema(direct))
  })
  afterAll(async () => {
    for (const p of pools) await p.end()
    await drop()
    await direct.end()
    await b.stop()
  })

  describe('a key revoked on instance A, cached on instance B', () => {
    const cases = [
      { name: 'transaction pooling', mode: 'transaction', listen: false, deaf: true },
      {
        name: 'transaction pooling, listenPool direct',
        mode: 'transaction',
        listen: true,
        deaf: false,
      },
      { name: 'session pooling', mode: 'session', listen: false, deaf: false },
    ] as const
    it.each(cases)('is refused on B: $name', async (c) => {
      const errors: unknown[][] = [[], []]
      const make = (i: number): Tollbooth => {
        const onError = (e: unknown) => errors[i]!.push(e)
        return createTollbooth({
          secret: SECRET,
          cache: { ttlMs: 600_000, negativeTtlMs: 600_000, feedDownTtlMs: 1000 },
          onError,
          storage: postgresStorage({
            pool: through(c.mode),
            schema,
            onError,
            // As the README says for PgBouncer before 1.21: only the feed's errors are seen.
            preparedStatements: false,
            ...(c.listen ? { listenPool: direct } : {}),
          }),
        })
      }
      const [one, two] = [make(0), make(1)]
      try {
        const { key, record } = await one.keys.create({ accountId: 'acct_feed', name: 'k' })
        expect((await two.authenticate(req(key))).allowed).toBe(true)
        await one.keys.revoke(record.id)
        const t = performance.now()
        let servedMs = -1
        while (performance.now() - t < 3000) {
          if (!(await two.authenticate(req(key))).allowed) {
            servedMs = performance.now() - t
            break
          }
          await sleep(20)
        }
        // Before: still served 3 s after the revocation (for cache.ttlMs, here ten minutes).
        expect(servedMs, 'the revoked key was still served on B after 3 s').toBeGreaterThanOrEqual(
          0,
        )
        // Refused at once when the feed hears; else once its cached entry is feedDownTtlMs old.
        console.log(`${c.name}: the revoked key was served on B for ${Math.round(servedMs)} ms`)
        expect(servedMs).toBeLessThan(c.deaf ? 2000 : 500)
        expect(await two.authenticate(req(key))).toMatchObject({ status: 401 })
        await sleep(c.deaf ? 1500 : 0)
        for (const list of errors) {
          const deaf = list.filter((e) => text(e).includes('listenPool'))
          // Said once per instance, though its feed kept trying.
          expect(deaf.length).toBe(c.deaf ? 1 : 0)
          expect(list.length).toBe(deaf.length)
        }
      } finally {
        await Promise.all([one.close(), two.close()])
      }
    })
  })

  describe('exact admission, credits, usage and holds', () => {
    const cases = [
      { name: 'transaction pooling, prepared statements (default)', mode: 'transaction' },
      { name: 'transaction pooling, preparedStatements: false', mode: 'transaction', off: true },
      { name: 'session pooling, prepared statements (default)', mode: 'session' },
    ] as const
    it.each(cases)('$name', async (c) => {
      const s = schemaName()
      await migrate({ pool: direct, schema: s })
      const errors: unknown[] = []
      const onError = (e: unknown) => errors.push(e)
      const storages = [0, 1].map(() =>
        postgresStorage({
          pool: through(c.mode, 6),
          schema: s,
          onError,
          // The feed's own connection, as the README says for transaction pooling.
          ...(c.mode === 'transaction' ? { listenPool: direct } : {}),
          ...('off' in c ? { preparedStatements: false } : {}),
        }),
      )
      const tbs = storages.map((storage) =>
        createTollbooth({
          secret: SECRET,
          storage,
          onError,
          plans: { p: { monthlyCredits: 10_000 } },
          defaultTier: 'p',
        }),
      )
      try {
        const keys: { key: string; id: string }[] = []
        for (let i = 0; i < 12; i++) {
          const { key, record } = await tbs[0]!.keys.create({
            accountId: `acct_${i % 3}`,
            limits: { quotas: { total: 20 } },
          })
          keys.push({ key, id: record.id })
        }
        const admitted = new Map<string, number>()
        const refused: string[] = []
        await Promise.all(
          Array.from({ length: 480 }, async (_, i) => {
            const k = keys[i % keys.length]!
            const tb = tbs[i % 2]!
            const d = await tb.authenticate(req(k.key), tb.route({ cost: 1 }))
            if (!d.allowed) {
              refused.push(d.code)
              return
            }
            admitted.set(k.id, (admitted.get(k.id) ?? 0) + 1)
            await tb.settle(d, { status: 200 })
          }),
        )
        for (const tb of tbs) await tb.flush()
        // Every key's quota exactly: 20 of its 40 requests, the rest refused for the quota.
        expect([...admitted.values()]).toEqual(Array(12).fill(20))
        expect(refused).toEqual(Array(240).fill('quota_exceeded'))
        for (const tb of tbs) expect(tb.stats().settleRetries).toMatchObject({ pending: 0 })
        let units = 0
        for (const k of keys) {
          const page = await storages[0]!.usage.logs(k.id, { limit: 100 })
          units += page.data.reduce((n, e) => n + e.units, 0)
        }
        let credits = 0
        for (const a of [0, 1, 2]) credits += (await tbs[0]!.accounts.get(`acct_${a}`)).credits.used
        expect(units).toBe(240)
        expect(credits).toBe(240)
        const held = await direct.query<{ state: { holds?: Record<string, unknown> } }>(
          `SELECT state FROM "${s}".counters WHERE kind = 'hold'`,
        )
        expect(held.rows.flatMap((r) => Object.keys(r.state?.holds ?? {}))).toEqual([])
        // Prepared statements through transaction pooling: said once, naming the option.
        const said = errors.map(text)
        if (c.mode === 'transaction' && !('off' in c)) {
          expect(said.length).toBeGreaterThanOrEqual(1)
          expect(said.length).toBeLessThanOrEqual(2)
          for (const m of said) expect(m).toContain('preparedStatements: false')
        } else expect(said).toEqual([])
      } finally {
        for (const tb of tbs) await tb.close()
        await direct.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`)
      }
    })
  })

  it('two instances migrating at once through transaction pooling apply each migration once', async () => {
    const s = schemaName()
    try {
      const [a, bb] = await Promise.all([
        migrate({ pool: through('transaction'), schema: s }),
        migrate({ pool: through('transaction'), schema: s }),
      ])
      const applied = [...a.applied, ...bb.applied]
      const rows = await direct.query<{ name: string }>(
        `SELECT name FROM "${s}".migrations ORDER BY id`,
      )
      expect(applied.sort()).toEqual(rows.rows.map((r) => r.name).sort())
      expect(Math.min(a.applied.length, bb.applied.length)).toBe(0)
    } finally {
      await direct.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`)
    }
  })
})
