/**
 * @module test/multi-instance/spawn
 *
 * Starts an instance of `server.ts` (or another script that prints `{"port":…}` first) as its
 * own process group (`npx tsx`), waits for the port it prints, and stops exactly that group
 * again.
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

/** Spawns one API instance (`script`, by default `server.ts`) with `env` added; resolves once it listens. */
export function startInstance(
  name: string,
  env: Record<string, string>,
  script = SERVER,
): Promise<Instance> {
  const proc = spawn('npx', ['tsx', script], {
    env: { ...process.env, ...env, TB_NAME: name },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  /** True while any process of the group is left (npx may exit before the server it ran). */
  const groupAlive = () => {
    try {
      process.kill(-proc.pid!, 0)
      return true
    } catch {
      return false
    }
  }
  const stop = async () => {
    if (proc.pid === undefined || !groupAlive()) return
    const timer = setTimeout(() => {
      if (groupAlive()) process.kill(-proc.pid!, 'SIGKILL')
    }, 5000)
    process.kill(-proc.pid, 'SIGTERM')
    while (groupAlive()) await new Promise((r) => setTimeout(r, 20))
    clearTimeout(timer)
  }
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
