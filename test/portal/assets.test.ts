/**
 * The portal's shipped front end: `adapters/portal/assets.gen.ts` is exactly what the sources
 * in `adapters/portal/ui/` build to (else `npm run build:portal` was forgotten), it stays
 * within its size budget, and it holds none of what the strict CSP or the secret rules forbid.
 */

import { readdir, readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { ASSETS } from '../../adapters/portal/assets.gen.js'
import {
  assetSizes,
  buildPortalAssets,
  GENERATED,
  renderAssetsModule,
} from '../../adapters/portal/build.js'

/** Budget of the JS and CSS sent to a browser, gzip-compressed. */
const BUDGET_GZIP_BYTES = 60 * 1024

describe('portal assets', () => {
  it('are up to date with the front-end sources (run `npm run build:portal` if not)', async () => {
    const built = await buildPortalAssets()
    expect(await readFile(GENERATED, 'utf8')).toBe(renderAssetsModule(built))
    expect(ASSETS.js.name).toBe(built.js.name)
  })

  it(`stay under ${BUDGET_GZIP_BYTES / 1024} kB of JS and CSS, gzip-compressed`, () => {
    const { raw, gzip } = assetSizes(ASSETS)
    expect(gzip).toBeLessThan(BUDGET_GZIP_BYTES)
    expect(raw).toBeGreaterThan(gzip)
  })

  it('use no eval, no HTML parsing of strings, no storage and no console', async () => {
    for (const word of [
      'eval(',
      'new Function',
      'innerHTML',
      'outerHTML',
      'insertAdjacentHTML',
      'document.write',
      'localStorage',
      'sessionStorage',
      'console.',
    ])
      expect(ASSETS.js.body, word).not.toContain(word)
    const dir = new URL('../../adapters/portal/ui/', import.meta.url)
    for (const file of await readdir(dir)) {
      if (!file.endsWith('.ts')) continue
      const src = (await readFile(new URL(file, dir), 'utf8')).replace(/^\s*(\/\*\*|\*).*$/gm, '')
      expect(src, file).not.toMatch(/console\.|localStorage|sessionStorage|innerHTML/)
    }
  })
})
