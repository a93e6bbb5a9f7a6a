/**
 * @module test/fault/topup-crash
 *
 * A top-up with an idempotency key whose first call does not see it through, then retried
 * with the same key, on real stores:
 * - its process dies (SIGKILL) right after the store credited the balance, before it could
 *   record that it had: the retry is answered at once, the account credited once (10 on 5:
 *   15). Before, the key's "done" marker was a second store call after the balance, so the
 *   retry was told 409 "in progress" for 24 hours;
 * - its process is frozen (SIGSTOP) just before its write is sent, the retry is made 24 hours
 *   later by its clock (past the key's "in progress" lock of before), then the first call is
 *   thawed and its write lands after the retry: credited once. Before, 25.
 * Redis, PostgreSQL and a SQLite file, each in a child process of its own
 * (`topup-child.ts`); memory (whose store dies with its process) with two instances on one
 * store, the first one's call never returning past the write, or held before it.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import {
  type Clock,
  createTollbooth,
  isTollboothError,
  memoryStorage,
  type Storage,
  type Tollbooth,
} from '../../src/index.js'
import { DATABASE_URL, freshSchema, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, REDIS_URL, testPrefix } from '../support/redis.js'

const CHILD = fileURLToPath(new URL('./topup-child.ts', import.meta.url))
const SECRET = 'topup-crash-secret-topup-crash-secret-0001'
const ACCOUNT = 'acct_crash'
/** A day and a minute: a retry past the 24 hours a key's "in progress" lock was kept. */
const NEXT_DAY_MS = 86_400_000 + 60_000
/** How long the retries may take to be answered, all told. */
const BOUND_MS = 3_000

const redis = await connectRedis()
const pool = skipPostgres ? null : new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
const dir = mkdtempSync(join(tmpdir(), 'tollbooth-topup-crash-'))
const children: ChildProcess[] = []
const cleanups: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGCONT')
      c.kill('SIGKILL')
    }
  }
  for (const c of cleanups) await c().catch(() => {})
  redis?.disconnect()
  await pool?.end()
  rmSync(dir, { recursive: true, force: true })
})

/** A store the child and the test both open: what the child is told, and the test's own. */
interface Target {
  store: string
  target: string
  open(): Storage
}

const targets: Array<[string, (() => Promise<Target>) | null]> = [
  [
    'Redis',
    redis &&
      (async () => {
        const keyPrefix = testPrefix('topup-crash')
        cleanups.push(() => deletePrefix(redis!, keyPrefix))
        return {
          store: 'redis',
          target: `${REDIS_URL} ${keyPrefix}`,
          open: () => redisStorage({ client: redis!, keyPrefix }),
        }
      }),
  ],
  [
    'PostgreSQL',
    pool &&
      (async () => {
        const fresh = await freshSchema(pool!)
        cleanups.push(fresh.drop)
        return {
          store: 'postgres',
          target: `${DATABASE_URL} ${fresh.schema}`,
          open: () => postgresStorage({ pool: pool!, schema: fresh.schema }),
        }
      }),
  ],
  [
    'SQLite file',
    async () => {
      const path = join(dir, `${Math.random().toString(36).slice(2)}.db`)
      return { store: 'sqlite', target: path, open: () => sqliteStorage({ path }) }
    },
  ],
]

/** The child process making the top-up; `line(text)` resolves once it printed `text`. */
function child(t: Target, mode: 'kill' | 'stop', key: string) {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, STORE: t.store, TARGET: t.target, MODE: mode, ACCOUNT, KEY: key },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(proc)
  let out = ''
  let err = ''
  const waiting: Array<() => void> = []
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    for (const w of waiting.splice(0)) w()
  })
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    proc.once('exit', (code, signal) => resolve(signal ?? code)),
  )
  const line = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (out.split('\n').includes(text)) resolve()
        else if (proc.exitCode !== null || proc.signalCode !== null)
          reject(new Error(`the child ended without printing ${text}: ${out} ${err}`))
        else waiting.push(check)
      }
      proc.once('exit', check)
      check()
    })
  return { proc, exited, line, output: () => `${out}${err}` }
}

/** Whether the process is stopped (state `T` in /proc). */
function stopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')
}

function tollbooth(storage: Storage, clock?: Clock): Tollbooth {
  return createTollbooth({
    secret: SECRET,
    storage,
    storageTimeoutMs: 1_000,
    onError: () => {},
    ...(clock ? { clock } : {}),
  })
}

/**
 * Retries the top-up until it is answered, within {@link BOUND_MS}: the balance it answers
 * (undefined when none came) and the codes of the errors before.
 */
async function retry(tb: Tollbooth, key: string) {
  const seen: string[] = []
  const until = Date.now() + BOUND_MS
  while (Date.now() < until) {
    try {
      const balance = (await tb.accounts.addCredits(ACCOUNT, 10, { idempotencyKey: key })).balance
      return { balance, seen }
    } catch (err) {
      if (!isTollboothError(err)) throw err
      seen.push(err.code)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return { balance: undefined, seen }
}

describe.each(targets)('a keyed top-up whose process did not see it through: %s', (_, make) => {
  it.skipIf(!make)(
    'killed after the store credited: the retry is answered at once, credited once',
    async () => {
      const t = await make!()
      const tb = tollbooth(t.open())
      try {
        await tb.accounts.addCredits(ACCOUNT, 5)
        const c = child(t, 'kill', 'pay-kill')
        expect(await c.exited, c.output()).toBe('SIGKILL')
        // The write landed before the process died.
        expect((await tb.accounts.get(ACCOUNT)).balance).toBe(15)
        const r = await retry(tb, 'pay-kill')
        expect(r.seen).toEqual([])
        expect(r.balance).toBe(15)
        expect(
          (await tb.accounts.addCredits(ACCOUNT, 10, { idempotencyKey: 'pay-kill' })).balance,
        ).toBe(15)
      } finally {
        await tb.close()
      }
    },
    30_000,
  )

  it.skipIf(!make)(
    'frozen before its write, retried a day later, then thawed: credited once',
    async () => {
      const t = await make!()
      const storage = t.open()
      const tb = tollbooth(storage)
      const nextDay = tollbooth(storage, { now: () => Date.now() + NEXT_DAY_MS })
      try {
        await tb.accounts.addCredits(ACCOUNT, 5)
        const c = child(t, 'stop', 'pay-late')
        await c.line('stopping')
        while (!stopped(c.proc.pid!)) await new Promise((r) => setTimeout(r, 10))
        const r = await retry(nextDay, 'pay-late')
        expect(r.seen).toEqual([])
        expect(r.balance).toBe(15)
        c.proc.kill('SIGCONT')
        await c.line('landed')
        expect(await c.exited, c.output()).toBe(0)
        expect((await tb.accounts.get(ACCOUNT)).balance).toBe(15)
      } finally {
        await nextDay.close()
        await tb.close()
      }
    },
    30_000,
  )
})

describe('a keyed top-up whose instance did not see it through: memory', () => {
  /** `storage` whose credit runs `around` the store's call (which it makes itself). */
  function held(storage: Storage, around: (call: () => Promise<unknown>) => Promise<unknown>) {
    const a = storage.accounts
    return {
      ...storage,
      accounts: {
        get: (id: string) => a.get(id),
        ensure: (d: Parameters<typeof a.ensure>[0]) => a.ensure(d),
        update: (...args: Parameters<typeof a.update>) => a.update(...args),
        addBalance: (id: string, n: number) => around(() => a.addBalance(id, n)),
        topUp: (id: string, x: Parameters<typeof a.topUp>[1]) => around(() => a.topUp(id, x)),
      },
    } as Storage
  }

  it("its call cut after the store credited: another instance's retry is answered, credited once", async () => {
    const storage = memoryStorage()
    // The first instance's call never comes back from the store's credit: the process
    // stopped there.
    const first = tollbooth(
      held(storage, async (call) => {
        await call()
        await new Promise(() => {})
      }),
    )
    const tb = tollbooth(storage)
    try {
      await tb.accounts.addCredits(ACCOUNT, 5)
      void first.accounts.addCredits(ACCOUNT, 10, { idempotencyKey: 'pay-cut' }).catch(() => {})
      for (let i = 0; i < 100 && (await tb.accounts.get(ACCOUNT)).balance !== 15; i++)
        await new Promise((r) => setTimeout(r, 10))
      expect((await tb.accounts.get(ACCOUNT)).balance).toBe(15)
      const r = await retry(tb, 'pay-cut')
      expect(r.seen).toEqual([])
      expect(r.balance).toBe(15)
    } finally {
      await tb.close()
    }
  })

  it('held before its write, retried a day later, then let go: credited once', async () => {
    const storage = memoryStorage()
    let reached: () => void = () => {}
    const atWrite = new Promise<void>((r) => {
      reached = r
    })
    let release: () => void = () => {}
    const gate = new Promise<void>((r) => {
      release = r
    })
    const first = tollbooth(
      held(storage, async (call) => {
        reached()
        await gate
        return call()
      }),
    )
    const tb = tollbooth(storage)
    const nextDay = tollbooth(storage, { now: () => Date.now() + NEXT_DAY_MS })
    try {
      await tb.accounts.addCredits(ACCOUNT, 5)
      const late = first.accounts.addCredits(ACCOUNT, 10, { idempotencyKey: 'pay-late' })
      late.catch(() => {})
      await atWrite
      const r = await retry(nextDay, 'pay-late')
      expect(r.seen).toEqual([])
      expect(r.balance).toBe(15)
      release()
      await late.catch(() => {})
      expect((await tb.accounts.get(ACCOUNT)).balance).toBe(15)
    } finally {
      await Promise.all([first.close(), nextDay.close(), tb.close()])
    }
  })
})
