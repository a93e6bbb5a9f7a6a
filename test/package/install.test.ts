/**
 * `npm install` from this lockfile prints no EBADENGINE warning: every package it installs
 * runs on the Node versions package.json `engines` names (a dev dependency that wants a newer
 * Node is pinned back with `overrides`). Checked with `npm ci --dry-run`, which reads the lock
 * and warns as an install would, without touching node_modules.
 */

import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { expect, test } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')

test('npm ci prints no EBADENGINE warning', async () => {
  const { stdout, stderr } = await promisify(execFile)(
    'npm',
    ['ci', '--dry-run', '--no-audit', '--no-fund', '--ignore-scripts'],
    { cwd: ROOT },
  )
  expect(`${stdout}${stderr}`).not.toMatch(/EBADENGINE/)
}, 60_000)
