/**
 * @module test/regressions/hold-renewal
 *
 * A request that runs longer than its holds' TTL (`leaseTtlMs`, `reservationTtlMs`) keeps its
 * concurrency slot and its credit reservation until it settles, on every store (memory,
 * SQLite, Redis, PostgreSQL), on the real clock. Before, both lapsed at the TTL while the
 * response was still running: with both TTLs at 1 s, a 3 s request on a key limited to 1 in
 * flight and costing 60 of 100 credits let a second request in at 1.8 s, and 120 of 100
 * credits were used. Now the instance renews the holds of its requests in flight
 * (`src/renewal.ts`), and a renewal never makes again a hold its settle released.
 *
 * A process killed with a request in flight stops renewing: its slot is free again within a
 * TTL of its death (a child process on a SQLite file shared with the test). And the cost: one
 * store call per third of the TTL for all the long requests of an instance, none for a request
 * shorter than that.
 */

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { sqliteStorage } from '../../adapters/sqlite/index.js'
import {
  type Admission,
  type CounterStore,
  createTollbooth,
  memoryStorage,
  type SettleOp,
} from '../../src/internal.js'
import { req, SECRET } from '../metering/helpers.js'
import { fourStores } from '../support/stores.js'

const stores = await fourStores('hold-renewal')
const TTL = 1000
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

for (const [name, make] of Object.entries(stores))
  describe.skipIf(make === null)(`holds of a request longer than their TTL on ${name}`, () => {
    test('a request 3 × the TTL keeps its slot and its credits, and settles to its charge', async () => {
      const tb = createTollbooth({
        secret: SECRET,
        storage: await make!(),
        leaseTtlMs: TTL,
        reservationTtlMs: TTL,
        plans: { small: { monthlyCredits: 100 } },
        defaultTier: 'small',
      })
      try {
        const one = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
        const other = await tb.keys.create({ accountId: 'acct_1' })
        const route = tb.route({ cost: 60 })
        const free = tb.route({ cost: 0 })
        const long = await tb.authenticate(req(one.key), route)
        expect(long.allowed).toBe(true)
        const began = Date.now()
        // Through the whole request, three TTLs: its slot and its 60 credits stay held.
        for (const at of [0.6, 1.3, 1.9, 2.5, 3.1]) {
          await sleep(began + at * TTL - Date.now())
          const same = await tb.authenticate(req(one.key), free)
          expect(same, `the same key at ${at} TTL`).toMatchObject({ allowed: false, status: 429 })
          const sibling = await tb.authenticate(req(other.key), route)
          expect(sibling, `another key at ${at} TTL`).toMatchObject({
            allowed: false,
            status: 402,
          })
        }
        expect(Date.now() - began).toBeGreaterThanOrEqual(3 * TTL)
        const event = await tb.settle(long, { status: 200, cost: 42 })
        expect(event).toMatchObject({ units: 42 })
        expect((await tb.accounts.get('acct_1')).credits.used).toBe(42)
        // Settled: the slot is free, and the credits left are 58.
        const next = await tb.authenticate(req(one.key), tb.route({ cost: 58 }))
        expect(next.allowed).toBe(true)
        await tb.settle(next, { status: 200 })
        expect((await tb.accounts.get('acct_1')).credits.used).toBe(100)
        // The renewals stop with the requests: a settled request's holds are not made again.
        await sleep(TTL)
        const after = await tb.authenticate(req(one.key), free)
        expect(after.allowed).toBe(true)
        await tb.settle(after, { status: 200 })
      } finally {
        await tb.close()
      }
    })
  })

describe('a process killed with a request in flight', () => {
  test('keeps the slot while it lives, past the TTL, and frees it within a TTL of its death', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollbooth-hold-renewal-'))
    const file = join(dir, 'shared.db')
    const storage = sqliteStorage({ path: file })
    const tb = createTollbooth({ secret: SECRET, storage, leaseTtlMs: TTL, reservationTtlMs: TTL })
    const free = tb.route({ cost: 0 })
    const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
    const child = spawn(
      'npx',
      ['tsx', fileURLToPath(new URL('./hold-renewal-child.ts', import.meta.url))],
      {
        env: { ...process.env, TB_FILE: file, TB_KEY: key, TB_TTL_MS: String(TTL) },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    )
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {}
    }
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        let err = ''
        child.stderr!.on('data', (d: Buffer) => {
          err += d.toString()
        })
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString()
          if (out.includes('\n')) resolve(out.split('\n')[0]!)
        })
        child.once('exit', (code) => reject(new Error(`child exited with ${code}: ${err}`)))
      })
      expect(line).toBe('admitted')
      // Alive, it keeps its slot past the TTL.
      await sleep(2 * TTL)
      const held = await tb.authenticate(req(key), free)
      expect(held).toMatchObject({ allowed: false, status: 429 })
      kill()
      const killedAt = Date.now()
      let freedAt = 0
      while (Date.now() - killedAt < 3 * TTL) {
        const d = await tb.authenticate(req(key), free)
        if (d.allowed) {
          freedAt = Date.now()
          await tb.settle(d, { status: 200 })
          break
        }
        await sleep(50)
      }
      // Renewed at most a third of a TTL before the kill: free after that TTL, not before
      // its remaining part, and not never.
      expect(freedAt).toBeGreaterThan(0)
      expect(freedAt - killedAt).toBeGreaterThanOrEqual(TTL / 3)
      expect(freedAt - killedAt).toBeLessThanOrEqual(TTL + 200)
    } finally {
      kill()
      await tb.close()
      await storage.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('renewal cost', () => {
  test('one store call a period for every long request at once, nothing for short ones', async () => {
    const storage = memoryStorage()
    const calls: SettleOp[][] = []
    const inner = storage.counters
    // A copy: the store then answers through promises, as a remote one does.
    const counters: CounterStore = {
      ...inner,
      consume: (c, n, a) => inner.consume(c, n, a),
      settle: (ops, now) => {
        if (ops.some((op) => op.type === 'renew')) calls.push([...ops])
        return inner.settle(ops, now)
      },
    }
    const tb = createTollbooth({
      secret: SECRET,
      storage: { ...storage, counters },
      leases: false,
      leaseTtlMs: 300,
      reservationTtlMs: 600,
      plans: { big: { monthlyCredits: 1e6 } },
      defaultTier: 'big',
    })
    try {
      const { key } = await tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 100 } })
      const route = tb.route({ cost: 1 })
      const long: Admission[] = []
      for (let i = 0; i < 5; i++) long.push((await tb.authenticate(req(key), route)) as Admission)
      const short: string[] = []
      const began = Date.now()
      while (Date.now() - began < 1000) {
        const d = (await tb.authenticate(req(key), route)) as Admission
        short.push(d.requestId)
        await sleep(5)
        await tb.settle(d, { status: 200 })
      }
      // Every 100 ms (a third of the shorter TTL), one call renewing the 5 long requests' two
      // holds each (concurrency and credits); never a short request's.
      expect(calls.length).toBeGreaterThanOrEqual(5)
      expect(calls.length).toBeLessThanOrEqual(12)
      // (The first tick may come before the last of them is a period old.)
      for (const ops of calls.slice(1)) expect(ops).toHaveLength(10)
      const renewed = new Set(calls.flat().map((op) => (op as { holdId: string }).holdId))
      expect(renewed.size).toBe(5)
      for (const d of long) await tb.settle(d, { status: 200 })
      const after = calls.length
      await sleep(250)
      expect(calls.length).toBe(after)
    } finally {
      await tb.close()
    }
  })
})
