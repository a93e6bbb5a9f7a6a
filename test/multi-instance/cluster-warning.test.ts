/**
 * The in-memory storage keeps keys, counts and balances per process. In a Node cluster (or
 * PM2's cluster mode, which is one) every worker has its own, so N workers admit N times each
 * limit and know only the keys created through them: it warns there, whatever `NODE_ENV`
 * says. A storage the workers share (SQLite's file) does not warn.
 */

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const SCRIPT = fileURLToPath(new URL('./cluster-worker.ts', import.meta.url))

function run(storage: 'memory' | 'sqlite'): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, TB_STORAGE: storage }
    delete env['NODE_ENV']
    const proc = spawn('npx', ['tsx', SCRIPT], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    proc.stderr.on('data', (d: Buffer) => {
      err += d.toString()
    })
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000)
    proc.on('exit', (code) => {
      clearTimeout(timer)
      const line = out.split('\n').find((l) => l.startsWith('{"warnings"'))
      if (code !== 0 || !line) reject(new Error(`cluster exited with ${code}: ${err}`))
      else resolve((JSON.parse(line) as { warnings: string[] }).warnings)
    })
  })
}

describe('a Node cluster', () => {
  it('each worker on the in-memory storage warns TOLLBOOTH_LOCAL_COUNTERS, naming the cluster', async () => {
    const warnings = await run('memory')
    const local = warnings.filter((w) => w.includes('TOLLBOOTH_LOCAL_COUNTERS'))
    expect(local).toHaveLength(2)
    for (const w of local) expect(w).toMatch(/cluster worker/)
  }, 40_000)

  it('workers sharing a SQLite file do not warn', async () => {
    const warnings = await run('sqlite')
    expect(warnings.filter((w) => w.includes('TOLLBOOTH_'))).toEqual([])
  }, 40_000)
})
