/**
 * `npm run example:voice`, `example:pdf` and `example:inference`: each `server.ts` starts on
 * their default storage (SQLite, in a temporary DATA_DIR here) with one command, prints the
 * credentials it created one a line, and each printed credential works where its README says;
 * in all three the printed session token signs in to the developer portal at `/portal`.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { browserClient, type Res } from '../portal/servers.js'
import { call } from './http.js'
import { type Started, startServer } from './spawn.js'

/** Signs in to the portal at `url` with `token`, then `GET /portal/api/<path>`. */
async function portalGet(url: string, token: string, path: string): Promise<Res> {
  const browser = browserClient(url)
  const signIn = await browser.signIn(token)
  expect(signIn.status).toBe(200)
  return browser.call('GET', `/api/${path}`)
}

let started: Started | undefined
afterEach(async () => {
  await started?.stop()
  started = undefined
})

describe('example servers', () => {
  it('voice-api: a management key, an API key and a portal session token', async () => {
    started = await startServer('examples/voice-api/server.ts', [
      'management key',
      'consumption key',
      'session token',
    ])
    const { url, lines } = started
    expect(started.output()).toContain('(storage: sqlite)')
    const key = lines['consumption key']!
    const synth = await call(url, 'POST', '/v1/synthesize', { token: key, json: { text: 'Hello' } })
    expect([synth.status, synth.headers.get('x-usage-current')]).toEqual([200, '1'])
    expect(synth.headers.get('x-ratelimit-limit')).toBe('60')
    const keys = await call(url, 'GET', '/v1/keys', { token: lines['management key']! })
    expect(keys.body.data).toHaveLength(1)
    expect((await call(url, 'GET', '/v1/keys', { token: key })).status).toBe(200)
    const usage = await portalGet(url, lines['session token']!, 'usage')
    expect(usage.body.breakdown).toEqual({ tts: 1, stt: 0, llm: 0, rag: 0 })
    const portalKeys = await portalGet(url, lines['session token']!, 'keys')
    expect(portalKeys.body.data.map((k: { name: string }) => k.name)).toEqual(['Demo key'])
  })

  it('pdf-api: an API key and a session token for the account routes', async () => {
    started = await startServer('examples/pdf-api/server.ts', ['consumption key', 'session token'])
    const { url, lines } = started
    const key = lines['consumption key']!
    expect(key).toMatch(/^pdf_live_/)
    const op = await call(url, 'POST', '/api/v1/compress', {
      token: key,
      json: { file: 'https://example.com/report.pdf' },
    })
    expect(op.status).toBe(200)
    const token = lines['session token']!
    const list = await call(url, 'GET', '/api/v1/account/keys', { token })
    expect(list.body).toEqual([expect.objectContaining({ name: 'CI Pipeline' })])
    expect((await call(url, 'GET', '/api/v1/account/profile', { token })).body).toEqual({
      tier: 'pro',
    })
    const usage = await call(url, 'GET', '/api/v1/account/usage', { token })
    expect(usage.body).toMatchObject({ current: 1, limit: 500 })
    const portalKeys = await portalGet(url, token, 'keys')
    expect(portalKeys.body.data.map((k: { name: string }) => k.name)).toEqual(['CI Pipeline'])
  })

  it('inference-api: management, credit and pool keys, and a session token', async () => {
    started = await startServer('examples/inference-api/server.ts', [
      'management key',
      'consumption key',
      'pool key',
      'session token',
    ])
    const { url, lines } = started
    const chat = (key: string) =>
      call(url, 'POST', '/v1/chat/completions', {
        token: key,
        json: { model: 'echo-1', messages: [{ role: 'user', content: 'Hello' }] },
      })
    expect(lines['consumption key']).toMatch(/^sk_/)
    expect(lines['management key']).toMatch(/^mk_/)
    expect((await chat(lines['consumption key']!)).status).toBe(200)
    expect((await chat(lines['pool key']!)).status).toBe(200)
    const keys = await call(url, 'GET', '/api/keys', { token: lines['management key']! })
    expect(keys.body.data.map((k: { keyType: string }) => k.keyType).sort()).toEqual([
      'credit',
      'subscription',
    ])
    const status = await call(url, 'GET', '/api/billing/status', {
      token: lines['session token']!,
    })
    expect(status.body.data).toMatchObject({ balance: expect.any(Number) })
    expect(status.body.data.balance).toBeLessThan(5)
    const portalKeys = await portalGet(url, lines['session token']!, 'keys')
    // The pool key lives in the subscription's own account: the user's credit key only.
    expect(portalKeys.body.data.map((k: { name: string }) => k.name)).toEqual(['client_42'])
  })
})
