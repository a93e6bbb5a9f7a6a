/**
 * `npm run demo` (`examples/voice-api/server.ts`): starts on its default storage (SQLite in a temporary DATA_DIR here), prints its
 * keys, and serves a protected route.
 */

import { afterAll, describe, expect, it } from 'vitest'
import { type Started, startServer } from './spawn.js'

let started: Started | undefined
afterAll(async () => {
  await started?.stop()
})

describe('npm run demo', () => {
  it('starts an API on its default storage, prints keys, and serves a protected route', async () => {
    started = await startServer('examples/voice-api/server.ts', [
      'management key',
      'consumption key',
    ])
    const { url, lines } = started
    const consumption = lines['consumption key']!
    expect(consumption).toMatch(/^plabs_sk_live_/)
    expect(lines['management key']).toMatch(/^plabs_mk_live_/)
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
