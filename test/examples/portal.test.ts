/**
 * The developer portal (`tollbooth/portal`) mounted at `/portal` in the three examples: Hono
 * (`app.route`), Express and Fastify (`mountFetch`). In each, `GET /portal/` is the page with
 * its Content-Security-Policy, the example's own session token signs in through
 * `POST /portal/api/session` (CSRF token from `GET`, the cookies passed back by hand), the
 * signed-in portal lists the account's keys and nobody else's, and an API key is refused.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createInferenceApi } from '../../examples/inference-api/app.js'
import { createPdfApi } from '../../examples/pdf-api/app.js'
import { signSession } from '../../examples/shared/session.js'
import { KEY_LIMITS } from '../../examples/voice-api/app.js'
import { manualClock, type Tollbooth } from '../../src/internal.js'
import { browserClient } from '../portal/servers.js'
import { type Served, serveExpress, serveFastify } from './http.js'
import { startVoice, SESSION_SECRET as VOICE_SESSION, T0 as VOICE_T0 } from './voice-fixture.js'

const SECRET = 'portal-examples-secret-portal-examples-0001'
const SESSION_SECRET = 'portal-examples-session-secret-0123456789'
const T0 = Date.UTC(2026, 4, 12, 9, 0)

interface Example {
  tb: Tollbooth
  url: string
  /** The example's (manual) clock time. */
  now: number
  /** A session token the example would issue for `accountId`. */
  session(accountId: string): Promise<string>
  close(): Promise<void>
}

const examples: Record<string, () => Promise<Example>> = {
  'voice-api (Hono)': async () => {
    const v = await startVoice()
    return {
      tb: v.tb,
      url: v.url,
      now: VOICE_T0,
      session: (a) => signSession(VOICE_SESSION, a, { now: VOICE_T0 }),
      close: v.close,
    }
  },
  'pdf-api (Express)': async () => {
    const pdf = createPdfApi({
      secret: SECRET,
      sessionSecret: SESSION_SECRET,
      clock: manualClock(T0),
    })
    const served: Served = await serveExpress(pdf.app)
    return {
      tb: pdf.tb,
      url: served.url,
      now: T0,
      session: (a) => signSession(SESSION_SECRET, a, { now: T0 }),
      close: () => served.close(),
    }
  },
  'inference-api (Fastify)': async () => {
    const inf = await createInferenceApi({
      secret: SECRET,
      sessionSecret: SESSION_SECRET,
      clock: manualClock(T0),
    })
    const served = await serveFastify(inf.app)
    return {
      tb: inf.tb,
      url: served.url,
      now: T0,
      session: (a) => signSession(SESSION_SECRET, a, { now: T0 }),
      close: () => served.close(),
    }
  },
}

let running: Example | undefined
afterEach(async () => {
  await running?.close()
  running = undefined
})

describe.each(Object.keys(examples))('%s: the developer portal at /portal', (name) => {
  const start = async () => {
    running = await examples[name]!()
    return running
  }

  it('serves the page with its Content-Security-Policy', async () => {
    const { url } = await start()
    const res = await fetch(`${url}/portal/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(res.headers.get('content-security-policy')).toContain('frame-ancestors')
    expect(await res.text()).toMatch(/<!doctype html>/i)
  })

  it("signs in with the example's session token and lists that account's keys only", async () => {
    const { tb, url, session } = await start()
    // Credit keys need a balance in the inference example.
    for (const a of ['acct_portal', 'acct_other']) await tb.accounts.addCredits(a, 1_000)
    await tb.keys.create({ accountId: 'acct_portal', name: 'Mine' })
    await tb.keys.create({ accountId: 'acct_other', name: 'Not mine' })
    const browser = browserClient(url)
    expect((await browser.call('GET', '/api/keys')).status).toBe(401)
    const signIn = await browser.signIn(await session('acct_portal'))
    expect([signIn.status, signIn.body.accountId]).toEqual([200, 'acct_portal'])
    expect([...browser.jar.keys()].sort()).toEqual(['tollbooth-portal', 'tollbooth-portal-csrf'])
    const keys = await browser.call('GET', '/api/keys')
    expect(keys.status).toBe(200)
    expect(keys.body.data.map((k: { name: string }) => k.name)).toEqual(['Mine'])
    expect(keys.text).not.toContain('Not mine')
    // Without the cookie, the same request is refused.
    expect((await fetch(`${url}/portal/api/keys`)).status).toBe(401)
  })

  it('refuses an API key on /portal/api/keys, and a token signed with another secret', async () => {
    const { tb, url, now } = await start()
    await tb.accounts.addCredits('acct_portal', 1_000)
    const { key } = await tb.keys.create({ accountId: 'acct_portal', name: 'Mine' })
    const asKey = await fetch(`${url}/portal/api/keys`, {
      headers: { authorization: `Bearer ${key}` },
    })
    expect(asKey.status).toBe(403)
    expect(await asKey.text()).not.toContain(key)
    const forged = await signSession('another-secret-another-secret-another', 'acct_portal', {
      now,
    })
    const browser = browserClient(url)
    expect((await browser.signIn(forged)).status).toBe(401)
    expect((await browser.call('GET', '/api/keys')).status).toBe(401)
  })
})

describe('voice-api: keys created in the portal', () => {
  it('get the per-key rate limit, as keys created on /v1 do', async () => {
    const v = await startVoice()
    running = { tb: v.tb, url: v.url, now: VOICE_T0, session: async () => '', close: v.close }
    const browser = browserClient(v.url)
    await browser.signIn(await signSession(VOICE_SESSION, 'acct_dev', { now: VOICE_T0 }))
    const created = await browser.call('POST', '/api/keys', { json: { name: 'From portal' } })
    expect(created.status).toBe(201)
    expect((await v.tb.keys.get(created.body.id)).limits).toEqual(KEY_LIMITS)
    // Without the CSRF token the change is refused and nothing is created.
    const refused = await browser.call('POST', '/api/keys', { json: { name: 'x' }, csrf: false })
    expect(refused.status).toBe(403)
    expect((await v.tb.keys.list('acct_dev')).data).toHaveLength(1)
  })
})
