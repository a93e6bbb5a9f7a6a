import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    hono: 'adapters/hono/index.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  external: ['hono', 'express', 'fastify', 'fastify-plugin', 'ioredis', 'pg', 'stripe', 'vitest'],
})
