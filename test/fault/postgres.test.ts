/**
 * @module test/fault/postgres
 *
 * PostgreSQL goes away under traffic and comes back. An API process (`postgres-app.ts`, its
 * own Node process so a crash shows as an exit) keeps keys, counters, usage and accounts on a
 * private PostgreSQL started here, and serves a steady stream of metered requests while
 * (1) every backend is terminated again and again (`pg_terminate_backend`, as a failover or an
 * operator would), then (2) the server is killed (SIGKILL) and (3) restarted. The process
 * never exits; while the server is down requests get 503 `storage_unavailable` within the
 * storage timeout; after the restart they pass again. Once the process has shut down, every
 * admitted request has exactly one usage event, the account's credit counter has charged
 * exactly what was recorded, and no hold is left.
 */

import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth } from '../../src/index.js'
import { creditKey } from '../../src/metering/accounts.js'
import { periodOf } from '../../src/metering/periods.js'
import { type Instance, startInstance } from '../multi-instance/spawn.js'
import { type PostgresServer, startPostgresServer } from './postgres-server.js'

const TIMEOUT_MS = 1000
const SECRET = 'postgres-fault-secret-postgres-fault-42'
const SCHEMA = 'tb_fault'
const ACCOUNT = 'acct_pg_fault'
const APP = new URL('./postgres-app.ts', import.meta.url).pathname

let server: PostgresServer | null = null
try {
  server = await startPostgresServer()
} catch (err) {
  if (process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1') throw err
}

interface Outcome {
  status: number
  ms: number
  code?: string | undefined
  requestId: string | null
}

describe.skipIf(!server)('PostgreSQL killed, terminated and restarted under traffic', () => {
  const pgServer = server!
  const pool = new pg.Pool({ connectionString: pgServer.url, max: 3 })
  pool.on('error', () => {})
  let app: Instance
  let exited: number | string | null = null
  let stderr = ''
  let key = ''
  let keyId = ''

  beforeAll(async () => {
    await migrate({ pool, schema: SCHEMA })
    const tb = createTollbooth({
      secret: SECRET,
      storage: postgresStorage({ pool, schema: SCHEMA }),
    })
    const created = await tb.keys.create({ accountId: ACCOUNT, name: 'fault' })
    await tb.close()
    key = created.key
    keyId = created.record.id
    app = await startInstance(
      'pg-app',
      { DATABASE_URL: pgServer.url, TB_SCHEMA: SCHEMA, TB_SECRET: SECRET },
      APP,
    )
    app.proc.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    app.proc.once('exit', (code, sig) => {
      exited = code ?? sig
    })
  }, 60_000)

  afterAll(async () => {
    await app?.stop()
    await pool.end().catch(() => {})
    await pgServer.stop()
  })

  const call = async (): Promise<Outcome> => {
    const t = Date.now()
    try {
      const res = await fetch(`${app.url}/v1/work`, {
        headers: { authorization: `Bearer ${key}` },
      })
      const body = (await res.json()) as { code?: string }
      return {
        status: res.status,
        ms: Date.now() - t,
        code: body.code,
        requestId: res.headers.get('x-request-id'),
      }
    } catch {
      // The process is gone (or refused the connection).
      return { status: 0, ms: Date.now() - t, requestId: null }
    }
  }
  /** `workers` loops of requests until `stop(outcomes)`; at most 4000 requests, 25 s. */
  const traffic = (workers: number, stop: (out: Outcome[]) => boolean) => {
    const out: Outcome[] = []
    const until = Date.now() + 25_000
    const loop = async () => {
      while (!stop(out) && out.length < 4000 && Date.now() < until) out.push(await call())
    }
    return { out, done: Promise.all(Array.from({ length: workers }, loop)).then(() => out) }
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const ok = (out: Outcome[]) => out.filter((o) => o.status === 200)
  const alive = () => {
    expect(exited, `the API process exited:\n${stderr.slice(-6000)}`).toBeNull()
  }

  it('never exits, answers 503 within the timeout while down, recovers, and loses nothing', async () => {
    const all: Outcome[] = []

    // 1. Backends terminated under traffic (a failover, or pg_terminate_backend).
    let terminations = 0
    let terminating = true
    const t1 = traffic(8, (out) => !terminating && ok(out).length >= 300)
    while (t1.out.length < 50) await sleep(5)
    for (let i = 0; i < 20; i++) {
      const r = await pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      )
      terminations += r.rowCount ?? 0
      await sleep(25)
    }
    terminating = false
    all.push(...(await t1.done))
    alive()
    expect(terminations).toBeGreaterThan(20)
    for (const o of t1.out.filter((o) => o.status !== 200)) {
      expect(o.status).toBe(503)
      expect(o.code).toBe('storage_unavailable')
    }

    // 2. The server killed under traffic: 503s within the timeout, the process serves on.
    let killed = false
    const t2 = traffic(8, (out) => killed && out.filter((o) => o.status === 503).length >= 100)
    while (t2.out.length < 50) await sleep(5)
    await pgServer.kill()
    killed = true
    const during = await t2.done
    all.push(...during)
    alive()
    const refused = during.filter((o) => o.status !== 200)
    expect(refused.length).toBeGreaterThanOrEqual(100)
    for (const o of refused) {
      expect(o.status).toBe(503)
      expect(o.code).toBe('storage_unavailable')
      expect(o.ms).toBeLessThan(TIMEOUT_MS + 1000)
    }

    // 3. Restarted: requests pass again.
    await sleep(500)
    await pgServer.restart()
    const restartedAt = Date.now()
    const firstOk = (out: Outcome[]) => out.findIndex((o) => o.status === 200)
    let recoveryMs = -1
    const after = await traffic(8, (out) => {
      if (recoveryMs < 0 && firstOk(out) >= 0) recoveryMs = Date.now() - restartedAt
      return firstOk(out) >= 0 && out.length - firstOk(out) >= 300
    }).done
    all.push(...after)
    alive()
    expect(firstOk(after)).toBeGreaterThanOrEqual(0)
    const recovered = after.slice(firstOk(after) + 8)
    expect(recovered.length).toBeGreaterThan(250)
    expect(recovered.every((o) => o.status === 200)).toBe(true)
    expect(after.every((o) => o.status === 200 || o.code === 'storage_unavailable')).toBe(true)

    // 4. Shut down cleanly (drain, flush), then count: nothing lost, nothing left held.
    await app.stop()
    const admitted = ok(all).map((o) => o.requestId as string)
    expect(admitted.every((id) => typeof id === 'string' && id.length > 0)).toBe(true)
    const storage = postgresStorage({ pool, schema: SCHEMA })
    const logged: string[] = []
    let cursor: string | null = null
    do {
      const page = await storage.usage.logs(keyId, { limit: 100, cursor })
      logged.push(...page.data.map((e) => e.requestId))
      cursor = page.nextCursor
    } while (cursor)
    expect(logged.sort()).toEqual(admitted.sort())
    const credit = await pool.query<{ state: { used: number; holds: Record<string, unknown> } }>(
      `SELECT state FROM "${SCHEMA}".counters WHERE key = $1`,
      [creditKey(ACCOUNT, periodOf(Date.now()))],
    )
    const state = credit.rows[0]!.state
    const held = Object.keys(state.holds)
    // No admission answered 503 left a hold or a charge behind (it was rolled back, or never
    // run past its deadline). A settle that failed while the server was away keeps its
    // request's hold until reservationTtlMs: retrying such settles is issue 20 item 9, after
    // which `held` is empty here. Every admitted request is charged or held, exactly once.
    const admittedSet = new Set(admitted)
    expect(held.filter((id) => !admittedSet.has(id))).toEqual([])
    expect(state.used + held.length).toBe(admitted.length)
    console.log(
      `postgres fault: ${admitted.length} admitted, ${terminations} backends terminated, ` +
        `${refused.length} refused while down (max ${Math.max(...refused.map((o) => o.ms))} ms), ` +
        `first request passed ${recoveryMs} ms after the server accepted connections; ${held.length} holds of failed settles left`,
    )
  }, 90_000)
})
