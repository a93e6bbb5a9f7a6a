/**
 * @module test/examples/spawn
 *
 * Starts an example's `server.ts` as its own process, as `npm run example:<name>` does, on
 * an ephemeral port, and reads the lines it prints (`management key: …`, `consumption key: …`,
 * `session token: …`). The environment is the test's, without `REDIS_URL` and `DATABASE_URL`
 * unless the caller passes them, so a run is on the examples' default, SQLite, in a fresh
 * temporary `DATA_DIR` (removed once the process has exited) unless the caller passes one.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Started {
  url: string
  /** `label: value` lines printed at start, by label. */
  lines: Record<string, string>
  output(): string
  /** Sends SIGTERM and resolves when the process has exited. */
  stop(): Promise<void>
  /** The exit code once exited (null before, or when killed by a signal). */
  exitCode(): number | null
}

/**
 * @param script e.g. `examples/pdf-api/server.ts`
 * @param expect the labels to wait for (besides the listening line)
 */
export function startServer(
  script: string,
  expect: string[],
  env: Record<string, string> = {},
): Promise<Started> {
  const base = { ...process.env }
  delete base['REDIS_URL']
  delete base['DATABASE_URL']
  const ownDir = env['DATA_DIR'] ? null : mkdtempSync(join(tmpdir(), 'tollbooth-example-'))
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script], {
    env: {
      ...base,
      PORT: '0',
      NODE_ENV: 'development',
      ...(ownDir ? { DATA_DIR: ownDir } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (ownDir) child.once('exit', () => rmSync(ownDir, { recursive: true, force: true }))
  let out = ''
  child.stderr!.on('data', (d) => {
    out += d
  })
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
    })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`${script} did not start: ${out}`))
    }, 20_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${script} exited with ${code}: ${out}`))
    })
    child.stdout!.on('data', (d) => {
      out += d
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1]
      const lines: Record<string, string> = {}
      for (const m of out.matchAll(/^([a-z ]+): (\S+)$/gm)) lines[m[1]!] = m[2]!
      if (url && expect.every((label) => label in lines)) {
        clearTimeout(timer)
        resolve({ url, lines, output: () => out, stop, exitCode: () => child.exitCode })
      }
    })
  })
}
