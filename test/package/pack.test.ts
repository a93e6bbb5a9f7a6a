/**
 * What `npm pack` ships, as a user's project and the registry page see it: the documents the
 * warnings and the README point to (`docs/errors.md#<code>` for each warning code, every
 * `docs/…` link of the README), and the `repository` / `homepage` / `bugs` the registry needs
 * to resolve the README's other relative links.
 */

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, test } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>

async function packedFiles(): Promise<string[]> {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json'], {
    cwd: ROOT,
  })
  const [packed] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
  return packed!.files.map((f) => f.path)
}

describe('the packed package', () => {
  test('ships docs/errors.md with a section for every warning code', async () => {
    const files = await packedFiles()
    expect(files).toContain('docs/errors.md')
    const codes = [
      ...readFileSync(join(ROOT, 'src/warnings.ts'), 'utf8').matchAll(/'(TOLLBOOTH_[A-Z_]+)'/g),
    ].map((m) => m[1]!)
    expect(codes.length).toBeGreaterThan(0)
    const errors = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8')
    for (const code of codes) expect(errors).toMatch(new RegExp(`^#+ ${code.toLowerCase()}$`, 'm'))
    // Every docs/ document the README links to is shipped.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const linked = [...readme.matchAll(/\]\((docs\/[^)#\s]+)/g)].map((m) => m[1]!)
    expect(linked.length).toBeGreaterThan(0)
    for (const doc of linked) expect(files).toContain(doc)
  }, 60_000)

  test('names its repository, homepage and issue tracker', () => {
    const repository = pkg['repository'] as { type: string; url: string }
    expect(repository.type).toBe('git')
    expect(repository.url).toMatch(/^git\+https:\/\/github\.com\/[\w.-]+\/[\w.-]+\.git$/)
    const base = repository.url.replace(/^git\+/, '').replace(/\.git$/, '')
    expect(pkg['homepage']).toBe(`${base}#readme`)
    expect(pkg['bugs']).toEqual({ url: `${base}/issues` })
  })
})
