/**
 * @module test/regressions/closed-client-child
 *
 * A process that closes its storage client before tollbooth (`TB_STORE`: redis, postgres or
 * sqlite): it admits one request (an event queued), closes the client (`redis.quit()`,
 * `pool.end()`, `db.close()`), asks for a request of a key not cached yet, stays alive
 * `TB_ALIVE_MS` as a server would, then (with `TB_CLOSE=1`) calls `tb.close()`. It prints each
 * step on stdout and never calls `process.exit`: it must end by itself. tollbooth's own log
 * lines (`[tollbooth…]`) go to stderr, where the test counts them.
 */

import { Redis } from 'ioredis'
import pg from 'pg'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth, type Storage } from '../../src/index.js'
import { req, SECRET } from '../metering/helpers.js'
import { Database } from '../storage/sqlite-driver.js'

const env = process.env
const say = (line: string) => process.stdout.write(`${line}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

let storage: Storage
let closeClient: () => Promise<void>
if (env['TB_STORE'] === 'redis') {
  const client = new Redis(env['REDIS_URL']!, { maxRetriesPerRequest: 1 })
  storage = redisStorage({ client, keyPrefix: env['TB_PREFIX']! })
  closeClient = async () => {
    await client.quit()
  }
} else if (env['TB_STORE'] === 'postgres') {
  const pool = new pg.Pool({ connectionString: env['DATABASE_URL']! })
  storage = postgresStorage({ pool, schema: env['TB_SCHEMA']! })
  closeClient = async () => {
    const began = Date.now()
    // pool.end() waits for every client out of the pool: the change feed's too.
    const ended = pool.end().then(() => say(`pool ended in ${Date.now() - began} ms`))
    await Promise.race([ended, sleep(2000)])
  }
} else {
  const db = new Database(env['TB_FILE']!)
  storage = sqliteStorage({ database: db })
  closeClient = async () => {
    db.close()
  }
}

const tb = createTollbooth({ secret: SECRET, storage, usage: { flushIntervalMs: 100 } })
const used = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 5 } })
const fresh = await tb.keys.create({ accountId: 'acct_1' })
const d = await tb.authenticate(req(used.key))
if (!d.allowed) throw new Error(`not admitted: ${d.status}`)
await tb.settle(d, { status: 200 })
await closeClient()
say('client closed')
const after = await tb.authenticate(req(fresh.key))
say(`request: ${after.allowed ? 200 : `${after.status} ${after.code}`}`)
// A server stays up this long (its socket keeps it alive); the timers of tollbooth run.
await sleep(Number(env['TB_ALIVE_MS']))
if (env['TB_CLOSE'] === '1') {
  const began = Date.now()
  await tb.close().then(
    () => say('close resolved'),
    (err: Error) => say(`close rejected in ${Date.now() - began} ms: ${err.name}: ${err.message}`),
  )
}
say('done')
