/**
 * @module test/examples/demo-sqlite
 *
 * `npm run demo` keeps its keys, balances and usage across a restart on its default storage,
 * the SQLite file under the data folder it prints: start, use the key, stop (SIGTERM), start
 * again on the same folder, and the same key answers 200 with its usage carried on.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type Started, startServer } from './spawn.js'

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-demo-'))
let started: Started | undefined
afterAll(async () => {
  await started?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const synthesize = (url: string, key: string) =>
  fetch(`${url}/v1/synthesize`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'Hello' }),
  })

describe('npm run demo across a restart', () => {
  it('keeps the key and its usage in the data folder it prints', async () => {
    const env = { DATA_DIR: dir }
    started = await startServer('examples/voice-api/server.ts', ['consumption key', 'data'], env)
    expect(started.output()).toContain('(storage: sqlite)')
    expect(started.lines['data']).toBe(join(dir, 'tollbooth.db'))
    const key = started.lines['consumption key']!
    for (const n of [1, 2]) {
      const res = await synthesize(started.url, key)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-usage-current')).toBe(String(n))
    }
    await started.stop()
    expect(started.exitCode()).toBe(0)

    started = await startServer('examples/voice-api/server.ts', ['consumption key', 'data'], env)
    const again = await synthesize(started.url, key)
    expect(again.status).toBe(200)
    // The daily quota's count carried on from the first run.
    expect(again.headers.get('x-usage-current')).toBe('3')
    expect(started.lines['consumption key']).not.toBe(key)
  }, 60_000)
})
