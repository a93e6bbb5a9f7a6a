import { type ChildProcess, spawn } from 'node:child_process'
import { afterAll, describe, expect, it } from 'vitest'

let child: ChildProcess | undefined
afterAll(() => {
  child?.kill('SIGTERM')
})

/** Starts `npm run demo`'s script on an ephemeral port and reads what it prints. */
async function startDemo(): Promise<{ url: string; management: string; consumption: string }> {
  child = spawn(process.execPath, ['--import', 'tsx', 'examples/voice-api/server.ts'], {
    env: { ...process.env, PORT: '0', NODE_ENV: 'development' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${out}`)), 15_000)
    child!.stdout!.on('data', (d) => {
      out += d
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1]
      const management = /^management key: (\S+)$/m.exec(out)?.[1]
      const consumption = /^consumption key: (\S+)$/m.exec(out)?.[1]
      if (url && management && consumption) {
        clearTimeout(timer)
        resolve({ url, management, consumption })
      }
    })
    child!.on('exit', (code) => reject(new Error(`demo exited with ${code}: ${out}`)))
  })
}

describe('npm run demo', () => {
  it('starts an API on the in-memory default, prints keys, and serves a protected route', async () => {
    const { url, management, consumption } = await startDemo()
    expect(consumption).toMatch(/^plabs_sk_live_/)
    expect(management).toMatch(/^plabs_mk_live_/)
    const ok = await fetch(`${url}/v1/synthesize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${consumption}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Hello' }),
    })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('x-usage-current')).toBe('1')
    expect(ok.headers.get('x-request-id')).toMatch(/^req_/)
    const denied = await fetch(`${url}/v1/synthesize`, {
      method: 'POST',
      headers: { authorization: 'Bearer nope' },
    })
    expect(denied.status).toBe(401)
    expect(await denied.json()).toEqual({ error: 'Invalid API Key', code: 'invalid_api_key' })
  })
})
