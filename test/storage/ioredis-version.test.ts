/**
 * Which ioredis the Redis suites run on: 5 under `npm test`, 6 under
 * `vitest --config vitest.ioredis6.config.ts` (the peer range accepts both; `.ci/run` runs
 * both). Fails if the alias stops applying, so the second run cannot silently test ioredis 5.
 */

import pkg from 'ioredis/package.json' with { type: 'json' }
import { expect, test } from 'vitest'

test('the Redis suites run on the ioredis major asked for', () => {
  expect(pkg.version.split('.')[0]).toBe(process.env['TOLLBOOTH_IOREDIS_MAJOR'] ?? '5')
})
