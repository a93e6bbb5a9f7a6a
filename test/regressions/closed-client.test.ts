/**
 * @module test/regressions/closed-client
 *
 * A process whose storage client is closed before `tb.close()` (`redis.quit()`, `pool.end()`,
 * `db.close()`: a shutdown handler closing in the wrong order) ends by itself, says so once,
 * and `tb.close()` afterwards ends at once, rejecting with the events it could not write.
 * Before: with Redis, `[tollbooth] Connection is closed.` at every out-box flush for ever, and
 * the change feed's subscriber connection kept the process alive; with PostgreSQL,
 * `pool.end()` never resolved (the change feed held a pooled connection, LISTENing) and a
 * ConfigError was logged at every flush; with SQLite, the change feed logged
 * `The database connection is not open` at every poll (4 a second).
 *
 * Each case is a child process (`closed-client-child.ts`): "the process stays alive" is a
 * claim about a process. Its stderr holds tollbooth's log lines, counted here.
 */

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, test } from 'vitest'
import { DATABASE_URL, freshSchema, newPool, skipPostgres } from '../support/postgres.js'
import { connectRedis, deletePrefix, REDIS_URL, testPrefix } from '../support/redis.js'

const CHILD = fileURLToPath(new URL('./closed-client-child.ts', import.meta.url))
/** How long the child stays up with its client closed, as a server would. */
const ALIVE_MS = 2000
/** After its last step, the child must have exited within this. */
const EXIT_MS = 3000

interface Run {
  out: string[]
  /** tollbooth's log lines (`[tollbooth]`, `[tollbooth/<store>]`). */
  logs: string[]
  /** Whether it exited by itself within EXIT_MS of printing `done`. */
  exited: boolean
}

function run(env: Record<string, string>): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, REDIS_URL, DATABASE_URL, TB_ALIVE_MS: String(ALIVE_MS), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  child.stderr.on('data', (d) => {
    err += d
  })
  return new Promise((resolve, reject) => {
    const result = (exited: boolean): Run => ({
      out: out.trim().split('\n'),
      logs: err.split('\n').filter((l) => l.startsWith('[tollbooth')),
      exited,
    })
    let limit: ReturnType<typeof setTimeout> | undefined
    const start = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`no "done" within 15 s: ${out}\n${err}`))
    }, 15_000)
    child.stdout.on('data', () => {
      if (limit || !out.includes('done\n')) return
      clearTimeout(start)
      limit = setTimeout(() => {
        child.kill('SIGKILL')
        resolve(result(false))
      }, EXIT_MS)
    })
    child.once('exit', (code) => {
      clearTimeout(start)
      clearTimeout(limit)
      if (code !== 0 && code !== null) reject(new Error(`exited with ${code}: ${err}`))
      else resolve(result(true))
    })
  })
}

/** What every case shows: a 503, one log line naming the cause and the order, an exit. */
function expectClean(r: Run, cause: RegExp) {
  expect(r.out).toContain('request: 503 storage_unavailable')
  expect(r.logs, r.logs.join('\n')).toHaveLength(1)
  expect(r.logs[0]).toMatch(cause)
  expect(r.logs[0]).toMatch(/call `await tb\.close\(\)` first/)
  expect(r.exited, 'the process ended by itself').toBe(true)
}

/** `tb.close()` after the client: at once, rejecting, naming the event and the cause. */
function expectCloseRejected(r: Run, cause: RegExp) {
  const line = r.out.find((l) => l.startsWith('close '))
  expect(line).toMatch(
    /^close rejected in \d+ ms: StorageUnavailableError: close\(\): 1 usage event\(s\) not written/,
  )
  expect(Number(/in (\d+) ms/.exec(line!)![1])).toBeLessThan(1000)
  expect(line).toMatch(cause)
}

const redis = await connectRedis()
describe.skipIf(redis === null)('Redis client quit before tb.close()', () => {
  const prefixes: string[] = []
  afterAll(async () => {
    for (const p of prefixes) await deletePrefix(redis!, p)
    redis!.disconnect()
  })
  const prefix = () => {
    const p = testPrefix('closed')
    prefixes.push(p)
    return p
  }
  const cause = /options\.client was closed \(quit\(\)/

  test('the process logs it once and ends by itself', async () => {
    const r = await run({ TB_STORE: 'redis', TB_PREFIX: prefix() })
    expectClean(r, cause)
  })

  test('tb.close() afterwards rejects at once, naming the event not written', async () => {
    const r = await run({ TB_STORE: 'redis', TB_PREFIX: prefix(), TB_CLOSE: '1' })
    expectClean(r, cause)
    expectCloseRejected(r, cause)
  })
})

describe.skipIf(skipPostgres)('PostgreSQL pool ended before tb.close()', () => {
  const pool = skipPostgres ? null : newPool(2)
  const drops: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const drop of drops) await drop()
    await pool?.end()
  })
  const schema = async () => {
    const s = await freshSchema(pool!)
    drops.push(s.drop)
    return s.schema
  }
  const cause = /options\.pool was ended \(pool\.end\(\)\)/

  test('pool.end() resolves, the process logs it once and ends by itself', async () => {
    const r = await run({ TB_STORE: 'postgres', TB_SCHEMA: await schema() })
    const ended = r.out.find((l) => l.startsWith('pool ended'))
    expect(ended, r.out.join('\n')).toBeDefined()
    expect(Number(/in (\d+) ms/.exec(ended!)![1])).toBeLessThan(1000)
    expectClean(r, cause)
  })

  test('tb.close() afterwards rejects at once, naming the event not written', async () => {
    const r = await run({ TB_STORE: 'postgres', TB_SCHEMA: await schema(), TB_CLOSE: '1' })
    expectClean(r, cause)
    expectCloseRejected(r, cause)
  })
})

describe('SQLite handle closed before tb.close()', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-closed-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const cause = /options\.database was closed \(db\.close\(\)\)/

  test('the process logs it once and ends by itself', async () => {
    const r = await run({ TB_STORE: 'sqlite', TB_FILE: join(dir, 'a.db') })
    expectClean(r, cause)
  })

  test('tb.close() afterwards rejects at once, naming the event not written', async () => {
    const r = await run({ TB_STORE: 'sqlite', TB_FILE: join(dir, 'b.db'), TB_CLOSE: '1' })
    expectClean(r, cause)
    expectCloseRejected(r, cause)
  })
})
