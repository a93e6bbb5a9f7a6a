/**
 * @module test/storage/redis-usage-scale
 *
 * One account's usage summary does not stall other tenants on Redis (issue 20, item 3). On a
 * redis-server of its own, 200,000 usage events of one account are recorded over a month;
 * then, while that account's month summary runs (as `GET /usage` does), another account's
 * admissions go on through the same Redis. Each admission's latency is measured: with a
 * summary that decoded every event in one script, Redis was busy for seconds and the other
 * admissions waited that long (503 past the storage timeout); reading hourly and daily totals,
 * the summary costs Redis about a millisecond and the admissions see no stall.
 */

import { describe, expect, it } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'
import { makeEvent } from '../../adapters/testing/fixtures.js'
import { createTollbooth, type UsageEvent } from '../../src/index.js'
import { privateStores } from '../support/fault.js'

const EVENTS = 200_000
const MONTH = { start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 1, 1) }

const servers = privateStores()

describe('a summary of 200,000 events on Redis', () => {
  it("does not block another account's admission", { timeout: 240_000 }, async (ctx) => {
    const server = await servers.redis(ctx)
    const client = servers.client(server)
    const storage = redisStorage({ client, keyPrefix: 'scale:' })
    // Recording is off the hot path: batches as the out-box sends them.
    const heavy = 'acct_heavy'
    const span = MONTH.end - MONTH.start
    let batch: UsageEvent[] = []
    const t0 = performance.now()
    for (let i = 0; i < EVENTS; i++) {
      batch.push(
        makeEvent({
          accountId: heavy,
          time: MONTH.start + Math.floor((i / EVENTS) * span),
          units: 1,
          category: i % 3 === 0 ? 'stt' : 'tts',
        }),
      )
      if (batch.length === 5000) {
        await storage.usage.record(batch)
        batch = []
      }
    }
    const recordMs = performance.now() - t0

    // Another account's admissions, on their own connection as another instance would be.
    const other = servers.client(server)
    const tb = createTollbooth({
      secret: 'scale-test-secret-scale-test-secret-42',
      storage: redisStorage({ client: other, keyPrefix: 'scale:' }),
      storageTimeoutMs: 500,
      failedAuth: false,
      // Every admission a Redis call, as the measure of a stalled Redis needs (with leases
      // this hot key would make one every lease).
      leases: false,
    })
    const { key } = await tb.keys.create({
      accountId: 'acct_light',
      limits: { rateLimits: [{ limit: 1_000_000, windowMs: 60_000 }] },
    })
    const request = {
      headers: { authorization: `Bearer ${key}` },
      ip: '127.0.0.1',
      method: 'GET',
      path: '/v1/x',
    }
    const first = await tb.authenticate(request)
    expect(first.allowed).toBe(true)
    if (first.allowed) await tb.settle(first, { status: 200 })

    let done = false
    const latencies: number[] = []
    const statuses: number[] = []
    const admissions = (async () => {
      while (!done) {
        const t = performance.now()
        const d = await tb.authenticate(request)
        latencies.push(performance.now() - t)
        statuses.push(d.allowed ? 200 : d.status)
        if (d.allowed) await tb.settle(d, { status: 200 })
      }
    })()
    // Let the admissions run a little first, then summarize (as GET /usage does), 5 times.
    await new Promise((r) => setTimeout(r, 50))
    const summaryMs: number[] = []
    let summary = await storage.usage.summarize(heavy, MONTH.start, MONTH.end)
    for (let i = 0; i < 5; i++) {
      const t = performance.now()
      summary = await storage.usage.summarize(heavy, MONTH.start, MONTH.end)
      summaryMs.push(performance.now() - t)
    }
    await new Promise((r) => setTimeout(r, 50))
    done = true
    await admissions
    await tb.close()

    const stt = Math.ceil(EVENTS / 3)
    expect(summary).toEqual({
      requests: EVENTS,
      units: EVENTS,
      byCategory: {
        stt: { requests: stt, units: stt },
        tts: { requests: EVENTS - stt, units: EVENTS - stt },
      },
      byKeyCategory: { uncategorized: { requests: EVENTS, units: EVENTS } },
    })
    const max = Math.max(...latencies)
    console.log(
      `recorded ${EVENTS} events in ${Math.round(recordMs)} ms; month summary ${summaryMs
        .map((m) => m.toFixed(1))
        .join(', ')} ms; ${latencies.length} admissions of another account meanwhile, ` +
        `max ${max.toFixed(1)} ms, refused ${statuses.filter((s) => s !== 200).length}`,
    )
    expect(statuses.every((s) => s === 200)).toBe(true)
    // A stalled Redis shows as admissions waiting as long as the summary runs (seconds).
    expect(max).toBeLessThan(100)
    expect(Math.max(...summaryMs)).toBeLessThan(100)
  })
})
