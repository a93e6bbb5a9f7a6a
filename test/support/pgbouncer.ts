/**
 * @module test/support/pgbouncer
 *
 * A private PgBouncer in front of the shared PostgreSQL (`DATABASE_URL`, normally
 * 127.0.0.1:5432), as Supabase, Neon, Heroku or a self-hosted pooler put one: its own ini and
 * auth file in a temporary folder, trust authentication, a free port of 127.0.0.1, run as user
 * `postgres` (PgBouncer refuses root). Two databases lead to the same one: `<db>` pooled per
 * transaction, `<db>_session` per session. Killed (SIGKILL), frozen (SIGSTOP) or restarted
 * by its pid; `admin(sql)` runs a command on its console (`PAUSE`, `RESUME`, `SHOW POOLS`).
 * `stop()` ends it and removes the folder. The shared server is only ever its client.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort } from '../fault/redis-server.js'
import { printed } from './fault.js'
import { DATABASE_URL } from './postgres.js'

export interface PgBouncer {
  port: number
  readonly pid: number | undefined
  /** A connection string through the pooler: `transaction` or `session` pooling. */
  url(mode: 'transaction' | 'session'): string
  /** Runs one command on the admin console (`PAUSE`, `RESUME`, `SHOW POOLS`). */
  admin(sql: string): Promise<Record<string, unknown>[]>
  /** Kills it at once (SIGKILL); resolves once it has exited. */
  kill(): Promise<void>
  /** Starts it again on the same port. */
  restart(): Promise<void>
  /** Freezes (SIGSTOP) or thaws (SIGCONT) it: connections stay open, nothing answers. */
  freeze(frozen: boolean): void
  /** Ends it and deletes its folder. */
  stop(): Promise<void>
}

/** A user for the process: PgBouncer refuses to run as root. */
type RunAs = { uid: number; gid: number } | undefined

function launch(ini: string, port: number, user: RunAs) {
  const proc = spawn('pgbouncer', [ini], { ...user, stdio: ['ignore', 'pipe', 'pipe'] })
  return printed(proc, 'process up', `pgbouncer on port ${port}`, 10_000)
}

/**
 * Starts a PgBouncer on a free port in front of `DATABASE_URL`; rejects when `pgbouncer` is
 * not installed (ENOENT).
 * @param [poolSize=10] server connections of the transaction-pooled database
 * @param [sessionPoolSize=30] server connections of the session-pooled one (each client
 *   connected holds one, idle or not)
 */
export async function startPgBouncer(poolSize = 10, sessionPoolSize = 30): Promise<PgBouncer> {
  const target = new URL(DATABASE_URL)
  const db = target.pathname.slice(1) || 'postgres'
  const dbUser = decodeURIComponent(target.username) || 'postgres'
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim())
  const user: RunAs = process.getuid?.() === 0 ? { uid: id('-u'), gid: id('-g') } : undefined
  const dir = mkdtempSync(join(tmpdir(), 'tb-pgbouncer-'))
  const port = await freePort()
  const server = `host=${target.hostname} port=${target.port || 5432} dbname=${db}`
  writeFileSync(join(dir, 'users.txt'), `"${dbUser}" ""\n`)
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    `[databases]
${db} = ${server} pool_mode=transaction
${db}_session = ${server} pool_mode=session pool_size=${sessionPoolSize}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(dir, 'users.txt')}
admin_users = ${dbUser}
default_pool_size = ${poolSize}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits,options
`,
  )
  if (user) chownSync(dir, user.uid, user.gid)
  const ini = join(dir, 'pgbouncer.ini')
  let proc: ChildProcess
  try {
    proc = await launch(ini, port, user)
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const gone = () => proc.exitCode !== null || proc.signalCode !== null
  // Also when a test run ends without reaching stop() (a failed hook, a timeout).
  const reap = () => {
    if (!gone() && proc.pid !== undefined) process.kill(proc.pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', reap)
  const kill = () =>
    new Promise<void>((resolve) => {
      if (gone() || proc.pid === undefined) return resolve()
      proc.once('exit', () => resolve())
      process.kill(proc.pid, 'SIGCONT')
      process.kill(proc.pid, 'SIGKILL')
    })
  const auth = dbUser === 'postgres' ? 'postgres' : encodeURIComponent(dbUser)
  return {
    port,
    get pid() {
      return proc.pid
    },
    url: (mode) =>
      `postgres://${auth}@127.0.0.1:${port}/${mode === 'transaction' ? db : `${db}_session`}`,
    async admin(sql) {
      const c = new pg.Client({
        connectionString: `postgres://${auth}@127.0.0.1:${port}/pgbouncer`,
      })
      await c.connect()
      try {
        // The console speaks the simple protocol only.
        return (await c.query({ text: sql, queryMode: 'simple' } as pg.QueryConfig)).rows
      } finally {
        await c.end()
      }
    },
    kill,
    async restart() {
      proc = await launch(ini, port, user)
    },
    freeze(frozen) {
      if (proc.pid !== undefined && !gone()) process.kill(proc.pid, frozen ? 'SIGSTOP' : 'SIGCONT')
    },
    async stop() {
      await kill()
      process.removeListener('exit', reap)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
