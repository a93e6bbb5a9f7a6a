/**
 * @module test/portal/browser
 *
 * The real browser of the portal suite: Debian's Chromium (`/usr/bin/chromium`, or
 * `CHROMIUM_PATH`) driven headless by playwright-core, a page that records console errors,
 * page errors and Content-Security-Policy violations, an axe-core check of the current view
 * (axe injected from `node_modules/axe-core/axe.min.js`; serious and critical violations
 * fail), and screenshots under `test/.screenshots/` (git-ignored).
 */

import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

/** Where Chromium is. */
export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium'
/**
 * Whether to run the browser suite: always in CI (`TOLLBOOTH_REQUIRE_SERVICES=1`, where a
 * missing Chromium must fail, not skip), elsewhere only when Chromium is installed.
 */
export const hasChromium = existsSync(CHROMIUM) || process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1'

const SHOTS = fileURLToPath(new URL('../.screenshots/', import.meta.url))
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js')

/** Launches headless Chromium with the flags of a quiet, sandbox-less CI machine. */
export function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      '--disable-quic',
    ],
  })
}

/** What went wrong in the page, as it happened. */
export interface PageLog {
  /** Console messages of every type, as text (to check no secret is ever logged). */
  console: string[]
  errors: string[]
}

/** A page that records console output, errors and CSP violations (read with `cspViolations`). */
export async function openPage(context: BrowserContext): Promise<{ page: Page; log: PageLog }> {
  const page = await context.newPage()
  const log: PageLog = { console: [], errors: [] }
  page.on('console', (m) => {
    log.console.push(`${m.type()}: ${m.text()}`)
    if (m.type() === 'error') log.errors.push(`console: ${m.text()}`)
  })
  page.on('pageerror', (e) => log.errors.push(`pageerror: ${e.message}`))
  // Confirmations (delete, rotate) are accepted, as a user who means it would.
  page.on('dialog', (d) => void d.accept())
  await page.addInitScript(() => {
    const w = window as unknown as { __csp: string[] }
    w.__csp = []
    document.addEventListener('securitypolicyviolation', (e) => {
      w.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`)
    })
  })
  return { page, log }
}

/** The CSP violations the page has seen since it was loaded. */
export function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __csp: string[] }).__csp ?? [])
}

let axeSource: string | undefined

/** Runs axe-core on the page; returns the serious and critical violations, described. */
export async function axeViolations(page: Page): Promise<string[]> {
  axeSource ??= await readFile(AXE, 'utf8')
  // Evaluated through the DevTools protocol: the page's own CSP does not apply to it.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource)
  const found = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: unknown, o: unknown): Promise<unknown> } })
      .axe
    const r = (await axe.run(document, { resultTypes: ['violations'] })) as {
      violations: Array<{
        id: string
        impact: string | null
        help: string
        nodes: Array<{ target: unknown[] }>
      }>
    }
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => JSON.stringify(n.target)),
    }))
  })
  return found
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.targets.join(', ')}`)
}

/** Writes a full-page screenshot to `test/.screenshots/portal-<name>.png`; returns its bytes. */
export async function screenshot(page: Page, name: string): Promise<Buffer> {
  await mkdir(SHOTS, { recursive: true })
  return page.screenshot({ path: `${SHOTS}portal-${name}.png`, fullPage: true })
}

/** True when nothing in the page is wider than the viewport (no sideways scrolling). */
export function fitsViewport(page: Page): Promise<boolean> {
  return page.evaluate(
    () => document.documentElement.scrollWidth <= document.documentElement.clientWidth,
  )
}
