/**
 * `001_da102ff7c76ebfc9.txt`: "BYOK requests bypass platform credit metering", and a provider
 * key stored with `POST /v1/provider-keys` is "used automatically". So an account whose
 * credits have run out and that stored its ElevenLabs key is served on it (not charged), as it
 * is when it sends that key in `X-Provider-Key-ElevenLabs`; it was refused 402 `Insufficient
 * credits`, the stored key being looked at only once the handler asked for it. The voice
 * example over HTTP (Hono), on every storage: memory, SQLite, Redis, PostgreSQL, and
 * PostgreSQL with Redis counters.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { openStorage, type StorageConfig } from '../../examples/shared/storage.js'
import { createVoiceApi } from '../../examples/voice-api/app.js'
import { clientOf, serveHono, trackSettles } from './http.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REQUIRED = process.env.TOLLBOOTH_REQUIRE_SERVICES === '1'
const SECRET = 'byok-stored-secret-byok-stored-secret-0123'

async function reachable(): Promise<boolean> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0 })
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
const servers = REQUIRED || (await reachable())

const unique = () => Math.random().toString(36).slice(2, 10)
const prefix = `byok_stored_${unique()}:`
const schema = `tb_byok_stored_${unique()}`
const dir = mkdtempSync(join(tmpdir(), 'tb-byok-stored-'))

const CONFIGS: Array<[string, StorageConfig]> = [
  ['memory', {}],
  ['sqlite', { sqlitePath: join(dir, 'tollbooth.db') }],
  ...(servers
    ? ([
        ['redis', { redisUrl: REDIS_URL, redisPrefix: prefix }],
        ['postgres', { databaseUrl: DATABASE_URL, databaseSchema: schema }],
        [
          'postgres+redis',
          {
            redisUrl: REDIS_URL,
            redisPrefix: prefix,
            databaseUrl: DATABASE_URL,
            databaseSchema: `${schema}_r`,
          },
        ],
      ] as Array<[string, StorageConfig]>)
    : []),
]

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  if (!servers) return
  const redis = new Redis(REDIS_URL)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    if (keys.length > 0) await redis.del(...keys)
    cursor = next
  } while (cursor !== '0')
  redis.disconnect()
  const pool = new pg.Pool({ connectionString: DATABASE_URL })
  for (const s of [schema, `${schema}_r`]) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`)
  await pool.end()
})

describe.each(CONFIGS)(
  'voice-api on %s: a stored provider key when credits ran out',
  (_, config) => {
    it('serves the request on the stored key (not charged), as the header does', async () => {
      const opened = await openStorage(config)
      // Three credits a month: "Hello" costs 1.
      const { app, tb } = createVoiceApi({
        secret: SECRET,
        storage: opened.storage,
        plans: { free: { display: 'Free', monthlyCredits: 3 } },
      })
      const settles = trackSettles(tb)
      const served = await serveHono(app)
      const api = clientOf(served)
      const account = `acct_byok_${unique()}`
      try {
        const key = (await tb.keys.create({ accountId: account })).key
        const synth = (headers: Record<string, string> = {}) =>
          api('POST', '/v1/synthesize', { token: key, json: { text: 'Hello' }, headers })
        for (let i = 0; i < 3; i++) expect((await synth()).status).toBe(200)
        await settles.idle()
        const out = await synth()
        expect([out.status, out.body.error]).toEqual([402, 'Insufficient credits'])
        // The caller's own key in the header: served, not charged (as before).
        const header = await synth({ 'X-Provider-Key-ElevenLabs': 'sk_elevenlabs_header_0001' })
        expect([header.status, header.headers.get('x-usage-bypassed')]).toEqual([200, 'true'])

        // curl -X POST /v1/provider-keys -d '{"provider": "elevenlabs", "apiKey": "sk_..."}'
        const stored = await api('POST', '/v1/provider-keys', {
          token: key,
          json: { provider: 'elevenlabs', apiKey: 'sk_elevenlabs_stored_9876' },
        })
        expect(stored.status).toBe(201)
        // The same request without the header: the stored key is used automatically.
        const auto = await synth()
        expect(auto.status).toBe(200)
        expect(auto.body).toMatchObject({ provider: 'elevenlabs' })
        expect(auto.headers.get('x-usage-bypassed')).toBe('true')
        expect(auto.headers.get('x-provider-used')).toBe('elevenlabs')
        expect(auto.headers.get('x-usage-current')).toBe('3')
        expect(auto.headers.get('x-usage-remaining')).toBe('0')
        await settles.idle()
        await tb.flush()
        expect((await tb.usage.get(account)).credits.used).toBe(3)
        const log = (await tb.usage.logs((await tb.keys.list(account)).data[0]!.id)).data[0]
        expect(log).toMatchObject({ status: 200, units: 0, bypassed: true, provider: 'elevenlabs' })

        // Not a key of the route's providers: RAG takes OpenAI keys only, so it is still refused.
        const rag = await api('POST', '/v1/rag/query', { token: key, json: { query: 'voices' } })
        expect([rag.status, rag.body.error]).toEqual([402, 'Insufficient credits'])
        // The stored key deleted: refused again.
        const del = await api('DELETE', '/v1/provider-keys/elevenlabs', { token: key })
        expect(del.status).toBe(204)
        expect((await synth()).status).toBe(402)
      } finally {
        await served.close()
        await tb.close()
        await opened.close()
      }
    })
  },
)
