/**
 * @module test/fault/redis-server
 *
 * A throwaway `redis-server` for fault tests: started on a free port of 127.0.0.1 with no
 * persistence, killed or frozen by its own pid, restartable on the same port.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'

/** A free TCP port on 127.0.0.1 (the OS picks it; nothing listens on it after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0))
    })
  })
}

export interface RedisServer {
  port: number
  readonly pid: number | undefined
  /** Kills the server at once (SIGKILL), as a crash would; resolves when it has exited. */
  kill(): Promise<void>
  /** Starts it again on the same port. */
  restart(): Promise<void>
  /** Freezes (SIGSTOP) or thaws (SIGCONT) the process: connections stay open, nothing answers. */
  freeze(frozen: boolean): void
}

function launch(port: number, extra: readonly string[]): Promise<ChildProcess> {
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`redis-server did not start on port ${port}: ${out}`))
    }, 10_000)
    proc.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve(proc)
      }
    })
    proc.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited with ${code}: ${out}`))
    })
  })
}

/**
 * Starts a redis-server on a free port; rejects (ENOENT) when the binary is missing.
 * @param extra arguments after the defaults, which they override (e.g. `--appendonly yes`
 *   with a `--dir`, for a server whose data survives a kill)
 */
export async function startRedisServer(extra: readonly string[] = []): Promise<RedisServer> {
  const port = await freePort()
  let proc = await launch(port, extra)
  return {
    port,
    get pid() {
      return proc.pid
    },
    kill: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve()
        proc.once('exit', () => resolve())
        proc.kill('SIGKILL')
      }),
    async restart() {
      proc = await launch(port, extra)
    },
    freeze(frozen) {
      if (proc.pid !== undefined) process.kill(proc.pid, frozen ? 'SIGSTOP' : 'SIGCONT')
    },
  }
}
