/**
 * @module test/fault/postgres-server
 *
 * A throwaway PostgreSQL 15 for fault tests: `initdb` into a temporary folder as user
 * `postgres` (trust authentication, no fsync), the server started on a free port of 127.0.0.1
 * with its socket in that folder, and killed (SIGKILL to the postmaster and every backend, as
 * a crash of the machine would), frozen (SIGSTOP) or restarted by pid. `stop()` ends it and
 * removes the folder. The shared server on 5432 is never touched.
 */

import { execFileSync, spawn } from 'node:child_process'
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { printed } from '../support/fault.js'
import { freePort } from './redis-server.js'

const BIN = '/usr/lib/postgresql/15/bin'

export interface PostgresServer {
  port: number
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  url: string
  readonly pid: number | undefined
  /** Kills the postmaster and all its backends at once (SIGKILL); resolves once it has exited. */
  kill(): Promise<void>
  /** Starts it again on the same port and data (after crash recovery). */
  restart(): Promise<void>
  /** Freezes (SIGSTOP) or thaws (SIGCONT) the postmaster and its backends. */
  freeze(frozen: boolean): void
  /** Ends the server and deletes its folder. */
  stop(): Promise<void>
}

/** The uid and gid of the `postgres` user (initdb and postgres refuse to run as root). */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim())
  return { uid: id('-u'), gid: id('-g') }
}

/** The pids of `pid`'s children (the backends and auxiliary processes of a postmaster). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

/** Waits (busy, at most `ms`) until `pid` is stopped by a signal (`T` in /proc/<pid>/stat). */
function stoppedWithin(pid: number, ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // `pid (comm) S …`: the state follows the command's closing parenthesis.
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
      if (state === 'T' || state === 't') return
    } catch {
      return // gone
    }
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

function launch(dir: string, port: number, user: { uid: number; gid: number }) {
  const proc = spawn(
    `${BIN}/postgres`,
    [
      '-D',
      join(dir, 'data'),
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
      '-c',
      'max_connections=60',
    ],
    { ...user, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  return printed(proc, 'ready to accept connections', `postgres on port ${port}`, 30_000)
}

/** Creates a cluster in a temporary folder and starts it; rejects when PostgreSQL 15 is missing. */
export async function startPostgresServer(): Promise<PostgresServer> {
  const user = postgresUser()
  const dir = mkdtempSync(join(tmpdir(), 'tb-pg-'))
  chownSync(dir, user.uid, user.gid)
  try {
    execFileSync(
      `${BIN}/initdb`,
      ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync'],
      { ...user, stdio: 'pipe' },
    )
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const port = await freePort()
  let proc = await launch(dir, port, user)
  // Also when a test run ends without reaching stop() (a failed hook, a timeout).
  const reap = () => {
    if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null)
      signal(proc.pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', reap)
  const kill = () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined)
        return resolve()
      const pid = proc.pid
      proc.once('exit', () => resolve())
      // Stopped first, the postmaster forks no backend between the listing and the kill.
      signal(pid, 'SIGSTOP')
      for (const c of childrenOf(pid)) signal(c, 'SIGKILL')
      signal(pid, 'SIGKILL')
    })
  const freeze = (frozen: boolean) => {
    if (proc.pid === undefined) return
    const sig = frozen ? 'SIGSTOP' : 'SIGCONT'
    signal(proc.pid, sig)
    if (!frozen) {
      for (const c of childrenOf(proc.pid)) signal(c, sig)
      return
    }
    // A SIGSTOP takes effect when the process next runs: a postmaster in the middle of a fork
    // (a connection being opened) still makes that child, which a list read at once misses and
    // which then serves while "frozen" (a call answered under a loaded machine: CI). So the
    // children are listed once the postmaster is seen stopped, then stopped each.
    stoppedWithin(proc.pid, 2_000)
    for (const c of childrenOf(proc.pid)) signal(c, sig)
  }
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    get pid() {
      return proc.pid
    },
    kill,
    async restart() {
      proc = await launch(dir, port, user)
    },
    freeze,
    async stop() {
      freeze(false)
      await kill()
      process.removeListener('exit', reap)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
