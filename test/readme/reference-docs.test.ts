/**
 * @module test/readme/reference-docs
 *
 * The reference tables of `docs/` against the code they describe: the defaults of the
 * `leases` option (docs/leases.md) and of the header families (docs/headers.md), and the
 * status of each error code that has a row in `DENIALS` (docs/errors.md); and the schema
 * migrations README and CHANGELOG name (number and file) against each store's `MIGRATIONS`.
 */

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { MIGRATIONS as PG_MIGRATIONS } from '../../adapters/postgres/migrate.js'
import { MIGRATIONS as SQLITE_MIGRATIONS } from '../../adapters/sqlite/migrations.js'
import { METER_TIMEOUT_MS } from '../../adapters/stripe/meter.js'
import { optionsSchema as stripeOptions } from '../../adapters/stripe/options.js'
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

  it('README and CHANGELOG name each migration by its own number and file', () => {
    // An upgrading user reads "Migration 6 (`0006-…`)": the number and the name must be the
    // store's own (CHANGELOG once called the json migration 6, README the aggregates one 2).
    const named = new Map<string, number>()
    for (const m of [...PG_MIGRATIONS, ...SQLITE_MIGRATIONS]) named.set(m.name, m.id)
    let checked = 0
    for (const file of ['README.md', 'CHANGELOG.md']) {
      const text = readFileSync(`${root}${file}`, 'utf8')
      for (const m of text.matchAll(/\b(\d{4}-[a-z][a-z-]*[a-z])(?:\.ts)?`/g)) {
        expect([file, m[1], named.has(m[1]!)]).toEqual([file, m[1], true])
        checked++
      }
      for (const m of text.matchAll(/[Mm]igration (\d+) \(`(\d{4}-[a-z-]+?)(?:\.ts)?`\)/g)) {
        expect([file, m[0], named.get(m[2]!)]).toEqual([file, m[0], Number(m[1])])
      }
    }
    expect(checked).toBeGreaterThan(8)
  })

  it('README gives the defaults of stripeBilling’s own options', () => {
    const readme = readFileSync(`${root}README.md`, 'utf8')
    const text = readme
      .slice(readme.indexOf('Other options, with their defaults:'))
      .replace(/\s+/g, ' ')
    const o = stripeOptions.parse({
      stripe: { checkout: { sessions: { create() {} } } },
      webhookSecret: 'whsec_0123456789',
      tiers: {},
    })
    const graceDays = Number(/`graceMs` \((\d+) days/.exec(text)?.[1])
    expect(graceDays * 86_400_000).toBe(o.graceMs)
    expect(Number(/`toleranceSec` \((\d+)/.exec(text)?.[1])).toBe(o.toleranceSec)
    expect(/`allowPromotionCodes` \((true|false)\)/.exec(text)?.[1]).toBe(
      String(o.allowPromotionCodes),
    )
    expect(Number(/\((\d+) s a meter event call/.exec(text)?.[1]) * 1000).toBe(METER_TIMEOUT_MS)
  })

  it('CHANGELOG has each entry once', () => {
    // Two branches writing the same entry leave two copies, which may then disagree (one said
    // migration 6 where the other, right, said 7). Entries that open alike are the same entry.
    const entries = readFileSync(`${root}CHANGELOG.md`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('- '))
      .map((l) => l.replace(/[\\\s]+/g, ' ').slice(0, 200))
    const twice = entries.filter((e, i) => e.length >= 120 && entries.indexOf(e) !== i)
    expect(twice).toEqual([])
  })
})
