/**
 * The examples on the durable storages their servers pick from `REDIS_URL` and
 * `DATABASE_URL`: Redis alone, PostgreSQL alone, and PostgreSQL with Redis counters. Each
 * example runs its main flow in-process on a fresh Redis key prefix and PostgreSQL schema
 * (removed afterwards), and one server process is started from the environment variables.
 * The suites skip when a server is down, and fail instead with `TOLLBOOTH_REQUIRE_SERVICES=1`.
 */

import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createInferenceApi, POOLS } from '../../examples/inference-api/app.js'
import { createPdfApi } from '../../examples/pdf-api/app.js'
import { signSession } from '../../examples/shared/session.js'
import {
  type OpenedStorage,
  openStorage,
  type StorageConfig,
} from '../../examples/shared/storage.js'
import { createVoiceApi } from '../../examples/voice-api/app.js'
import { call, clientOf, serveExpress, serveFastify, serveHono, trackSettles } from './http.js'
import { startServer } from './spawn.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REQUIRED = process.env.TOLLBOOTH_REQUIRE_SERVICES === '1'
const SECRET = 'storage-example-secret-storage-example-secret'
const SESSION_SECRET = 'storage-example-session-secret-0123456789'

async function reachable(): Promise<boolean> {
  const redis = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
  })
  redis.on('error', () => {})
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 })
  try {
    await redis.connect()
    await client.connect()
    return true
  } catch {
    return false
  } finally {
    redis.disconnect()
    await client.end().catch(() => {})
  }
}
const skip = !REQUIRED && !(await reachable())

const unique = () => Math.random().toString(36).slice(2, 10)

/** Removes a Redis key prefix and a PostgreSQL schema. */
async function cleanUp(prefix: string, schema: string): Promise<void> {
  const redis = new Redis(REDIS_URL)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    if (keys.length > 0) await redis.del(...keys)
    cursor = next
  } while (cursor !== '0')
  redis.disconnect()
  const pool = new pg.Pool({ connectionString: DATABASE_URL })
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await pool.end()
}

const CONFIGS: Array<[string, Pick<StorageConfig, 'redisUrl' | 'databaseUrl'>]> = [
  ['redis', { redisUrl: REDIS_URL }],
  ['postgres', { databaseUrl: DATABASE_URL }],
  ['postgres+redis', { redisUrl: REDIS_URL, databaseUrl: DATABASE_URL }],
]

describe.skipIf(skip).each(CONFIGS)('examples on %s', (label, config) => {
  const prefix = `examples_${unique()}:`
  const schema = `tb_example_${unique()}`
  let opened: OpenedStorage
  beforeAll(async () => {
    opened = await openStorage({ ...config, redisPrefix: prefix, databaseSchema: schema })
    expect(opened.label).toBe(label)
  })
  afterAll(async () => {
    await opened?.close()
    await cleanUp(prefix, schema)
  })

  it('voice-api: keys, metering, BYOK, rotation, revocation, usage', async () => {
    const { app, tb } = createVoiceApi({ secret: SECRET, storage: opened.storage })
    const settles = trackSettles(tb)
    const served = await serveHono(app)
    const api = clientOf(served)
    try {
      await tb.accounts.setTier('acct_store', 'pro')
      const mk = (await tb.keys.create({ accountId: 'acct_store', kind: 'management' })).key
      const created = await api('POST', '/v1/keys', { token: mk, json: { name: 'Production Key' } })
      expect(created.status).toBe(201)
      const synth = (key: string, headers: Record<string, string> = {}) =>
        api('POST', '/v1/synthesize', { token: key, json: { text: 'Hello' }, headers })
      expect((await synth(created.body.key)).headers.get('x-usage-current')).toBe('1')
      const byok = await synth(created.body.key, { 'X-Provider-Key-ElevenLabs': 'sk_mine' })
      expect(byok.headers.get('x-usage-bypassed')).toBe('true')
      const rotated = await api('POST', `/v1/keys/${created.body.id}/rotate`, { token: mk })
      expect((await synth(created.body.key)).status).toBe(401)
      expect((await synth(rotated.body.key)).status).toBe(200)
      expect((await api('DELETE', `/v1/keys/${rotated.body.id}`, { token: mk })).status).toBe(204)
      expect((await synth(rotated.body.key)).status).toBe(401)
      await settles.idle()
      const usage = await api('GET', '/v1/usage', { token: mk })
      expect(usage.body).toMatchObject({
        credits: { used: 2, limit: 200_000 },
        breakdown: { tts: 2 },
      })
    } finally {
      await served.close()
      await tb.close()
    }
  })

  it('pdf-api: session-only account routes and monthly usage', async () => {
    const { app, tb } = createPdfApi({
      secret: SECRET,
      sessionSecret: SESSION_SECRET,
      storage: opened.storage,
    })
    const settles = trackSettles(tb)
    const served = await serveExpress(app)
    const api = clientOf(served)
    try {
      const token = await signSession(SESSION_SECRET, 'user_pdf')
      const created = await api('POST', '/api/v1/account/keys', { token, json: { name: 'CI' } })
      const key = created.body.plaintext as string
      const compress = () =>
        api('POST', '/api/v1/compress', { token: key, json: { file: 'https://e.com/a.pdf' } })
      expect([(await compress()).status, (await compress()).status]).toEqual([200, 200])
      await settles.idle()
      const usage = await api('GET', '/api/v1/account/usage', { token })
      expect(usage.body).toMatchObject({
        current: 2,
        limit: 100,
        breakdown: [{ operation: 'compress', count: 2 }],
      })
      const del = await api('DELETE', `/api/v1/account/keys/${created.body.key.id}`, { token })
      expect(del.status).toBe(204)
      expect((await compress()).status).toBe(401)
      expect((await api('GET', '/api/v1/account/keys', { token })).body).toEqual([])
    } finally {
      await served.close()
      await tb.close()
    }
  })

  it('inference-api: credit and pool keys charged by reported tokens', async () => {
    const { app, tb } = await createInferenceApi({
      secret: SECRET,
      sessionSecret: SESSION_SECRET,
      storage: opened.storage,
    })
    const settles = trackSettles(tb)
    const served = await serveFastify(app)
    const api = clientOf(served)
    try {
      const token = await signSession(SESSION_SECRET, 'user_inference')
      await api('POST', '/api/billing/topup', { token, json: { amount: 1 } })
      const credit = await api('POST', '/api/keys/credit', { token, json: { name: 'c' } })
      const chat = (key: string) =>
        api('POST', '/v1/chat/completions', {
          token: key,
          json: { model: 'echo-1', messages: [{ role: 'user', content: 'Hello store' }] },
        })
      const answer = await chat(credit.body.data.apiKey)
      expect(answer.status).toBe(200)
      const hour = new Date().getUTCHours()
      const poolId = Object.keys(POOLS).find(
        (id) => hour >= POOLS[id]!.fromHour && hour < POOLS[id]!.toHour,
      )!
      await api('POST', `/api/pools/${poolId}/subscribe`, { token, json: { days: 1 } })
      const pool = await api('POST', '/api/keys/subscription', { token })
      expect((await chat(pool.body.data.apiKey)).status).toBe(200)
      await settles.idle()
      expect((await tb.usage.get('user_inference')).credits.used).toBe(
        answer.body.usage.total_tokens,
      )
      const list = await api('GET', '/api/keys', { token })
      expect(list.body.data.map((k: { keyType: string }) => k.keyType).sort()).toEqual([
        'credit',
        'subscription',
      ])
    } finally {
      await app.close()
      await served.close()
    }
  })
})

describe.skipIf(skip)('example server from REDIS_URL and DATABASE_URL', () => {
  it('starts the voice API on PostgreSQL with Redis counters', async () => {
    const prefix = `examples_${unique()}:`
    const schema = `tb_example_${unique()}`
    const started = await startServer('examples/voice-api/server.ts', ['consumption key'], {
      REDIS_URL,
      DATABASE_URL,
      REDIS_PREFIX: prefix,
      DATABASE_SCHEMA: schema,
    })
    try {
      expect(started.output()).toContain('(storage: postgres+redis)')
      // A fresh account each start, so its credits start unused.
      expect(started.lines['account']).toMatch(/^acct_demo_[a-z0-9]+$/)
      const ok = await call(started.url, 'POST', '/v1/synthesize', {
        token: started.lines['consumption key']!,
        json: { text: 'Hello' },
      })
      expect([ok.status, ok.headers.get('x-usage-current')]).toEqual([200, '1'])
    } finally {
      await started.stop()
      await cleanUp(prefix, schema)
    }
  })
})
