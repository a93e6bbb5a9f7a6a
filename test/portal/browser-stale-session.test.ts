/**
 * A portal with both `session` and `authenticate`, in headless Chromium: the browser still
 * holds a session cookie signed with a retired secret, and the application's own session
 * signs the visitor in. The page shows the keys view once and stays there; it used to be
 * told "signed in" by `GET api/session` while every API call answered 401 for the stale
 * cookie, and it asked again on each 401, without end.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hasChromium, launch } from './browser.js'
import { makeTollbooth, SESSION_SECRET, type Served, servePortal, sessionToken } from './servers.js'

const { tb, clock } = makeTollbooth()
let served: Served

describe.skipIf(!hasChromium)('a stale session cookie beside the application session', () => {
  beforeAll(async () => {
    served = await servePortal('hono', tb, {
      session: { secret: SESSION_SECRET },
      authenticate: (req) =>
        (req.headers.get('cookie') ?? '').includes('app_session=gina')
          ? { accountId: 'acct_gina' }
          : null,
    })
  })
  afterAll(async () => {
    await served?.close()
    await tb.close()
  })

  it('shows the keys view once, without asking who is signed in again and again', async () => {
    await tb.keys.create({ accountId: 'acct_gina', name: 'Existing key' })
    const browser = await launch()
    try {
      const context = await browser.newContext()
      const url = new URL(served.url)
      const stale = await sessionToken('acct_gina', clock, 'retired-secret-retired-secret-retired')
      await context.addCookies([
        { name: 'app_session', value: 'gina', domain: url.hostname, path: '/' },
        { name: 'tollbooth-portal', value: stale, domain: url.hostname, path: '/' },
      ])
      const page = await context.newPage()
      const asked: string[] = []
      page.on('request', (r) => {
        if (r.url().endsWith('/portal/api/session')) asked.push(r.method())
      })
      await page.goto(`${served.url}/portal/`)
      await page.getByText('Existing key').first().waitFor({ timeout: 5000 })
      await page.waitForTimeout(1000)
      expect(asked).toEqual(['GET'])
      const cookies = (await context.cookies()).map((c) => c.name)
      expect(cookies).not.toContain('tollbooth-portal')
    } finally {
      await browser.close()
    }
  }, 30_000)
})
