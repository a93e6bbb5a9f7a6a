/**
 * @module test/package/surface
 *
 * The public surface: `import * from 'tollbooth'` lists what a user calls, and nothing an
 * adapter needs only. Adapters share the rest through `src/internal.ts`, which package.json
 * does not export.
 */

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

const MAX_PUBLIC_NAMES = 15

describe('the public surface', () => {
  it(`exports at most ${MAX_PUBLIC_NAMES} runtime names from tollbooth`, async () => {
    const names = Object.keys(await import('../../src/index.js')).sort()
    expect(names.length).toBeLessThanOrEqual(MAX_PUBLIC_NAMES)
    expect(names).toEqual(
      expect.arrayContaining([
        'createTollbooth',
        'memoryStorage',
        'countersFromState',
        'providerVerifiers',
        'isTollboothError',
        'TollboothError',
        'ConfigError',
        'InvalidRequestError',
      ]),
    )
  })

  it('keeps the building blocks internal', async () => {
    const pub = await import('../../src/index.js')
    const internal = await import('../../src/internal.js')
    for (const name of [
      'gcra',
      'parseOptions',
      'encodeLogCursor',
      'createMarkers',
      'Admission',
      'settlementOf',
    ])
      expect([name, name in pub, name in internal]).toEqual([name, false, true])
    // Everything public is there for the adapters too.
    for (const name of Object.keys(pub)) expect(internal).toHaveProperty(name)
  })

  it("gives tb.accounts no entry that credits under billing's keys", async () => {
    const { createTollbooth } = await import('../../src/index.js')
    const tb = createTollbooth({ secret: 'surface-secret-surface-secret-surface-01' })
    try {
      // A caller's `credit(id, n, { key: 'grant <id>' })` would take a billing grant's key.
      expect(typeof (tb.accounts as unknown as Record<string, unknown>)['credit']).toBe('undefined')
    } finally {
      await tb.close()
    }
  })

  it('gives package.json no entry for the internal module', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
    const targets = JSON.stringify(pkg.exports)
    expect(targets).not.toMatch(/internal/)
    expect(Object.keys(pkg.exports)).not.toContain('./internal')
  })
})
