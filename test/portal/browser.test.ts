/**
 * The developer portal in a real browser (headless Chromium through playwright-core), against
 * a real server on 127.0.0.1: a Hono product API with `requireApiKey` on `/v1/*` and the
 * portal at `/portal`. One visitor's session, step by step: sign in, create a key and see its
 * secret once, call the product with it, find the call in the key's logs and in the usage
 * chart, deactivate, delete (refused for a used key), rotate, store a provider key; then the
 * refusals: an API key on a portal route, a cross-site POST, a change without the CSRF token.
 * Every view is checked with axe-core, screenshotted, and read at 375 px.
 */

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  axeViolations,
  cspViolations,
  fitsViewport,
  hasChromium,
  launch,
  openPage,
  type PageLog,
  screenshot,
} from './browser.js'
import {
  GOOD_PROVIDER_KEY,
  makeTollbooth,
  type Served,
  servePortal,
  sessionToken,
} from './servers.js'

/** The warning of `002_2f2523503321cfc2.txt` ("Copy the secret"). */
const SECRET_WARNING_TEXT =
  'After saving, the secret is shown once. Copy it immediately and store it in an environment variable. It cannot be retrieved again.'

const { tb, clock } = makeTollbooth()
let served: Served
let attacker: Server
let attackerUrl: string
let browser: Browser
let context: BrowserContext
let page: Page
let log: PageLog
/** Secrets the page showed; none may ever reach a URL, storage or the console. */
const secrets: string[] = []
let secret = ''

const product = (key: string) =>
  fetch(`${served.url}/v1/synthesize`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}` },
  })

const portalUrl = (hash = '') => `${served.url}/portal/${hash}`

/** Opens a view by its fragment and waits for its heading. */
async function view(hash: string, heading: string | RegExp): Promise<void> {
  const target = portalUrl(hash)
  // The same URL again is no navigation at all: load the page anew instead.
  if (page.url() === target) await page.reload()
  else await page.goto(target)
  await page.getByRole('heading', { level: 1, name: heading }).waitFor()
}

/** The row of the keys table whose alias is `alias`. */
const keyRow = (alias: string) =>
  page.locator('tbody tr').filter({ has: page.locator('.alias', { hasText: alias }) })

async function expectAccessible(name: string): Promise<void> {
  await screenshot(page, name)
  expect(await axeViolations(page), `axe on ${name}`).toEqual([])
}

/** The per-day data table of the usage chart, as rows of cells. */
async function chartTable(): Promise<string[][]> {
  return page
    .locator('.data-table tbody tr')
    .evaluateAll((rows) =>
      rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? '')),
    )
}

const today = () => new Date(clock.now()).toISOString().slice(0, 10)
/** An expiry date 30 days ahead, as a date field takes it. */
const expiry = new Date(clock.now() + 30 * 86_400_000).toISOString().slice(0, 10)

describe.skipIf(!hasChromium)('developer portal in a real browser', () => {
  beforeAll(async () => {
    served = await servePortal('hono', tb)
    // Another site (localhost is not 127.0.0.1's site) with a form that posts to the portal.
    attacker = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html')
      res.end(`<!doctype html><title>elsewhere</title>
  <form method="POST" action="${served.url}/portal/api/keys" enctype="text/plain">
  <input name='{"name":"planted","x":"' value='"}'><button>Win a prize</button></form>`)
    })
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r))
    attackerUrl = `http://localhost:${(attacker.address() as AddressInfo).port}/`
    browser = await launch()
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: served.url })
    ;({ page, log } = await openPage(context))
  }, 30_000)

  afterAll(async () => {
    await browser?.close()
    await new Promise<void>((r) => (attacker ? attacker.close(() => r()) : r()))
    await served?.close()
    await tb.close()
  })

  it('redirects to <base>/, shows the sign-in page, and signs in into an HttpOnly cookie', async () => {
    await page.goto(`${served.url}/portal`)
    expect(page.url()).toBe(portalUrl())
    await page.getByRole('heading', { level: 1, name: /Sign in/ }).waitFor()
    await expectAccessible('sign-in')
    const token = await sessionToken('acct_browser', clock)
    const field = page.getByRole('textbox', { name: 'Session token' })
    await field.fill(token)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor()
    const cookies = await context.cookies(served.url)
    const session = cookies.find((c) => c.name === 'tollbooth-portal')
    expect(session).toMatchObject({ value: token, httpOnly: true, sameSite: 'Strict', path: '/' })
    expect(cookies.find((c) => c.name === 'tollbooth-portal-csrf')?.httpOnly).toBe(true)
    expect(await page.evaluate(() => document.cookie)).toBe('')
    expect(await page.evaluate(() => localStorage.length + sessionStorage.length)).toBe(0)
    secrets.push(token)
  })

  it('creates a key: the secret once, with a copy button and the warning, gone after a reload', async () => {
    await page.getByRole('textbox', { name: 'Alias' }).fill('Production backend')
    await page.getByRole('combobox', { name: 'Category', exact: true }).selectOption('production')
    await page.getByRole('spinbutton', { name: 'Daily requests' }).fill('100')
    await page.getByLabel('Expires (optional)').fill(expiry)
    await page.getByRole('button', { name: 'Create key' }).click()
    const panel = page.locator('section.secret')
    await panel.waitFor()
    secret = await panel.getByRole('textbox').inputValue()
    secrets.push(secret)
    expect(secret).toMatch(/^plabs_sk_live_[A-Za-z0-9]+$/)
    expect(await panel.textContent()).toContain(SECRET_WARNING_TEXT)
    await panel.getByRole('button', { name: 'Copy secret' }).click()
    await panel.getByText('Copied to the clipboard.').waitFor()
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret)
    const row = keyRow('Production backend')
    await expect.poll(() => row.count()).toBe(1)
    const text = (await row.textContent()) ?? ''
    expect(text).toContain(`${secret.slice(0, 'plabs_sk_live_'.length + 4)}...`)
    expect(text).toContain('production')
    expect(text).toContain('Active')
    expect(text).toContain('daily 100')
    expect(await row.locator('time').last().getAttribute('datetime')).toBe(
      `${expiry}T23:59:59.999Z`,
    )
    expect(text).not.toContain(secret)
    await expectAccessible('keys-secret')

    await page.reload()
    await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor()
    await expect.poll(() => keyRow('Production backend').count()).toBe(1)
    expect(await page.locator('section.secret').count()).toBe(0)
    expect(await page.content()).not.toContain(secret)
  })

  it('refuses a second key with the same alias, and filters keys by category', async () => {
    await page.getByRole('textbox', { name: 'Alias' }).fill('production BACKEND')
    await page.getByRole('button', { name: 'Create key' }).click()
    const alert = page.locator('form.key-form [role="alert"]')
    await expect.poll(() => alert.textContent()).toContain('already exists; choose another alias')
    expect(await page.locator('tbody tr').count()).toBe(1)

    await page.getByRole('textbox', { name: 'Alias' }).fill('CI pipeline')
    await page
      .getByRole('combobox', { name: 'Category', exact: true })
      .selectOption({ label: 'Other (type a label)…' })
    await page.getByRole('textbox', { name: 'Custom category' }).fill('partner-acme')
    await page.getByRole('button', { name: 'Create key' }).click()
    await page.locator('section.secret').waitFor()
    secrets.push(await page.locator('section.secret').getByRole('textbox').inputValue())
    await page.getByRole('button', { name: 'Done, I stored it' }).click()
    expect(await page.locator('section.secret').count()).toBe(0)
    await expect.poll(() => page.locator('tbody tr').count()).toBe(2)

    const filter = page.getByRole('combobox', { name: 'Filter by category' })
    await filter.selectOption('partner-acme')
    expect(await page.locator('tbody .alias').allTextContents()).toEqual(['CI pipeline'])
    await filter.selectOption('production')
    expect(await page.locator('tbody .alias').allTextContents()).toEqual(['Production backend'])
    await filter.selectOption('')
  })

  it("shows the key's calls in its logs and in the usage chart", async () => {
    await view('#/usage', 'Usage')
    await page.locator('.chart canvas').first().waitFor()
    const before = await page.locator('.chart').screenshot()
    expect((await chartTable()).find((r) => r[0] === today())?.at(-1)).toBe('0')

    // One more than a page of the log (20).
    for (let i = 0; i < 21; i++) expect((await product(secret)).status).toBe(200)

    await view('#/keys', 'API keys')
    await keyRow('Production backend').getByRole('link', { name: /Logs/ }).click()
    await page
      .getByRole('heading', { level: 1, name: 'Request logs: Production backend' })
      .waitFor()
    const rows = page.locator('tbody tr')
    await expect.poll(() => rows.count()).toBe(20)
    const older = page.getByRole('button', { name: 'Older' })
    const newer = page.getByRole('button', { name: 'Newer' })
    expect(await newer.isDisabled()).toBe(true)
    await older.click()
    await expect.poll(() => rows.count()).toBe(1)
    expect(await older.isDisabled()).toBe(true)
    await newer.click()
    await expect.poll(() => rows.count()).toBe(20)
    const first = (await rows.first().locator('td').allTextContents()).slice(1)
    expect(first).toEqual([
      'POST /v1/synthesize',
      '200',
      // Time to first byte (where the framework adapter measured it), then the total.
      expect.stringMatching(/^(\d+ ms|—unknown)$/),
      expect.stringMatching(/^\d+ ms$/),
      '127.0.0.1',
      '1',
    ])
    await expectAccessible('logs')

    await view('#/usage', 'Usage')
    await page.locator('.chart canvas').first().waitFor()
    const todayRow = (await chartTable()).find((r) => r[0] === today())
    expect(todayRow).toEqual([today(), '21', '21'])
    expect(await page.locator('.stats').textContent()).toContain('Requests21')
    // The limit's parts beyond the plan's credits: none carried over, no prepaid balance.
    expect(await page.locator('.stats').textContent()).toContain('Carried over0Prepaid balance0')
    expect(await page.locator('.legend').textContent()).toBe('tts')
    const after = await page.locator('.chart').screenshot()
    expect(after.equals(before)).toBe(false)
    await expectAccessible('usage')

    // By the keys' categories: the same requests, under the key's category (production).
    const groupBy = page.getByRole('combobox', { name: 'Group by' })
    await groupBy.selectOption('keyCategory')
    await expect.poll(() => page.locator('.legend').textContent()).toBe('production')
    expect(await page.getByRole('columnheader', { name: 'Key category' }).count()).toBe(1)
    expect((await chartTable()).find((r) => r[0] === today())).toEqual([today(), '21', '21'])
    await expectAccessible('usage-by-key-category')
    await groupBy.selectOption('category')
    await expect.poll(() => page.locator('.legend').textContent()).toBe('tts')

    // A past month: its own figures and its own days.
    const prev = new Date(clock.now())
    prev.setUTCDate(1)
    prev.setUTCMonth(prev.getUTCMonth() - 1)
    const month = prev.toISOString().slice(0, 7)
    await page.getByRole('combobox', { name: 'Billing period' }).selectOption(month)
    await expect.poll(async () => (await chartTable())[0]?.[0]).toBe(`${month}-01`)
    expect(await page.locator('.stats').textContent()).toContain('Requests0')
    expect(await page.locator('.stats').textContent()).toContain('Period ended')
    // Before the account: no closed figures kept, so no carryover nor balance shown.
    expect(await page.locator('.stats').textContent()).not.toContain('Carried over')
  })

  it('deactivates a key (401 Inactive API Key) and reactivates it', async () => {
    await view('#/keys', 'API keys')
    await keyRow('Production backend')
      .getByRole('button', { name: 'Deactivate Production backend' })
      .click()
    await expect
      .poll(() => keyRow('Production backend').locator('.badge').textContent())
      .toBe('Inactive')
    const refused = await product(secret)
    expect(refused.status).toBe(401)
    expect((await refused.json()).error).toBe('Inactive API Key')
    await keyRow('Production backend')
      .getByRole('button', { name: 'Reactivate Production backend' })
      .click()
    await expect
      .poll(() => keyRow('Production backend').locator('.badge').textContent())
      .toBe('Active')
    expect((await product(secret)).status).toBe(200)
  })

  it("refuses to delete a used key with the seed's advice, and deletes a never-used one", async () => {
    await keyRow('Production backend')
      .getByRole('button', { name: 'Delete Production backend' })
      .click()
    const alert = page.locator('section [role="alert"]').filter({ hasText: /\S/ })
    await expect
      .poll(() => alert.textContent())
      .toContain('This key has request history and cannot be deleted; deactivate it instead')
    expect(await alert.textContent()).toContain('Prefer deactivation over deletion')
    expect(await keyRow('Production backend').count()).toBe(1)
    await keyRow('CI pipeline').getByRole('button', { name: 'Delete CI pipeline' }).click()
    await expect.poll(() => keyRow('CI pipeline').count()).toBe(0)
  })

  it('rotates a key: a new secret once, and the old one stops working', async () => {
    await keyRow('Production backend')
      .getByRole('button', { name: 'Rotate Production backend' })
      .click()
    const panel = page.locator('section.secret')
    await panel.waitFor()
    expect(await panel.getByRole('heading').textContent()).toBe('Key “Production backend” rotated')
    const rotated = await panel.getByRole('textbox').inputValue()
    secrets.push(rotated)
    expect(rotated).not.toBe(secret)
    expect(await panel.textContent()).toContain(SECRET_WARNING_TEXT)
    const old = await product(secret)
    expect(old.status).toBe(401)
    expect((await old.json()).error).toBe('Invalid API Key')
    expect((await product(rotated)).status).toBe(200)
    await expect.poll(() => keyRow('Production backend').count()).toBe(1)
    secret = rotated
  })

  it('stores a provider key, shows it masked only, and verifies it', async () => {
    await view('#/provider-keys', 'Provider keys')
    await page.getByRole('combobox', { name: 'Provider' }).fill('openai')
    await page.getByLabel('API key', { exact: true }).fill(GOOD_PROVIDER_KEY)
    await page.getByRole('button', { name: 'Store key' }).click()
    const row = page.locator('tbody tr').filter({ hasText: 'openai' })
    await expect.poll(() => row.count()).toBe(1)
    expect(await row.locator('[data-masked]').textContent()).toBe('••••0001')
    expect(await page.getByLabel('API key', { exact: true }).inputValue()).toBe('')
    expect(await page.content()).not.toContain(GOOD_PROVIDER_KEY)
    expect(await row.locator('td').nth(3).textContent()).toContain('not verified')
    await row.getByRole('button', { name: 'Verify openai' }).click()
    await expect.poll(() => row.locator('td').nth(3).locator('time').count()).toBe(1)
    await expectAccessible('provider-keys')

    await page.getByRole('combobox', { name: 'Provider' }).fill('elevenlabs')
    await page.getByLabel('API key', { exact: true }).fill('sk_elevenlabs_to_delete')
    await page.getByRole('button', { name: 'Store key' }).click()
    await expect.poll(() => page.locator('tbody tr').count()).toBe(2)
    await page.getByRole('button', { name: 'Delete elevenlabs' }).click()
    await expect
      .poll(() => page.locator('tbody tr').allTextContents())
      .toEqual([expect.stringContaining('openai')])
    secrets.push(GOOD_PROVIDER_KEY)
  })

  it('refuses API keys on portal routes', async () => {
    const presented: Array<Record<string, string>> = [
      { authorization: `Bearer ${secret}` },
      { 'x-api-key': secret },
    ]
    for (const headers of presented) {
      for (const path of ['/portal/api/keys', '/portal/api/usage', '/portal/']) {
        const r = await fetch(`${served.url}${path}`, { headers })
        expect(r.status, path).toBe(403)
        expect((await r.json()).error).toContain('not accessible with API keys')
      }
    }
  })

  it('a cross-site POST, or a change without the CSRF token, changes nothing', async () => {
    const count = async () =>
      page.evaluate(async () => {
        const r = await fetch(`${location.pathname}api/keys?limit=100`)
        return ((await r.json()) as { data: unknown[] }).data.length
      })
    await view('#/keys', 'API keys')
    const keys = await count()

    const other = await context.newPage()
    await other.goto(attackerUrl)
    const answer = other.waitForResponse((r) => r.url().includes('/portal/api/keys'))
    await other.getByRole('button', { name: 'Win a prize' }).click()
    expect([401, 403]).toContain((await answer).status())
    await other.close()

    const attempts = await page.evaluate(async () => {
      const post = (headers: Record<string, string>) =>
        fetch(`${location.pathname}api/keys`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify({ name: 'no token' }),
        }).then(async (r) => [r.status, ((await r.json()) as { error: string }).error] as const)
      return [await post({}), await post({ 'x-csrf-token': 'A'.repeat(43) })]
    })
    for (const [status, error] of attempts) {
      expect(status).toBe(403)
      expect(error).toContain('CSRF token')
    }
    expect(await count()).toBe(keys)
    expect(await page.locator('.alias', { hasText: /planted|no token/ }).count()).toBe(0)
  })

  it('works by keyboard: skip link, navigation, and creating a key with Enter', async () => {
    await view('#/keys', 'API keys')
    const skip = page.getByRole('link', { name: 'Skip to content' })
    expect(await page.locator('a, button, input, select, textarea').first().textContent()).toBe(
      'Skip to content',
    )
    await skip.focus()
    await page.keyboard.press('Enter')
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('main')
    await skip.focus()
    const reached = new Set<string>()
    for (let i = 0; i < 25; i++) {
      await page.keyboard.press('Tab')
      reached.add(
        await page.evaluate(() => {
          const el = document.activeElement as HTMLElement | null
          return `${el?.tagName.toLowerCase()}:${el?.getAttribute('name') ?? el?.textContent?.trim()}`
        }),
      )
    }
    for (const want of [
      'a:API keys',
      'a:Usage',
      'a:Provider keys',
      'input:alias',
      'button:Create key',
    ])
      expect([...reached]).toContain(want)
    await page.getByRole('textbox', { name: 'Alias' }).focus()
    await page.keyboard.type('Keyboard key')
    await page.keyboard.press('Enter')
    await page.locator('section.secret').waitFor()
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(
      'Key “Keyboard key” created',
    )
    secrets.push(await page.locator('section.secret').getByRole('textbox').inputValue())
  })

  it('reads at 375 px wide in every view', async () => {
    await page.setViewportSize({ width: 375, height: 800 })
    for (const [hash, heading, name] of [
      ['#/keys', 'API keys', 'keys-375'],
      ['#/usage', 'Usage', 'usage-375'],
      ['#/provider-keys', 'Provider keys', 'provider-keys-375'],
    ] as const) {
      await view(hash, heading)
      await page.locator('table').first().waitFor()
      expect(await fitsViewport(page), name).toBe(true)
      await expectAccessible(name)
    }
    await page.setViewportSize({ width: 1280, height: 900 })
  })

  it('signs out: the session cookie is gone and the API answers 401', async () => {
    await view('#/keys', 'API keys')
    const session = (await context.cookies(served.url)).find((c) => c.name === 'tollbooth-portal')
    expect(session).toBeDefined()
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByRole('heading', { level: 1, name: /Sign in/ }).waitFor()
    expect((await context.cookies(served.url)).map((c) => c.name)).not.toContain('tollbooth-portal')
    const keys = () =>
      page.evaluate(() => fetch(`${location.pathname}api/keys`).then((r) => r.status))
    expect(await keys()).toBe(401)
    // The session itself ended: its cookie put back (a copy kept elsewhere) is refused too.
    await context.addCookies([session!])
    expect(await keys()).toBe(401)
    await context.clearCookies({ name: 'tollbooth-portal' })
  })

  it('never put a secret in a URL, storage or the console, and broke no CSP rule', async () => {
    expect(secrets.length).toBeGreaterThanOrEqual(5)
    const storage = await page.evaluate(() =>
      JSON.stringify({ ...localStorage, ...sessionStorage }),
    )
    for (const s of secrets) {
      expect(log.console.join('\n')).not.toContain(s)
      expect(page.url()).not.toContain(s)
      expect(storage).not.toContain(s)
    }
    expect(await cspViolations(page)).toEqual([])
    // Chromium logs each 4xx answer of fetch() as a console error: those were expected above.
    expect(log.errors.filter((e) => !/status of 4\d\d/.test(e))).toEqual([])
  })
})
