/**
 * A Node cluster of two workers, each creating a tollbooth on `TB_STORAGE` (`memory` or
 * `sqlite`, without `NODE_ENV=production`): the primary prints each worker's warnings as one
 * JSON line `{"warnings":[…]}` and exits. Used by `cluster-warning.test.ts`.
 */

import cluster from 'node:cluster'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, memoryStorage } from '../../src/index.js'

const WORKERS = 2

if (cluster.isPrimary) {
  const dir = mkdtempSync(join(tmpdir(), 'tb-cluster-'))
  const warnings: string[] = []
  let done = 0
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork({ TB_DB: join(dir, 'tb.db') })
    w.on('message', (m: { warnings: string[] }) => {
      warnings.push(...m.warnings)
      w.kill()
      if (++done === WORKERS) {
        console.log(JSON.stringify({ warnings }))
        process.exit(0)
      }
    })
  }
} else {
  const warnings: string[] = []
  console.warn = (...args: unknown[]) => {
    warnings.push(args.map(String).join(' '))
  }
  const storage =
    process.env['TB_STORAGE'] === 'sqlite'
      ? sqliteStorage({ path: process.env['TB_DB']! })
      : memoryStorage()
  const tb = createTollbooth({ secret: 'cluster-test-secret-0123456789abcdef', storage })
  await tb.close()
  process.send!({ warnings })
}
