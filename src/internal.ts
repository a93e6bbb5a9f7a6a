/**
 * @module internal
 *
 * What the adapters share with the core beyond the public surface: everything `tollbooth`
 * exports plus the building blocks (limit arithmetic, markers, cursors, option schemas,
 * request helpers) that users never call. Adapters import from here; package.json `exports`
 * has no entry for it, so the bundler inlines it into the shared chunk.
 */

export * from './index.js'
