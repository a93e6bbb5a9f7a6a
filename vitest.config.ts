import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'adapters/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Two files at once at least: most of the suite waits on servers, child processes and
    // timers rather than on a core, so on a 2-core machine (vitest's default there is one
    // worker) the run takes about 60 % of the time (.ci/run's 20-minute bound). Each file
    // keeps its own ports, key prefixes, schemas and private servers, so files do not meet.
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
})
