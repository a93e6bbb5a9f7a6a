/**
 * @module test/storage/sqlite-close
 *
 * `await storage.close()` as the last thing a script does: the checkpoint worker never keeps
 * the process alive while it runs, so its exit was the only thing left to wait for, nothing
 * held the event loop open, and Node ended the script mid-`await` (exit code 13, "unsettled
 * top-level await"): the line after `close()` never ran.
 */

import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, it } from 'vitest'

const dir = mkdtempSync(join(tmpdir(), 'tb-sqlite-close-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('a script that awaits close() last runs to its end (exit 0)', async () => {
  const adapter = fileURLToPath(new URL('../../adapters/sqlite/index.ts', import.meta.url))
  const script = join(dir, 'close.mts')
  writeFileSync(
    script,
    [
      `import { sqliteStorage } from ${JSON.stringify(adapter)}`,
      `const storage = sqliteStorage({ path: ${JSON.stringify(join(dir, 'tb.db'))} })`,
      'await storage.close?.()',
      "console.log('closed')",
    ].join('\n'),
  )
  const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', script], (err, out) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out }),
    )
    child.stdin?.end()
  })
  expect(run).toEqual({ code: 0, out: 'closed\n' })
})
