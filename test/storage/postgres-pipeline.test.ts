/**
 * @module test/storage/postgres-pipeline
 *
 * tollbooth end to end on PostgreSQL: two instances (two pools, one schema) share quotas and
 * credits, so 200 concurrent requests against a balance of 50 serve exactly 50 however they
 * are spread; usage lands in PostgreSQL in batches and is reported back; a rotated key and
 * stored provider keys round-trip; and the same works with counters from another store.
 */

import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresStorage } from '../../adapters/postgres/index.js'
import {
  createTollbooth,
  type Decision,
  manualClock,
  memoryStorage,
  type Storage,
  type TollboothOptions,
} from '../../src/internal.js'
import { freshSchema, newPool, skipPostgres } from '../support/postgres.js'

const SECRET = 'postgres-pipeline-secret-0123456789abcd'
const T0 = Date.UTC(2026, 0, 15, 12)
const PREPAID = { plans: { prepaid: { monthlyCredits: 0 } }, defaultTier: 'prepaid' }

const request = (key: string) => ({
  headers: { authorization: `Bearer ${key}` },
  ip: '127.0.0.1',
  method: 'POST',
  path: '/v1/synthesize',
})

describe.skipIf(skipPostgres)('tollbooth on postgres', () => {
  let a: pg.Pool
  let b: pg.Pool
  let schema = ''
  let drop: () => Promise<void> = async () => {}
  const clock = manualClock(T0)

  const two = (options: Partial<TollboothOptions> = {}, wrap = (s: Storage) => s) => {
    const make = (pool: pg.Pool) =>
      createTollbooth({
        secret: SECRET,
        clock,
        storage: wrap(postgresStorage({ pool, schema })),
        ...options,
      })
    return [make(a), make(b)] as const
  }

  beforeAll(async () => {
    a = newPool(20)
    b = newPool(20)
    const s = await freshSchema(a)
    schema = s.schema
    drop = s.drop
  })

  afterAll(async () => {
    await drop()
    await Promise.all([a?.end(), b?.end()])
  })

  it('serves exactly 50 of 200 concurrent requests on a balance of 50, across two instances', async () => {
    const [one, other] = two(PREPAID)
    try {
      const { key } = await one.keys.create({ accountId: 'acct_credits', name: 'k' })
      await one.accounts.addCredits('acct_credits', 50)
      const route = { one: one.route({ cost: 1 }), other: other.route({ cost: 1 }) }
      const all = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const tb = i % 2 ? one : other
          const d = await tb.authenticate(request(key), i % 2 ? route.one : route.other)
          if (d.allowed) await tb.settle(d, { status: 200 })
          return d
        }),
      )
      expect(all.filter((d) => d.allowed)).toHaveLength(50)
      for (const d of all.filter((d) => !d.allowed)) expect(d).toMatchObject({ status: 402 })
      await Promise.all([one.flush(), other.flush()])
      expect((await other.accounts.get('acct_credits')).credits).toEqual({
        used: 50,
        limit: 50,
        remaining: 0,
      })
      expect((await one.usage.get('acct_credits')).requestCount).toBe(50)
    } finally {
      await Promise.all([one.close(), other.close()])
    }
  })

  it('shares a daily quota, records usage and logs, rotates and keeps provider keys', async () => {
    const [one, other] = two()
    try {
      const { key, record } = await one.keys.create({
        accountId: 'acct_quota',
        name: 'Production Key',
        category: 'tts',
        limits: { quotas: { daily: 3 } },
      })
      const seen: Decision[] = []
      const tts = new Map([one, other].map((tb) => [tb, tb.route({ category: 'tts' })]))
      for (const tb of [one, other, one, other]) {
        const d = await tb.authenticate(request(key), tts.get(tb))
        seen.push(d)
        if (d.allowed) await tb.settle(d, { status: 200 })
      }
      expect(seen.map((d) => d.allowed)).toEqual([true, true, true, false])
      expect(seen[3]).toMatchObject({ status: 429, message: 'Rate limit exceeded: quota daily' })
      await Promise.all([one.flush(), other.flush()])
      const usage = await other.usage.get('acct_quota')
      expect(usage.requestCount).toBe(3)
      expect(usage.requests).toEqual({ tts: 3 })
      // The log: three served requests (an unmetered route: 0 credits) and the refused one.
      const logs = await one.usage.logs(record.id, { limit: 2 })
      expect(logs.data).toHaveLength(2)
      expect(logs.hasMore).toBe(true)
      const rest = await one.usage.logs(record.id, { limit: 2, cursor: logs.nextCursor })
      expect(rest.data).toHaveLength(2)
      expect([...logs.data, ...rest.data].map((e) => [e.status, e.code]).sort()).toEqual([
        [200, null],
        [200, null],
        [200, null],
        [429, 'quota_exceeded'],
      ])
      expect((await other.keys.get(record.id)).lastUsedAt).toBe(T0)

      const rotated = await other.keys.rotate(record.id)
      expect((await one.authenticate(request(rotated.key))).allowed).toBe(true)
      expect(await other.authenticate(request(key))).toMatchObject({ status: 401 })
      const listed = await one.keys.list('acct_quota')
      expect(listed.data.map((k) => k.id)).toEqual([rotated.record.id])

      await one.providerKeys.store('acct_quota', { provider: 'openai', apiKey: 'sk-proj-abcd1234' })
      expect(await other.providerKeys.get('acct_quota', 'openai')).toBe('sk-proj-abcd1234')
      const raw = await a.query(`SELECT sealed FROM "${schema}".provider_keys`)
      expect(JSON.stringify(raw.rows)).not.toContain('sk-proj-abcd1234')
    } finally {
      await Promise.all([one.close(), other.close()])
    }
  })

  it('runs with counters from another store spread over the PostgreSQL storage', async () => {
    const counters = memoryStorage().counters
    const [one, other] = two({}, (s) => ({ ...s, counters }))
    try {
      const { key, record } = await one.keys.create({
        accountId: 'acct_mixed',
        limits: { quotas: { daily: 2 } },
      })
      const ok = await other.authenticate(request(key))
      expect(ok.allowed).toBe(true)
      await other.settle(ok, { status: 200 })
      expect((await one.authenticate(request(key))).allowed).toBe(true)
      expect((await other.authenticate(request(key))).allowed).toBe(false)
      await other.flush()
      // The settled request and the refused one (the second admission is never settled).
      expect((await one.usage.logs(record.id)).data.map((e) => e.status).sort()).toEqual([200, 429])
      const rows = await a.query(
        `SELECT count(*)::int AS n FROM "${schema}".counters WHERE key LIKE $1`,
        ['{acct_mixed}%'],
      )
      expect(rows.rows[0].n).toBe(0)
    } finally {
      await Promise.all([one.close(), other.close()])
    }
  })
})
