/**
 * The Redis suites once more, on ioredis 6 (the devDependency `ioredis6`, an npm alias):
 * every `ioredis` import, tollbooth/redis's included, resolves to it. `.ci/run` runs this after
 * `npm test` (which runs them on ioredis 5), as the peer range accepts both. `npm run typecheck`
 * checks tollbooth/redis against ioredis 6's types too (tsconfig.ioredis6.json).
 */
import { defineConfig } from 'vitest/config'
import base from './vitest.config.js'

export default defineConfig({
  resolve: { alias: [{ find: /^ioredis(?=$|\/)/, replacement: 'ioredis6' }] },
  test: {
    ...base.test,
    include: [
      'adapters/redis/**/*.test.ts',
      'test/storage/redis*.test.ts',
      'test/storage/ioredis-version.test.ts',
      'test/fault/redis*.test.ts',
    ],
    env: { TOLLBOOTH_IOREDIS_MAJOR: '6' },
  },
})
