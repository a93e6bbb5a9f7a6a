/**
 * @module sqlite/checkpoint
 *
 * WAL checkpoints off the request path. In WAL mode a commit appends to the `-wal` file; a
 * checkpoint copies the pages back into the database file and waits for the disk twice
 * (`fsync` of the WAL, then of the file, 4-11 ms each on the test machine). SQLite runs one in
 * the commit that takes the WAL past `wal_autocheckpoint` pages (1,000), so every few hundred
 * commits one call, and every call batched with it, waits for the disk on the main thread.
 *
 * Here a worker thread with its own connection to the file runs a `PASSIVE` checkpoint every
 * `checkpointMs` (it never blocks a writer, and a writer never waits for it), and the main
 * connection's automatic checkpoint is pushed out to {@link AUTOCHECKPOINT_PAGES}, a bound on
 * the WAL if the worker falls behind. One worker per file per process, shared by the storages
 * on it, ended by the last one's `close()`. Without a file name (`:memory:`) or a driver the
 * worker can load, SQLite's own checkpoints stay as they are.
 */

import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { diskFile, type SqliteDatabase } from './db.js'

/** The main connection's own checkpoint threshold (pages) while a worker checkpoints. */
export const AUTOCHECKPOINT_PAGES = 10_000

/** The worker: a connection of its own, one `PASSIVE` checkpoint per tick. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const mod = require(workerData.driver)
const Database = typeof mod === 'function' ? mod : mod.default
const db = new Database(workerData.file, { timeout: 0 })
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
let failed = false
const timer = setInterval(() => {
  try {
    checkpoint.get()
    failed = false
  } catch (err) {
    // A busy file is skipped until the next tick; another error is reported once.
    const code = err && err.code
    if (!failed && code !== 'SQLITE_BUSY' && code !== 'SQLITE_LOCKED')
      parentPort.postMessage(String((err && err.message) || err))
    failed = true
  }
}, workerData.everyMs)
parentPort.on('message', () => {
  clearInterval(timer)
  db.close()
  parentPort.close()
})
`

interface Checkpointer {
  worker: Worker
  refs: number
  exited: Promise<void>
}

const running = new Map<string, Checkpointer>()

/** The driver a worker loads, as a resolved path: better-sqlite3, else libsql. */
function driverPath(): string | null {
  const req = createRequire(import.meta.url)
  for (const name of ['better-sqlite3', 'libsql']) {
    try {
      return req.resolve(name)
    } catch {
      // The next one.
    }
  }
  return null
}

/**
 * Starts (or shares) the checkpoint worker of `db`'s file; returns its release, or null when
 * none runs (no file name, no driver, `everyMs` 0).
 */
export function startCheckpoints(
  db: SqliteDatabase,
  everyMs: number,
  onError: (err: unknown) => void,
): (() => Promise<void>) | null {
  const file = diskFile(db)
  if (everyMs === 0 || file === null) return null
  let c = running.get(file)
  if (!c) {
    const driver = driverPath()
    if (!driver) return null
    let worker: Worker
    try {
      // No inherited `--import`/`--require` (a loader's hooks): plain JavaScript and the driver.
      worker = new Worker(WORKER_SOURCE, {
        eval: true,
        execArgv: [],
        workerData: { file, driver, everyMs },
      })
    } catch (err) {
      onError(err)
      return null
    }
    worker.on('message', (m: unknown) =>
      onError(new Error(`tollbooth/sqlite: WAL checkpoint failed: ${String(m)}`)),
    )
    worker.on('error', onError)
    // After the listeners (a 'message' listener refs the worker again): the worker never
    // keeps the process alive.
    worker.unref()
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    c = { worker, refs: 0, exited }
    const started = c
    void exited.then(() => {
      if (running.get(file) === started) running.delete(file)
    })
    running.set(file, c)
  }
  const mine = c
  mine.refs++
  db.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`)
  let released = false
  return async () => {
    if (released) return
    released = true
    if (--mine.refs > 0) return
    if (running.get(file) === mine) running.delete(file)
    // Held while it stops: a caller awaiting `close()` as its last step has nothing else
    // keeping the process alive, and Node would end it mid-await (exit code 13).
    mine.worker.ref()
    mine.worker.postMessage('close')
    await mine.exited
  }
}
