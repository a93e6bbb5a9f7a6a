/**
 * @module test/multi-instance/spawn
 *
 * Starts an instance of `server.ts` as its own process group (`npx tsx`), waits for the port
 * it prints, and stops exactly that group again.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SERVER = fileURLToPath(new URL('./server.ts', import.meta.url))

export interface Instance {
  name: string
  url: string
  proc: ChildProcess
  stop(): Promise<void>
}

/** Spawns one API instance with `env` added; resolves once it listens. */
export function startInstance(name: string, env: Record<string, string>): Promise<Instance> {
  const proc = spawn('npx', ['tsx', SERVER], {
    env: { ...process.env, ...env, TB_NAME: name },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const stop = () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.pid === undefined) return resolve()
      const timer = setTimeout(() => process.kill(-proc.pid!, 'SIGKILL'), 5000)
      proc.once('exit', () => {
        clearTimeout(timer)
        resolve()
      })
      process.kill(-proc.pid, 'SIGTERM')
    })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`instance ${name} did not start within 30 s: ${stderr}`))
    }, 30_000)
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const line = out.split('\n')[0]
      if (!out.includes('\n') || !line) return
      clearTimeout(timer)
      const { port } = JSON.parse(line) as { port: number }
      resolve({ name, url: `http://127.0.0.1:${port}`, proc, stop })
    })
    proc.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`instance ${name} exited with ${code}: ${stderr}`))
    })
  })
}
