/**
 * @module test/fault/close-frozen
 *
 * `tb.close()` while the store is frozen (SIGSTOP: connections stay open, nothing answers):
 * it must end within its bound (the 10 s it waits for the store, plus a storage timeout), not
 * hang for as long as the freeze lasts, and the usage events it could not confirm written must
 * not be lost silently (close rejects, naming how many).
 *
 * On PostgreSQL with the README's pool (a connection timeout, no query timeout), and on Redis
 * with a client that has no command timeout (which the storage timeout covers on the request
 * path, `usage-timeout.test.ts`). Each on a private server of its own.
 */

import { describe, expect, it, type TestContext } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage, type Tollbooth } from '../../src/index.js'
import { request } from '../support/core.js'
import { privateStores, settledWithin, whileFrozen } from '../support/fault.js'

const SECRET = 'close-frozen-secret-close-frozen-secret-42'
const TIMEOUT_MS = 500
/** What close() waits for the store at most (`DRAIN_MS` in `src/tollbooth.ts`), and slack. */
const BOUND_MS = 10_000 + TIMEOUT_MS + 1_500

const servers = privateStores()

interface Store {
  storage: Storage
  /** SIGSTOP (true) or SIGCONT (false) the store's server. */
  freeze(frozen: boolean): void
  /** The usage events stored for `keyId`, read on a fresh connection once thawed. */
  logged(keyId: string): Promise<number>
  dispose(): Promise<void>
}

const stores: Array<[string, (ctx: TestContext) => Promise<Store>]> = [
  [
    'PostgreSQL',
    async (ctx) => {
      const server = await servers.postgres(ctx)
      const pool = servers.pool(server, { max: 4 })
      const schema = `tb_close_${Math.random().toString(36).slice(2, 8)}`
      await migrate({ pool, schema })
      const storage = postgresStorage({ pool, schema })
      return {
        storage,
        freeze: (f) => server.freeze(f),
        logged: async (keyId) => (await storage.usage.logs(keyId, { limit: 100 })).data.length,
        dispose: () => storage.close?.() ?? Promise.resolve(),
      }
    },
  ],
  [
    'Redis (a client with no command timeout)',
    async (ctx) => {
      const server = await servers.redis(ctx)
      const keyPrefix = `cf${Math.random().toString(36).slice(2, 8)}:`
      const storage = redisStorage({ client: servers.client(server), keyPrefix })
      return {
        storage,
        freeze: (f) => server.freeze(f),
        logged: async (keyId) => {
          const usage = redisStorage({ client: servers.client(server), keyPrefix }).usage
          return (await usage.logs(keyId, { limit: 100 })).data.length
        },
        dispose: () => storage.close?.() ?? Promise.resolve(),
      }
    },
  ],
]

/**
 * A tollbooth on `store` with three usage events of `accountId` queued in its out-box (a flush
 * every 10 minutes); then, with the store frozen, `tb[call]()` must end within `BOUND_MS` and
 * reject, naming the three events. `thawed` goes on with the store back (the error given); the
 * store is disposed after.
 */
async function expectFrozenRejects(
  store: Store,
  accountId: string,
  call: 'close' | 'flush',
  thawed: (tb: Tollbooth, keyId: string, error: Error) => Promise<void>,
): Promise<void> {
  const tb = createTollbooth({
    secret: SECRET,
    storage: store.storage,
    storageTimeoutMs: TIMEOUT_MS,
    failedAuth: false,
    onError: () => {},
    usage: { flushIntervalMs: 600_000, maxBatch: 10_000, retentionMs: 86_400_000 },
  })
  const { key, record } = await tb.keys.create({ accountId })
  for (let i = 0; i < 3; i++) {
    const d = await tb.authenticate(request(key))
    expect(d.allowed).toBe(true)
    await tb.settle(d, { status: 200 })
  }
  try {
    await whileFrozen(store, async (thaw) => {
      const { result, ms } = await settledWithin(tb[call](), BOUND_MS + 5_000)
      expect(result, `${call}() still running after ${Math.round(ms)} ms`).not.toBeNull()
      expect(ms).toBeLessThan(BOUND_MS)
      // Not silent: it rejects, naming the events it could not write.
      expect(result!.status).toBe('rejected')
      const error = (result as PromiseRejectedResult).reason as Error
      expect(String(error.message)).toMatch(/3 usage event\(s\)/)
      thaw()
      await thawed(tb, record.id, error)
    })
  } finally {
    await store.dispose()
  }
}

describe.each(stores)('tb.close() with the store frozen: %s', (_, make) => {
  it('ends within its bound and says which usage events it could not write', async (ctx) => {
    const store = await make(ctx)
    await expectFrozenRejects(store, 'acct_close', 'close', async (_tb, keyId) => {
      // The write that was out when close() gave up may still land (idempotent by id): never
      // more than the three events.
      await new Promise((r) => setTimeout(r, 300))
      expect(await store.logged(keyId)).toBeLessThanOrEqual(3)
    })
  }, 60_000)
})

describe.each(stores)('tb.flush() with the store frozen: %s', (_, make) => {
  it('ends within the bound close() has, names the events not confirmed written, and keeps them queued', async (ctx) => {
    const store = await make(ctx)
    await expectFrozenRejects(store, 'acct_flush', 'flush', async (tb, keyId, error) => {
      expect(error.name).toBe('StorageUnavailableError')
      // Still queued: once thawed, a flush writes them, each once.
      await tb.flush()
      expect(await store.logged(keyId)).toBe(3)
      await tb.close()
    })
  }, 60_000)
})
