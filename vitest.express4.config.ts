/**
 * The Express suites once more, on Express 4 (the devDependency `express4`, an npm alias):
 * every `express` import, tollbooth/express's included, resolves to it. `.ci/run` runs this
 * after `npm test` (which runs them on Express 5), as the peer range accepts both: the
 * behaviour suite, the adapter's stores and nginx runs, and `mountFetch` (the management API,
 * billing webhooks behind `express.json()`, the portal). The suites shared with Hono and
 * Fastify serve Express only here (`TOLLBOOTH_EXPRESS_MAJOR`). An async handler of a test app
 * is written as an Express 4 app writes it (`asyncHandler` in test/http/express-server.ts).
 */
import { defineConfig } from 'vitest/config'
import base from './vitest.config.js'

export default defineConfig({
  resolve: { alias: [{ find: /^express(?=$|\/)/, replacement: 'express4' }] },
  test: {
    ...base.test,
    include: [
      'test/http/express.test.ts',
      'test/http/express-prototypes.test.ts',
      'test/http/stores.test.ts',
      'test/http/nginx.test.ts',
      'test/management/mount.test.ts',
      'test/management/csrf.test.ts',
      'test/management/webhook-body.test.ts',
      'test/portal/api.test.ts',
      'test/portal/sign-out.test.ts',
    ],
    env: { TOLLBOOTH_EXPRESS_MAJOR: '4' },
  },
})
