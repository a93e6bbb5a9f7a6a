/**
 * The README's quick starts run as pasted: each `## Quick start (…)` section's TypeScript block
 * is extracted into a project of its own, with `tollbooth` and its subpaths mapped to this
 * package's entry points (as package.json `exports` and tsup's entries name them), and
 * type-checked with the repository's compiler settings: an identifier the block never
 * defines, an import the package does not export, or an option it does not take fails here.
 * Each block also builds its tollbooth instance and starts a server.
 */

import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, test } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string
  exports: Record<string, unknown>
}

/** The first ```ts block of each `## Quick start (Name)` section, by name. */
function quickStarts(markdown: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const section of markdown.split(/^## /m)) {
    const title = /^Quick start \(([^)]+)\)/.exec(section)
    if (!title) continue
    const block = /^```ts\n([\s\S]*?)^```$/m.exec(section)
    if (block) out.set(title[1]!, block[1]!)
  }
  return out
}

/** `tollbooth` and each subpath of `exports`, mapped to its source entry (see tsup.config.ts). */
function entryPaths(): Record<string, string[]> {
  const tsup = readFileSync(join(ROOT, 'tsup.config.ts'), 'utf8')
  const entries = new Map(
    [...tsup.matchAll(/^\s+(\w+): '([^']+\.ts)',$/gm)].map((m) => [m[1]!, m[2]!] as const),
  )
  const paths: Record<string, string[]> = {}
  for (const subpath of Object.keys(pkg.exports)) {
    if (subpath === './package.json') continue
    const entry = entries.get(subpath === '.' ? 'index' : subpath.slice(2))
    if (!entry) throw new Error(`no tsup entry for ${subpath}`)
    paths[subpath === '.' ? pkg.name : `${pkg.name}${subpath.slice(1)}`] = [join(ROOT, entry)]
  }
  return paths
}

const blocks = quickStarts(README)
// Under the repository's node_modules, so the blocks' own imports (hono, express, …) resolve.
const cache = join(ROOT, 'node_modules/.cache')
mkdirSync(cache, { recursive: true })
const dir = mkdtempSync(join(cache, 'readme-quick-start-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('README quick starts', () => {
  test('there is one for Hono, Express and Fastify', () => {
    expect([...blocks.keys()].sort()).toEqual(['Express', 'Fastify', 'Hono'])
  })

  test.each([...blocks.keys()])('%s: builds its instance and starts a server', (name) => {
    const code = blocks.get(name)!
    expect(code).toMatch(/createTollbooth\(/)
    expect(code).toMatch(/\b(serve|listen)\(/)
  })

  test('each type-checks as pasted against the package', async () => {
    const base = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as {
      compilerOptions: Record<string, unknown>
    }
    const files: string[] = []
    for (const [name, code] of blocks) {
      const file = `${name.toLowerCase()}.ts`
      writeFileSync(join(dir, file), code)
      files.push(file)
    }
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }))
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          ...base.compilerOptions,
          // A pasted snippet may leave a variable unused; everything else is as strict.
          noUnusedLocals: false,
          typeRoots: [join(ROOT, 'node_modules/@types')],
          paths: entryPaths(),
        },
        files,
      }),
    )
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc')
    const result = await promisify(execFile)(process.execPath, [tsc, '-p', dir], {
      cwd: dir,
    }).then(
      () => ({ code: 0, output: '' }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        code: err.code ?? 1,
        output: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    )
    expect(result.output).toBe('')
    expect(result.code).toBe(0)
  }, 120_000)
})
