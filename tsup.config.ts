import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    hono: 'adapters/hono/index.ts',
    express: 'adapters/express/index.ts',
    fastify: 'adapters/fastify/index.ts',
    management: 'adapters/management/index.ts',
    redis: 'adapters/redis/index.ts',
    postgres: 'adapters/postgres/index.ts',
    sqlite: 'adapters/sqlite/index.ts',
    stripe: 'adapters/stripe/index.ts',
    testing: 'adapters/testing/index.ts',
    portal: 'adapters/portal/index.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  // One shared copy of the core for every entry, in CJS too (tsup splits CJS only when asked).
  splitting: true,
  sourcemap: true,
  clean: true,
  // `import.meta.url` in the CommonJS build (tollbooth/sqlite loads its driver relative to it).
  shims: true,
  target: 'es2022',
  platform: 'node',
  external: [
    'hono',
    'express',
    'fastify',
    'fastify-plugin',
    'ioredis',
    'pg',
    'better-sqlite3',
    'libsql',
    'stripe',
    'vitest',
  ],
})
