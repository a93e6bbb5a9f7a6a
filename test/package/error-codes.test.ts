/**
 * @module test/package/error-codes
 *
 * One dialect of error codes: every code the core or an adapter sends is in `ErrorCode`, and
 * `docs/errors.md` documents exactly those codes.
 */

import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../../src/internal.js'

const root = new URL('../../', import.meta.url).pathname

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(join(root, path)).isDirectory()) return sources(path)
    return path.endsWith('.ts') && !path.endsWith('.test.ts') && !path.endsWith('.gen.ts')
      ? [path]
      : []
  })
}

/** `code: 'x'` and `code === 'x'` literals, except zod's own issue codes. */
function codesSent(path: string): string[] {
  const text = readFileSync(join(root, path), 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/\bcode: '([a-z_]+)'/g)) out.push(m[1]!)
  // `refuse(401, 'unauthorized', …)`, `fail(400, '…', 'invalid_signature')`
  for (const m of text.matchAll(
    /\b(?:refuse|fail)\(\s*\d{3},[^)]*?'([a-z]+_[a-z_]+|[a-z]+)'\s*[,)]/g,
  ))
    out.push(m[1]!)
  return out.filter((c) => !ZOD_ISSUE_CODES.has(c))
}

const ZOD_ISSUE_CODES = new Set(['custom', 'unrecognized_keys', 'invalid_union', 'invalid_type'])

describe('error codes', () => {
  it('holds every code the core and the adapters send', () => {
    const files = [...sources('src'), ...sources('adapters')]
    const found = new Map<string, string>()
    for (const f of files) for (const c of codesSent(f)) found.set(c, f)
    expect(found.size).toBeGreaterThan(10)
    const outside = [...found].filter(([c]) => !(ERROR_CODES as readonly string[]).includes(c))
    expect(outside).toEqual([])
    for (const code of ['internal_error', 'session_keys_unavailable', 'webhook_failed'])
      expect(found.has(code)).toBe(true)
  })

  it('documents exactly the codes of ErrorCode in docs/errors.md', () => {
    const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8')
    const documented = new Set([...doc.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!))
    expect([...documented].sort()).toEqual([...ERROR_CODES].sort())
  })
})
