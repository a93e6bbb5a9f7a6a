/**
 * @module test/money/topup-idempotency
 *
 * `tb.accounts.addCredits(id, amount, { idempotencyKey })` credits once per key, on every
 * store alike: a caller that retries a top-up whose outcome it did not learn (a
 * `StorageUnavailableError` after `storageTimeoutMs`, a lost answer) with the same key is not
 * credited twice. Before, every call added: two calls of 10 left a balance of 20.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import {
  ConfigError,
  createTollbooth,
  InvalidRequestError,
  memoryStorage,
  type Tollbooth,
} from '../../src/internal.js'
import { SECRET } from '../metering/helpers.js'
import { Database } from '../storage/sqlite-driver.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { fourStores, withoutTopUp } from '../support/stores.js'

const stores = await fourStores('money-topup-idempotency')

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`an idempotent top-up on ${name}`, () => {
    async function withTb(run: (tb: ReturnType<typeof createTollbooth>) => Promise<void>) {
      const tb = createTollbooth({ secret: SECRET, storage: await make!() })
      try {
        await run(tb)
      } finally {
        await tb.close()
      }
    }

    test('the same key twice credits once; the replay answers the account as it is', async () => {
      await withTb(async (tb) => {
        const first = await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-1' })
        expect(first.balance).toBe(10)
        const again = await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-1' })
        expect(again.balance).toBe(10)
        expect((await tb.accounts.get('acct_1')).balance).toBe(10)
        // Another key credits again; no key, as before, every time.
        await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-2' })
        await tb.accounts.addCredits('acct_1', 1)
        expect((await tb.accounts.get('acct_1')).balance).toBe(21)
      })
    })

    test('concurrent calls with one key credit once; each is answered the account', async () => {
      await withTb(async (tb) => {
        const calls = Array.from({ length: 4 }, () =>
          tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-c' }),
        )
        // No "in progress": the store's step that credits decides, and the others replay it.
        const out = await Promise.all(calls)
        expect(out.map((a) => a.balance)).toEqual([10, 10, 10, 10])
        expect((await tb.accounts.get('acct_1')).balance).toBe(10)
        const again = await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-c' })
        expect(again.balance).toBe(10)
      })
    })

    test('the same key with another amount is refused 400 naming it, crediting nothing', async () => {
      await withTb(async (tb) => {
        await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-x' })
        const err = await tb.accounts
          .addCredits('acct_1', 11, { idempotencyKey: 'order-x' })
          .catch((e: unknown) => e)
        expect(err).toBeInstanceOf(InvalidRequestError)
        expect((err as InvalidRequestError).status).toBe(400)
        expect((err as InvalidRequestError).issues[0]?.path).toBe('idempotencyKey')
        expect((await tb.accounts.get('acct_1')).balance).toBe(10)
      })
    })

    test("a key is its account's: the same key on another account is credited once on each", async () => {
      // An application that forwards its customers' Idempotency-Key: one tenant's key neither
      // refuses nor reveals another's, as Stripe scopes its keys to the account.
      await withTb(async (tb) => {
        const balances: number[] = []
        for (const [id, amount] of [
          ['acct_1', 10],
          ['acct_2', 7],
          ['acct_1', 10],
          ['acct_2', 7],
        ] as const)
          balances.push(
            (await tb.accounts.addCredits(id, amount, { idempotencyKey: 'order-x' })).balance,
          )
        expect(balances).toEqual([10, 7, 10, 7])
        expect((await tb.accounts.get('acct_1')).balance).toBe(10)
        expect((await tb.accounts.get('acct_2')).balance).toBe(7)
      })
    })
  })

describe('idempotencyKey is validated as the Idempotency-Key header is', () => {
  const BAD: Array<[string, unknown]> = [
    ['256 characters', 'k'.repeat(256)],
    ['empty', ''],
    ['a space inside', 'order 42'],
    ['a character outside ASCII', 'commande-\u00e9'],
    ['a number', 42],
  ]
  test.each(BAD)('refuses a key of %s naming idempotencyKey, crediting nothing', async (_, v) => {
    const tb = createTollbooth({ secret: SECRET })
    try {
      const err = await tb.accounts
        .addCredits('acct_1', 10, { idempotencyKey: v as string })
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect((err as InvalidRequestError).message).toContain('idempotencyKey')
      expect((await tb.accounts.get('acct_1')).balance).toBe(0)
      // 255 printable characters are kept.
      const ok = `~${'K'.repeat(253)}!`
      await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: ok })
      await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: ok })
      expect((await tb.accounts.get('acct_1')).balance).toBe(10)
    } finally {
      await tb.close()
    }
  })
})

test('a storage whose accounts store has no topUp: a keyed top-up is a ConfigError naming it, crediting nothing', async () => {
  const tb = createTollbooth({ secret: SECRET, storage: withoutTopUp(memoryStorage()) })
  try {
    await tb.accounts.addCredits('acct_1', 1)
    const err = await tb.accounts
      .addCredits('acct_1', 10, { idempotencyKey: 'order-1' })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain('AccountStore.topUp')
    expect((await tb.accounts.get('acct_1')).balance).toBe(1)
  } finally {
    await tb.close()
  }
})

describe.skipIf(skipPostgres)('keyed top-ups on PostgreSQL', () => {
  const pool = newPool(2)
  afterAll(() => pool.end())

  /** Runs `run` with an instance on a schema of its own, dropped after. */
  async function withSchema(run: (tb: Tollbooth, schema: string) => Promise<void>) {
    const fresh = await freshSchema(pool)
    const tb = createTollbooth({
      secret: SECRET,
      storage: postgresStorage({ pool, schema: fresh.schema }),
    })
    try {
      await run(tb, fresh.schema)
    } finally {
      await tb.close()
      await fresh.drop()
    }
  }

  test('an account deleted takes its keys with it: made again under its id, the key credits it', async () => {
    await withSchema(async (tb, schema) => {
      await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-d' })
      const n = async () =>
        (await pool.query(`SELECT count(*)::int AS n FROM "${schema}".topups`)).rows[0].n
      expect(await n()).toBe(1)
      // An operator deletes the account's row (tollbooth never does).
      await pool.query(`DELETE FROM "${schema}".accounts WHERE id = 'acct_1'`)
      expect(await n()).toBe(0)
      const again = await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-d' })
      expect(again.balance).toBe(10)
    })
  })

  test('a top-up that failed for sure frees its key: its retry is credited, once', async () => {
    await withSchema(async (tb, schema) => {
      await tb.accounts.addCredits('acct_1', 1)
      // The accounts table gone, the counters (where the key is claimed) still there: the
      // top-up fails before its balance is written.
      await pool.query(`ALTER TABLE "${schema}".accounts RENAME TO accounts_away`)
      const err = await tb.accounts
        .addCredits('acct_1', 10, { idempotencyKey: 'order-f' })
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Error)
      await pool.query(`ALTER TABLE "${schema}".accounts_away RENAME TO accounts`)
      expect(
        (await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-f' })).balance,
      ).toBe(11)
      expect(
        (await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-f' })).balance,
      ).toBe(11)
    })
  })
})

describe('keyed top-ups on SQLite', () => {
  test('an account deleted takes its keys with it: made again under its id, the key credits it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollbooth-topup-sqlite-'))
    const database = new Database(join(dir, 'tb.db'))
    const tb = createTollbooth({ secret: SECRET, storage: sqliteStorage({ database }) })
    try {
      await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-d' })
      const n = () =>
        (database.prepare('SELECT count(*) AS n FROM topups').get() as { n: number }).n
      expect(n()).toBe(1)
      // An operator deletes the account's row (tollbooth never does).
      database.prepare("DELETE FROM accounts WHERE id = 'acct_1'").run()
      const left = n()
      const again = await tb.accounts.addCredits('acct_1', 10, { idempotencyKey: 'order-d' })
      console.log(
        `SQLite: top-up records left by the account's delete ${left}; made again, credited to ${again.balance}`,
      )
      expect(left).toBe(0)
      expect(again.balance).toBe(10)
    } finally {
      await tb.close()
      database.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
