// Loads every subpath of package.json `exports` from dist/ as ESM (import) and CJS (require),
// the way a user's project would after `npm install tollbooth`.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
const require = createRequire(import.meta.url)
const MAX_PUBLIC_NAMES = 15
let failed = 0
for (const subpath of Object.keys(pkg.exports)) {
  if (subpath === './package.json') continue
  const spec = subpath === '.' ? pkg.name : `${pkg.name}${subpath.slice(1)}`
  const target = pkg.exports[subpath]
  for (const mode of ['import', 'require']) {
    if (typeof target === 'object' && !(mode in target)) {
      console.log(`skip ${mode.padEnd(7)} ${spec} (ESM only)`)
      continue
    }
    try {
      const mod = mode === 'import' ? await import(spec) : require(spec)
      const names = Object.keys(mod)
      if (names.length === 0) throw new Error('no exports')
      // The main entry lists what a user calls; adapters share the rest through src/internal.ts.
      if (subpath === '.' && names.length > MAX_PUBLIC_NAMES)
        throw new Error(
          `${names.length} runtime names, at most ${MAX_PUBLIC_NAMES}: ${names.join(', ')}`,
        )
      console.log(`ok   ${mode.padEnd(7)} ${spec} (${names.length} exports)`)
    } catch (err) {
      failed++
      console.error(`FAIL ${mode.padEnd(7)} ${spec}: ${err.message}`)
    }
  }
}
if (failed) process.exit(1)
