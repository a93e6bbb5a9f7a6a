/**
 * @module test/readme/reference-docs
 *
 * The reference tables of `docs/` against the code they describe: the defaults of the
 * `leases` option (docs/leases.md) and of the header families (docs/headers.md), and the
 * status of each error code that has a row in `DENIALS` (docs/errors.md).
 */

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DENIALS } from '../../src/denials.js'
import { DEFAULT_HEADER_FAMILIES } from '../../src/headers.js'
import { resolveOptions } from '../../src/options.js'

const root = new URL('../../', import.meta.url).pathname
const doc = (name: string) => readFileSync(`${root}docs/${name}`, 'utf8')
const SECRET = 'reference-docs-secret-0123456789abcdefgh'

describe('docs/ reference tables', () => {
  it('docs/leases.md gives the defaults of the `leases` option', () => {
    const text = doc('leases.md')
    const table = text.slice(text.indexOf('| option (`leases: { … }`) |'))
    const rows = [...table.matchAll(/^\| `(\w+)` \| ([\d.,]+)/gm)].map(
      (m) => [m[1]!, Number(m[2]!.replace(/,/g, ''))] as const,
    )
    const leases = resolveOptions({ secret: SECRET }).leases
    if (leases === false) throw new Error('leases are on by default')
    expect(Object.fromEntries(rows)).toEqual(leases)
  })

  it('docs/headers.md gives the default of each header family', () => {
    const rows = [...doc('headers.md').matchAll(/^\| [^|]+ \| `(\w+)` \| (on|off) \|/gm)].map(
      (m) => [m[1]!, m[2] === 'on'] as const,
    )
    expect(Object.fromEntries(rows)).toEqual(DEFAULT_HEADER_FAMILIES)
  })

  it('docs/errors.md gives the status a refusal of each code is answered with', () => {
    const statuses = new Map<string, Set<number>>()
    for (const spec of Object.values(DENIALS)) {
      const s = statuses.get(spec.code) ?? new Set()
      s.add(spec.status)
      statuses.set(spec.code, s)
    }
    let checked = 0
    for (const m of doc('errors.md').matchAll(/^\| `([a-z_]+)` \| (\d{3})/gm)) {
      const known = statuses.get(m[1]!)
      if (!known) continue
      expect([m[1], known.has(Number(m[2]))]).toEqual([m[1], true])
      checked++
    }
    expect(checked).toBeGreaterThan(15)
  })
})
