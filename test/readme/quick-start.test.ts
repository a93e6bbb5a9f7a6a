/**
 * The README's quick starts run as pasted: each `## Quick start (…)` section's TypeScript block
 * is extracted into a project of its own, with `tollbooth` and its subpaths mapped to this
 * package's entry points (as package.json `exports` and tsup's entries name them), and
 * type-checked with the repository's compiler settings: an identifier the block never
 * defines, an import the package does not export, or an option it does not take fails here.
 * Each block also builds its tollbooth instance and starts a server. The BYOK section's route is
 * type-checked too, on the Hono quick start's setup, and the Keys section's calls.
 */

import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
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

/** Each `## Quick start (Name)` section's whole text, by name (its prose, commands and block). */
function quickStartSections(markdown: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const section of markdown.split(/^## /m)) {
    const title = /^Quick start \(([^)]+)\)/.exec(section)
    if (title) out.set(title[1]!, section)
  }
  return out
}

/** Whether the installed package `name` ships its own type declarations. */
function shipsTypes(name: string): boolean {
  const dir = join(ROOT, 'node_modules', name)
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    types?: string
    typings?: string
    exports?: unknown
  }
  if (manifest.types || manifest.typings) return true
  if (JSON.stringify(manifest.exports ?? {}).includes('"types"')) return true
  return existsSync(join(dir, 'index.d.ts'))
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

  // A new project (`npm init -y`: on npm 11, `"type": "commonjs"`) has only what the section
  // tells it to install and set: the type-check below supplies the rest (an ES module, every
  // @types package of the repository), so it cannot see a missing step.
  test.each([...blocks.keys()])('%s: its section installs what its block needs', (name) => {
    const section = quickStartSections(README).get(name)!
    const code = blocks.get(name)!
    const installed = new Set(
      [...section.matchAll(/npm install ([^\n`(]+)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)),
    )
    const imported = new Set(
      [...code.matchAll(/^import .* from '([^']+)'/gm)]
        .map((m) => m[1]!)
        .filter((s) => !s.startsWith('node:'))
        .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!)),
    )
    const needed = [...imported].flatMap((pkgName) =>
      pkgName === pkg.name || shipsTypes(pkgName) ? [pkgName] : [pkgName, `@types/${pkgName}`],
    )
    // \`process.env\` needs Node's types; Express's and Fastify's own types bring them in.
    if (/\bprocess\./.test(code) && !needed.some((n) => n === '@types/express' || n === 'fastify'))
      needed.push('@types/node')
    expect(needed.filter((n) => !installed.has(n))).toEqual([])
    // Top-level await runs only in an ES module.
    if (/^(const .*= )?await /m.test(code)) expect(section).toMatch(/npm pkg set type=module/)
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
    // The BYOK section's block is a route of the Hono quick start's app: checked after its setup.
    const byok = /^## Bring your own key \(BYOK\)\n[\s\S]*?^```ts\n([\s\S]*?)^```$/m.exec(README)
    expect(byok, 'README section "Bring your own key (BYOK)" with a ts block').not.toBeNull()
    writeFileSync(
      join(dir, 'byok.ts'),
      [
        "import { Hono } from 'hono'",
        "import { createTollbooth } from 'tollbooth'",
        "import { requireApiKey } from 'tollbooth/hono'",
        'const tb = createTollbooth({ secret: process.env.TOLLBOOTH_SECRET! })',
        'const app = new Hono()',
        byok![1]!,
      ].join('\n'),
    )
    files.push('byok.ts')
    // The Keys section's calls, on values of the types it names (what `create` gives back included).
    const keys = /^## Keys\n[\s\S]*?^```ts\n([\s\S]*?)^```$/m.exec(README)
    expect(keys, 'README section "Keys" with a ts block').not.toBeNull()
    writeFileSync(
      join(dir, 'keys.ts'),
      [
        "import { createTollbooth } from 'tollbooth'",
        'const tb = createTollbooth({ secret: process.env.TOLLBOOTH_SECRET! })',
        "declare const accountId: string, name: string, category: string, kind: 'consumption'",
        'declare const expiresInDays: number, scopes: string[], metadata: Record<string, string>',
        'declare const limits: { concurrency: number }, cursor: string | undefined, active: boolean',
        keys![1]!,
        'export { key }',
      ].join('\n'),
    )
    files.push('keys.ts')
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
