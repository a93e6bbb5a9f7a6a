/**
 * @module test/fault/management-store
 *
 * The calls off the request path (`tb.keys`, `tb.accounts`, `tb.usage`, `tb.providerKeys`,
 * `tb.ipBlocks`, and the management API over HTTP) with the store frozen (SIGSTOP: connections
 * stay open, nothing answers) and killed (SIGKILL: connections refused). Each call must end
 * within the storage timeout (plus a margin) with a `StorageUnavailableError` (HTTP: 503
 * `storage_unavailable`) that names no secret, a write's saying that its outcome is unknown;
 * once the store is back, the same calls work again.
 *
 * On Redis with a client of ioredis's defaults (an offline queue, no command timeout) and on
 * PostgreSQL with the README's pool (a connection timeout, no statement timeout): the clients
 * whose calls waited for as long as the fault lasted. Each on a private server of its own.
 */

import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { describe, expect, it, type TestContext } from 'vitest'
import { managementApi } from '../../adapters/management/index.js'
import { migrate, postgresStorage } from '../../adapters/postgres/index.js'
import { redisStorage } from '../../adapters/redis/index.js'
import { createTollbooth, isTollboothError, type Storage, type Tollbooth } from '../../src/index.js'
import { privateStores, settledWithin } from '../support/fault.js'

const SECRET = 'management-store-secret-management-store-1'
const TIMEOUT_MS = 500
/** Past the storage timeout, an answer still counts as bounded within this margin. */
const MARGIN_MS = 1000
/** How long a call is waited for before it is counted as hanging. */
const GIVE_UP_MS = 6000
const PROVIDER_SECRET = 'sk-provider-0123456789-very-secret'
const ACCOUNT = 'acct_mgmt'
/** The calls that only read. */
const READS = new Set(['get', 'list', 'statement', 'summarize', 'logs'])

const servers = privateStores()

interface Store {
  storage: Storage
  /** Puts the fault on (frozen or killed). */
  fail(): Promise<void>
  /** Takes it off (thawed or restarted). */
  heal(): Promise<void>
}

type Fault = 'frozen' | 'killed'
type Server = { freeze(f: boolean): void; kill(): Promise<void>; restart(): Promise<void> }

const faulty = (server: Server, fault: Fault) => ({
  fail: async () => (fault === 'frozen' ? server.freeze(true) : server.kill()),
  heal: async () => (fault === 'frozen' ? server.freeze(false) : server.restart()),
})

const stores: Array<[string, (ctx: TestContext, fault: Fault) => Promise<Store>]> = [
  [
    'Redis (ioredis defaults)',
    async (ctx, fault) => {
      const server = await servers.redis(ctx)
      const client = servers.client(server)
      const keyPrefix = `ms${Math.random().toString(36).slice(2, 8)}:`
      return { storage: redisStorage({ client, keyPrefix }), ...faulty(server, fault) }
    },
  ],
  [
    'PostgreSQL (a connection timeout, no statement timeout)',
    async (ctx, fault) => {
      const server = await servers.postgres(ctx)
      const pool = servers.pool(server)
      const schema = `tb_mgmt_${Math.random().toString(36).slice(2, 8)}`
      await migrate({ pool, schema })
      return { storage: postgresStorage({ pool, schema }), ...faulty(server, fault) }
    },
  ],
]

/** What one call did: how long it took, and what it answered or rejected with. */
interface Outcome {
  call: string
  ms: number
  /** 'hung' when it had not ended after GIVE_UP_MS. */
  how: 'resolved' | 'rejected' | 'hung'
  code?: string | undefined
  status?: number | undefined
  message?: string | undefined
  /** The messages of the error and its causes, for the secret check. */
  text: string
}

function errorText(err: unknown): string {
  const parts: string[] = []
  let e: unknown = err
  for (let i = 0; i < 5 && e instanceof Error; i++) {
    parts.push(e.message)
    e = e.cause
  }
  return parts.join(' | ')
}

async function run(call: string, p: () => Promise<unknown>): Promise<Outcome> {
  const { result, ms } = await settledWithin(Promise.resolve().then(p), GIVE_UP_MS)
  if (!result) return { call, ms, how: 'hung', text: '' }
  if (result.status === 'fulfilled') return { call, ms, how: 'resolved', text: '' }
  const err = result.reason as Error
  return {
    call,
    ms,
    how: 'rejected',
    code: isTollboothError(err) ? err.code : `${err?.name}: ${err?.message}`,
    message: err?.message,
    text: errorText(err),
  }
}

/** Every public call of the instance, against `keyId` (a key of ACCOUNT). */
function calls(tb: Tollbooth, keyId: string): Array<[string, () => Promise<unknown>, boolean]> {
  const day = 86_400_000
  const now = Date.now()
  // [name, call, writes]
  return [
    ['keys.create', () => tb.keys.create({ accountId: ACCOUNT, name: 'during' }), true],
    ['keys.get', () => tb.keys.get(keyId), false],
    ['keys.list', () => tb.keys.list(ACCOUNT), false],
    ['keys.update', () => tb.keys.update(keyId, { name: 'renamed' }), true],
    ['keys.rotate', () => tb.keys.rotate(keyId), true],
    ['keys.revoke', () => tb.keys.revoke(keyId), true],
    ['accounts.get', () => tb.accounts.get(ACCOUNT), false],
    ['accounts.statement', () => tb.accounts.statement(ACCOUNT), false],
    ['accounts.setTier', () => tb.accounts.setTier(ACCOUNT, null), true],
    ['accounts.addCredits', () => tb.accounts.addCredits(ACCOUNT, 10), true],
    ['accounts.patch', () => tb.accounts.patch(ACCOUNT, { metadata: { a: 1 } }), true],
    ['usage.summarize', () => tb.usage.summarize(ACCOUNT, now - day, now), false],
    ['usage.get', () => tb.usage.get(ACCOUNT), false],
    ['usage.logs', () => tb.usage.logs(keyId), false],
    [
      'providerKeys.store',
      () => tb.providerKeys.store(ACCOUNT, { provider: 'openai', apiKey: PROVIDER_SECRET }),
      true,
    ],
    ['providerKeys.list', () => tb.providerKeys.list(ACCOUNT), false],
    ['providerKeys.get', () => tb.providerKeys.get(ACCOUNT, 'openai'), false],
    ['providerKeys.delete', () => tb.providerKeys.delete(ACCOUNT, 'openai'), true],
    ['ipBlocks.list', () => tb.ipBlocks.list(), false],
    ['ipBlocks.get', () => tb.ipBlocks.get('203.0.113.7'), false],
    ['ipBlocks.lift', () => tb.ipBlocks.lift('203.0.113.7'), true],
    ['keys.delete', () => tb.keys.delete(keyId, {}, { evenIfUsed: true }), true],
  ]
}

/** Management API routes: [method, path, body]. */
function routes(keyId: string): Array<[string, string, unknown?]> {
  return [
    ['GET', '/keys'],
    ['POST', '/keys', { name: 'over http' }],
    ['GET', `/keys/${keyId}`],
    ['PATCH', `/keys/${keyId}`, { name: 'patched' }],
    ['POST', `/keys/${keyId}/rotate`, {}],
    ['GET', `/keys/${keyId}/logs`],
    ['GET', '/usage'],
    ['GET', '/provider-keys'],
    ['POST', '/provider-keys', { provider: 'openai', apiKey: PROVIDER_SECRET }],
  ]
}

async function http(url: string, method: string, path: string, body?: unknown): Promise<Outcome> {
  const call = `${method} ${path.replace(/key_[A-Za-z0-9_]+/, ':id')}`
  const t = performance.now()
  const answered = fetch(`${url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  }).then(async (res) => ({ status: res.status, body: await res.text() }))
  const { result } = await settledWithin(answered, GIVE_UP_MS)
  const ms = performance.now() - t
  if (!result) return { call, ms, how: 'hung', text: '' }
  if (result.status === 'rejected')
    return { call, ms, how: 'rejected', text: String(result.reason) }
  const { status, body: text } = result.value
  let parsed: { code?: string; error?: string } = {}
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { call, ms, how: 'resolved', status, code: parsed.code, message: parsed.error, text }
}

function print(label: string, out: readonly Outcome[]): void {
  console.log(
    `${label}\n${out
      .map(
        (o) =>
          `  ${o.call.padEnd(24)} ${String(Math.round(o.ms)).padStart(5)} ms  ${o.how}${o.status ? ` ${o.status}` : ''} ${o.code ?? ''}${o.message && o.how === 'rejected' ? ` (${o.message.slice(0, 140)})` : ''}`,
      )
      .join('\n')}`,
  )
}

describe.each(stores)('calls off the request path, store failing: %s', (name, make) => {
  it.for<Fault>(['frozen', 'killed'])(
    'with the store %s, each ends within the storage timeout as storage_unavailable; works again after',
    { timeout: 60_000 },
    async (fault, ctx) => {
      const store = await make(ctx, fault)
      const tb = createTollbooth({
        secret: SECRET,
        storage: store.storage,
        storageTimeoutMs: TIMEOUT_MS,
        onError: () => {},
      })
      const app = managementApi(tb, {
        auth: { authenticate: async () => ({ accountId: ACCOUNT }) },
      })
      const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
      await new Promise((r) => server.once('listening', r))
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const { key, record } = await tb.keys.create({ accountId: ACCOUNT, name: 'before' })
      await tb.providerKeys.store(ACCOUNT, { provider: 'openai', apiKey: PROVIDER_SECRET })
      await tb.accounts.addCredits(ACCOUNT, 5)
      const healthy = await run('keys.get', () => tb.keys.get(record.id))
      expect(healthy.how).toBe('resolved')
      let failing = true
      try {
        await store.fail()
        const direct = await Promise.all(
          calls(tb, record.id).map(([call, p, writes]) =>
            run(call, p).then((o) => ({ ...o, writes })),
          ),
        )
        const overHttp = await Promise.all(
          routes(record.id).map(([method, path, body]) => http(url, method, path, body)),
        )
        print(`${name}, ${fault}: direct calls`, direct)
        print(`${name}, ${fault}: management API`, overHttp)
        for (const o of direct) {
          expect(o.how, `${o.call} ${o.how} after ${Math.round(o.ms)} ms`).toBe('rejected')
          expect(o.code, o.call).toBe('storage_unavailable')
          expect(o.ms, o.call).toBeLessThan(TIMEOUT_MS + MARGIN_MS)
          expect(o.text).not.toContain(PROVIDER_SECRET)
          expect(o.text).not.toContain(key)
          // Names the call; one that may change something says that its outcome is unknown.
          if (!/\(usage (out-box flush|read)\)/.test(o.message ?? '')) {
            const call = /\(tb\.(\w+)\.(\w+)\)/.exec(o.message ?? '')
            expect(call?.[0], `${o.call}: ${o.message}`).toBe(`(tb.${o.call})`)
            if (!READS.has(call![2]!) && /did not answer/.test(o.message ?? ''))
              expect(o.message, o.call).toMatch(/outcome is unknown/)
          }
        }
        for (const o of overHttp) {
          expect(o.status, `${o.call} ${o.how} after ${Math.round(o.ms)} ms`).toBe(503)
          expect(o.code, o.call).toBe('storage_unavailable')
          // One storage timeout: after a 503 the usage headers do not wait a second one.
          expect(o.ms, o.call).toBeLessThan(2 * TIMEOUT_MS)
          expect(o.text).not.toContain(PROVIDER_SECRET)
        }
        await store.heal()
        failing = false
        // Back: the same calls work again (a killed Redis restarts empty, so on a new key).
        await expect
          .poll(async () => (await run('keys.list', () => tb.keys.list(ACCOUNT))).how, {
            timeout: 15_000,
          })
          .toBe('resolved')
        // A call whose caller stopped waiting goes on to its end (frozen: it may apply once
        // thawed), never twice and never half: at most one key and one top-up of each.
        await new Promise((r) => setTimeout(r, 1500))
        const names = (await tb.keys.list(ACCOUNT)).data.map((k) => k.name)
        const balance = (await tb.accounts.get(ACCOUNT)).balance
        console.log(
          `${name}, ${fault}: after: ${names.filter((n) => n === 'during').length} key 'during', ${names.filter((n) => n === 'over http').length} 'over http', balance ${balance}`,
        )
        expect(names.filter((n) => n === 'during').length).toBeLessThanOrEqual(1)
        expect(names.filter((n) => n === 'over http').length).toBeLessThanOrEqual(1)
        if (!(fault === 'killed' && name.startsWith('Redis'))) expect([5, 15]).toContain(balance)
        const again = await tb.keys.create({ accountId: ACCOUNT, name: 'after' })
        const after: Outcome[] = []
        for (const [call, p] of calls(tb, again.record.id)) after.push(await run(call, p))
        print(`${name}, ${fault}: back`, after)
        for (const o of after) expect(o.how, `${o.call}: ${o.code} ${o.message}`).toBe('resolved')
        const res = await http(url, 'GET', '/keys')
        expect(res.status).toBe(200)
      } finally {
        if (failing) await store.heal().catch(() => {})
        await new Promise((r) => server.close(r))
        await tb.close().catch(() => {})
        await store.storage.close?.().catch(() => {})
      }
    },
  )
})
