/**
 * @module test/fault/settle-lapsed
 *
 * A streamed request whose credit hold lapses while the store is out: admitted, then the store
 * frozen (SIGSTOP) or killed for longer than the hold's TTL (`reservationTtlMs` 1 s), so its
 * renewals fail, and the stream ends before or after the store is back. The core's own settle
 * (`leases: false`), over real HTTP (Hono), on a private Redis (append-only file, so its data
 * survives a kill) and a private PostgreSQL (its data kept across a kill). Afterwards: the
 * request's usage event says what the stream reported, the credits charged say the same (no
 * double charge, none lost), and no hold is left.
 *
 * Private servers started here, ended by pid.
 */

import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { describe, expect, it, type TestContext } from 'vitest'
import { requireApiKey, streamSSE } from '../../adapters/hono/index.js'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, type Storage } from '../../src/index.js'
import { gate } from '../http/harness.js'
import { privateStores, usageOf } from '../support/fault.js'
import { holdsLeft } from '../support/leases.js'
import { ready } from '../support/redis.js'
import { closeServer } from '../support/servers.js'

const stores = privateStores({ persistentRedis: true })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const REPORTED = 7

/** How the store is out: frozen or killed, and whether the stream ends while it is out. */
interface Outage {
  name: string
  out(): Promise<void> | void
  back(): Promise<void> | void
  /** The stream ends while the store is out (else once it is back). */
  endsWhileOut: boolean
  /** The hold's TTL (`reservationTtlMs`); the store is out for 2.5 s longer. */
  ttlMs: number
}

/**
 * A Hono API on `storage` whose `/v1/stream` holds 10 credits and streams until the test ends it, then
 * reports 7; the store is taken out past the hold's TTL as `outage` says; then the figures.
 */
async function streamThroughOutage(
  storage: Storage,
  reader: Storage,
  account: string,
  outage: Outage,
  holds: () => Promise<string[]>,
) {
  const secret = 'settle-lapsed-secret-settle-lapsed-secret-42'
  const tb = createTollbooth({
    secret,
    storage,
    storageTimeoutMs: 300,
    failedAuth: false,
    leases: false,
    cache: { feedProbeMs: 0 },
    reservationTtlMs: outage.ttlMs,
    leaseTtlMs: outage.ttlMs,
    plans: { pro: { monthlyCredits: 1000 } },
    defaultTier: 'pro',
    usage: { flushIntervalMs: 600_000, maxBatch: 100_000, retentionMs: 86_400_000 },
    onError: () => {},
  })
  const ended = gate()
  const streaming = gate()
  const app = new Hono()
  app.get('/v1/stream', requireApiKey(tb, { cost: 10 }), (c) =>
    streamSSE(c, async (stream) => {
      try {
        await stream.writeSSE({ data: 'first' })
        streaming.open()
        await ended.promise
        await stream.writeSSE({ data: 'last' })
      } finally {
        c.get('apiKey').report({ cost: REPORTED })
      }
    }),
  )
  const http = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as HttpServer
  await new Promise<void>((r) => http.once('listening', () => r()))
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  try {
    const { key, record } = await tb.keys.create({ accountId: account })
    const res = await fetch(`${url}/v1/stream`, { headers: { authorization: `Bearer ${key}` } })
    expect(res.status).toBe(200)
    const body = res.text()
    await streaming.promise
    await outage.out()
    if (outage.endsWhileOut) {
      // It ends at once; the store stays out past the hold's TTL.
      await sleep(200)
      ended.open()
      expect(await body).toContain('last')
      await sleep(outage.ttlMs + 2300)
      await outage.back()
    } else {
      // Out past the hold's TTL: its renewals fail, and it lapses.
      await sleep(outage.ttlMs + 1500)
      await outage.back()
      ended.open()
      expect(await body).toContain('last')
    }
    // The settle and its retries (50 ms doubling to 2 s) and the usage events.
    for (let i = 0; i < 100 && tb.stats().settleRetries.pending > 0; i++) await sleep(100)
    await tb.close()
    const { requestIds, units } = await usageOf(reader.usage, record.id)
    const view = createTollbooth({ secret, storage: reader, plans: { pro: {} } })
    const used = (await view.accounts.get(account)).credits.used
    await view.close()
    const left = await holds()
    console.log(
      `${outage.name}: ${requestIds.length} event, ${units} units, ${used} credits charged and held, holds left ${JSON.stringify(left)}, settle retries ${JSON.stringify(tb.stats().settleRetries)}`,
    )
    expect(requestIds.length, 'usage events').toBe(1)
    expect(units, 'units recorded vs reported').toBe(REPORTED)
    expect(used, 'credits charged and held vs units recorded').toBe(units)
    expect(left, 'holds left').toEqual([])
  } finally {
    await tb.close().catch(() => {})
    await closeServer(http)
  }
}

const outages = (server: {
  freeze(f: boolean): void
  kill(): Promise<void>
  restart(): Promise<void>
}): Outage[] => {
  const frozen = { out: () => server.freeze(true), back: () => server.freeze(false) }
  const killed = { out: () => server.kill(), back: () => server.restart() }
  return [
    { name: 'frozen, the stream ends once thawed', ...frozen, endsWhileOut: false, ttlMs: 1000 },
    // Its settle past the TTL less twice the clocks' skew (2 s): no longer surely held.
    { name: 'frozen, the stream ends while frozen', ...frozen, endsWhileOut: true, ttlMs: 1000 },
    { name: 'killed, the stream ends while down', ...killed, endsWhileOut: true, ttlMs: 1000 },
    // Its settle well within the TTL (surely held), its attempts failing until the hold lapsed.
    {
      name: 'killed, the stream ends while down within its TTL',
      ...killed,
      endsWhileOut: true,
      ttlMs: 6000,
    },
  ]
}

const CASES = ['frozen, thawed', 'frozen, ends frozen', 'killed', 'killed, ends within its TTL']

describe('a streamed request whose credit hold lapses while Redis is out', () => {
  const connect = async (ctx: TestContext) => {
    const server = await stores.redis(ctx)
    // The README's options for a client of tollbooth.
    const client = stores.client(server, {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      commandTimeout: 300,
      retryStrategy: () => 100,
    })
    const direct = stores.client(server, { retryStrategy: () => 100 })
    await ready(client)
    await ready(direct)
    return { server, client, direct }
  }
  for (const [i, name] of CASES.entries())
    it(`${name}: charged what it reported, once, no hold left`, async (ctx) => {
      const { server, client, direct } = await connect(ctx)
      const account = `acct_lapsed_r${i}`
      const outage = outages(server)[i]!
      await streamThroughOutage(
        redisStorage({ client }),
        redisStorage({ client: direct }),
        account,
        { ...outage, name: `Redis ${outage.name}` },
        async () => {
          await ready(direct)
          const out: string[] = []
          for (const k of await direct.keys(`{${account}}:credits*`)) {
            const v = (await direct.get(k)) ?? ''
            const ids = v.split('\n#').slice(1)
            for (const h of ids) out.push(`${k} #${h.replaceAll('\n', ' ')}`)
          }
          return out
        },
      )
    }, 60_000)
})

describe('a streamed request whose credit hold lapses while PostgreSQL is out', () => {
  const schema = 'tb_settle_lapsed'
  let migrated = false
  for (const [i, name] of CASES.entries())
    it(`${name}: charged what it reported, once, no hold left`, async (ctx) => {
      const server = await stores.postgres(ctx)
      const pool = stores.pool(server, { max: 4 })
      const check = stores.pool(server, { max: 2 })
      if (!migrated) {
        await migrate({ pool, schema })
        migrated = true
      }
      const account = `acct_lapsed_p${i}`
      const outage = outages(server)[i]!
      await streamThroughOutage(
        postgresStorage({ pool, schema, durableCounters: true, statementTimeoutMs: 250 }),
        postgresStorage({ pool: check, schema }),
        account,
        { ...outage, name: `PostgreSQL ${outage.name}` },
        async () =>
          (await holdsLeft(check, schema)).filter((h) => h.includes(`{${account}}:credits`)),
      )
    }, 60_000)
})
