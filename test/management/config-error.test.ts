/**
 * @module test/management/config-error
 *
 * A configuration error met while answering (a PostgreSQL schema never migrated) is the
 * operator's to fix, not the caller's to read: the management API and the portal answer it as
 * any other failure of the server (500 `internal_error`, nothing of the setup in the body) and
 * pass it to `onError`, which gets the message naming the schema and `migrate()`. Before, the
 * caller, authenticated or not, got the message itself (the schema's name, the call to make)
 * as a 500 `config_invalid`, and `onError` heard nothing.
 */

import { Hono } from 'hono'
import { afterAll, describe, expect, it } from 'vitest'
import { managementApi } from '../../adapters/management/index.js'
import { portal } from '../../adapters/portal/index.js'
import { postgresStorage } from '../../adapters/postgres/index.js'
import { createTollbooth } from '../../src/internal.js'
import { newPool, skipPostgres } from '../support/postgres.js'
import { serveHono } from '../support/servers.js'

const SECRET = 'config-error-suite-secret-config-error-suite'
const PREFIXES = { consumption: 'sk_', management: 'mk_' }
const pool = skipPostgres ? null : newPool(2)
afterAll(async () => {
  await pool?.end()
})

describe.skipIf(!pool)('a configuration error while answering (PostgreSQL never migrated)', () => {
  it.each([
    ['the management API', '/keys', (tb: Parameters<typeof managementApi>[0]) => managementApi(tb)],
    [
      'the portal',
      '/api/keys',
      (tb: Parameters<typeof portal>[0]) =>
        portal(tb, { authenticate: () => ({ accountId: 'acct_1' }) }),
    ],
  ])('%s answers without the setup details and reports it to onError', async (_, path, mount) => {
    const schema = `tb_never_migrated_${process.pid}`
    const reported: unknown[] = []
    const tb = createTollbooth({
      secret: SECRET,
      prefixes: PREFIXES,
      storage: postgresStorage({ pool: pool!, schema }),
      onError: (err) => reported.push(err),
    })
    // A well-formed management key (made on a store that works, the same secret), so the
    // management API looks it up in the unmigrated schema; the portal takes none.
    const maker = createTollbooth({ secret: SECRET, prefixes: PREFIXES })
    const { key } = await maker.keys.create({ accountId: 'acct_1', kind: 'management' })
    await maker.close()
    const app = new Hono().route('/', mount(tb))
    const served = await serveHono(app)
    try {
      const res = await fetch(`${served.url}${path}`, {
        headers: path === '/keys' ? { authorization: `Bearer ${key}` } : {},
      })
      const text = await res.text()
      // The management API meets it in the key's lookup, on the request path, where a store
      // that cannot answer is a 503 (its cause the ConfigError); the portal in its own call.
      expect(res.status).toBe(path === '/keys' ? 503 : 500)
      expect(JSON.parse(text)).toMatchObject({
        code: path === '/keys' ? 'storage_unavailable' : 'internal_error',
      })
      expect(text).not.toContain(schema)
      expect(text).not.toContain('migrate')
      const told = (e: unknown): string =>
        e instanceof Error ? `${e.message} ${told(e.cause)}` : String(e ?? '')
      expect(reported.map(told).join('\n')).toContain(`schema "${schema}" do not exist`)
    } finally {
      await served.close()
      await tb.close().catch(() => {})
    }
  })
})
