/**
 * @module bench/sqlite-usage
 *
 * `npx tsx bench/sqlite-usage.ts [events=1000] [rounds=30] [accounts=4]`: the SQLite usage
 * store's `record()` on a flushed batch of `events` admitted events (new ids each round, over
 * `accounts` accounts, two usage categories and two key categories, one hour: the shape of
 * tollbooth's out-box flush on a busy API), in a file of a temporary folder, removed after.
 * Prints events/s (median and best of the rounds, wall time of the call; the call is
 * synchronous, so wall time is its CPU plus its waits on the disk) and the process's CPU time
 * per event (median of the rounds: on a loaded machine it moves less than wall time), as a
 * line and a JSON row.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sqliteStorage } from '../adapters/sqlite/index.js'
import type { UsageEvent } from '../src/storage/types.js'

const N = Number(process.argv[2] ?? 1000)
const ROUNDS = Number(process.argv[3] ?? 30)
const ACCOUNTS = Number(process.argv[4] ?? 4)

const dir = mkdtempSync(join(tmpdir(), 'tollbooth-sqlite-usage-'))
try {
  const storage = sqliteStorage({ path: join(dir, 'usage.db') })
  const hour = Date.now() - (Date.now() % 3_600_000)
  let next = 0
  const batch = (): UsageEvent[] =>
    Array.from({ length: N }, () => {
      const i = next++
      return {
        id: `evt_${i.toString(36).padStart(10, '0')}`,
        requestId: `req_${i}`,
        keyId: `key_${i % 16}`,
        accountId: `acct_${i % ACCOUNTS}`,
        time: hour + (i % 3_600_000),
        units: 1,
        overage: 0,
        tokens: 0,
        category: i % 2 === 0 ? 'chat' : null,
        keyCategory: i % 3 === 0 ? 'production' : null,
        status: 200,
        durationMs: 2,
        ttfbMs: 1,
        code: null,
        ip: '127.0.0.1',
        method: 'GET',
        path: '/hello',
        bypassed: false,
        provider: null,
      }
    })
  for (let w = 0; w < 3; w++) await storage.usage.record(batch()) // warm up
  const rates: number[] = []
  const cpu: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const events = batch()
    const c = process.cpuUsage()
    const t = performance.now()
    await storage.usage.record(events)
    rates.push(N / ((performance.now() - t) / 1000))
    const used = process.cpuUsage(c)
    cpu.push((used.user + used.system) / N)
  }
  cpu.sort((a, b) => a - b)
  const cpuUs = cpu[Math.floor(cpu.length / 2)]!
  rates.sort((a, b) => a - b)
  const median = rates[Math.floor(rates.length / 2)]!
  const best = rates[rates.length - 1]!
  console.log(
    `record(): a flush of ${N} events over ${ACCOUNTS} accounts, ${ROUNDS} rounds: ${Math.round(median).toLocaleString('en-US')} events/s median, ${Math.round(best).toLocaleString('en-US')} best; CPU ${cpuUs.toFixed(2)} µs per event (median)`,
  )
  console.log(
    JSON.stringify({ events: N, accounts: ACCOUNTS, rounds: ROUNDS, median, best, cpuUs }),
  )
  // The checkpoint worker is unref'd: awaiting its exit with nothing else pending would end
  // the process with an unsettled top-level await (exit code 13), so nothing is awaited.
  void storage.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
