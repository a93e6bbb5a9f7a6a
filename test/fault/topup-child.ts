/**
 * @module test/fault/topup-child
 *
 * A process that makes one top-up, `tb.accounts.addCredits(ACCOUNT, 10, { idempotencyKey })`,
 * on a real store (`STORE`: redis, postgres or sqlite, at `TARGET`) and does not see it through:
 * - `MODE=kill`: once the store's call that credits (`addBalance` or `topUp`) has answered,
 *   the process SIGKILLs itself, as a crash right after the balance was written;
 * - `MODE=stop`: just before that call is sent, the process prints `stopping` and SIGSTOPs
 *   itself; thawed (SIGCONT), it sends the call, which lands late, and exits.
 * It prints `{"pid":…}` first. Run by `topup-crash.test.ts` with `node --import tsx`.
 */

import { Redis } from 'ioredis'
import pg from 'pg'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, type Storage } from '../../src/index.js'

const env = (name: string) => {
  const v = process.env[name]
  if (v === undefined) throw new Error(`topup-child: ${name} is not set`)
  return v
}
const store = env('STORE')
const target = env('TARGET')
const mode = env('MODE')

let storage: Storage
if (store === 'redis') {
  const [url, keyPrefix] = target.split(' ') as [string, string]
  storage = redisStorage({ client: new Redis(url), keyPrefix })
} else if (store === 'postgres') {
  const [url, schema] = target.split(' ') as [string, string]
  storage = postgresStorage({ pool: new pg.Pool({ connectionString: url, max: 2 }), schema })
} else {
  storage = sqliteStorage({ path: target })
}

// The real store; only what happens to this process around its credit differs.
const accounts = storage.accounts
const around =
  <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
  async (...args: A): Promise<R> => {
    if (mode === 'stop') {
      process.stdout.write('stopping\n')
      process.kill(process.pid, 'SIGSTOP')
      const r = await call(...args)
      process.stdout.write('landed\n')
      return r
    }
    const r = await call(...args)
    process.kill(process.pid, 'SIGKILL')
    return r
  }
const wrapped: Storage = {
  ...storage,
  accounts: {
    get: (id) => accounts.get(id),
    ensure: (d) => accounts.ensure(d),
    update: (id, patch, ifPeriodStart) => accounts.update(id, patch, ifPeriodStart),
    addBalance: around((id: string, n: number) => accounts.addBalance(id, n)),
    topUp: around((id: string, t: Parameters<typeof accounts.topUp>[1]) => accounts.topUp(id, t)),
  },
}

const tb = createTollbooth({
  secret: 'topup-crash-secret-topup-crash-secret-0001',
  storage: wrapped,
  storageTimeoutMs: 60_000,
  onError: () => {},
})
process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`)
try {
  await tb.accounts.addCredits(env('ACCOUNT'), 10, { idempotencyKey: env('KEY') })
} catch (err) {
  process.stdout.write(`failed ${(err as Error).message}\n`)
}
process.exit(0)
