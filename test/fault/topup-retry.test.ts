/**
 * @module test/fault/topup-retry
 *
 * A top-up retried after its outcome was unknown, as the README tells callers to: the store
 * frozen (SIGSTOP) during `tb.accounts.addCredits(id, 10, { idempotencyKey })`, which answers
 * `StorageUnavailableError` after `storageTimeoutMs` ("its outcome is unknown") and goes on;
 * the caller retries with the same key until it gets an answer. Once thawed the first call
 * lands, and the retries are answered as a replay (the store's step that credits refuses a
 * second credit): the account is credited 10, once. Without a key the same retry added 10 twice. On Redis
 * (ioredis's defaults) and PostgreSQL, each on a private server.
 */

import { describe, expect, it, type TestContext } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, isTollboothError, type Storage } from '../../src/index.js'
import { type Freezable, privateStores } from '../support/fault.js'

const SECRET = 'topup-retry-secret-topup-retry-secret-0001'
const TIMEOUT_MS = 300
const ACCOUNT = 'acct_topup'

const servers = privateStores()

/** A store's private server (frozen by the test) and a storage on it. */
type Make = (ctx: TestContext) => Promise<{ server: Freezable; storage: Storage }>

const stores: Array<[string, Make]> = [
  [
    'Redis (ioredis defaults)',
    async (ctx) => {
      const server = await servers.redis(ctx)
      const keyPrefix = `tr${Math.random().toString(36).slice(2, 8)}:`
      return { server, storage: redisStorage({ client: servers.client(server), keyPrefix }) }
    },
  ],
  [
    'PostgreSQL',
    async (ctx) => {
      const server = await servers.postgres(ctx)
      const pool = servers.pool(server)
      const schema = `tb_topup_${Math.random().toString(36).slice(2, 8)}`
      await migrate({ pool, schema })
      return { server, storage: postgresStorage({ pool, schema }) }
    },
  ],
]

describe.each(stores)('a top-up retried with its key, the store frozen: %s', (name, make) => {
  it('is credited once', async (ctx) => {
    const { server, storage } = await make(ctx)
    const tb = createTollbooth({
      secret: SECRET,
      storage,
      storageTimeoutMs: TIMEOUT_MS,
      onError: () => {},
    })
    try {
      await tb.accounts.addCredits(ACCOUNT, 5)
      const topUp = () => tb.accounts.addCredits(ACCOUNT, 10, { idempotencyKey: 'pay-77' })
      server.freeze(true)
      let frozen = true
      try {
        const first = await topUp().catch((e: unknown) => e)
        expect(isTollboothError(first) && first.code).toBe('storage_unavailable')
        expect((first as Error).message).toMatch(/outcome is unknown/)
        const retry = await topUp().catch((e: unknown) => e)
        expect(
          isTollboothError(retry) && retry.code,
          `the retry while frozen: ${retry instanceof Error ? retry.message : JSON.stringify(retry)}`,
        ).toBe('storage_unavailable')
        server.freeze(false)
        frozen = false
      } finally {
        if (frozen) server.freeze(false)
      }
      // The caller retries until it gets an answer: the account as it is.
      const seen: string[] = []
      let balance: number | undefined
      for (let i = 0; i < 100 && balance === undefined; i++) {
        try {
          balance = (await topUp()).balance
        } catch (err) {
          if (!isTollboothError(err)) throw err
          seen.push(err.code)
          expect(err.code).toBe('storage_unavailable')
          await new Promise((r) => setTimeout(r, 50))
        }
      }
      console.log(`${name}: retries before the answer: ${seen.join(', ') || 'none'}`)
      expect(balance).toBe(15)
      expect((await tb.accounts.get(ACCOUNT)).balance).toBe(15)
    } finally {
      await tb.close().catch(() => {})
    }
  }, 60_000)
})
