/**
 * @module test/management/metadata-order
 *
 * Metadata comes back as it was given on every store (memory, a SQLite file, Redis,
 * PostgreSQL): the same fields in the same order, nested objects too, so the same key answers
 * the same bytes wherever it is stored. A number is the JSON number the body parsed to (`1.50`
 * is `1.5`, as `JSON.parse` reads it), written back the way `JSON.stringify` writes it.
 */

import { describe, expect, test } from 'vitest'
import { fourStores } from '../support/stores.js'
import { client, makeTollbooth, serveManagement } from './servers.js'

const stores = await fourStores('mgmt-metadata-order')

const BODY = '{"name":"svc","metadata":{"zeta":1,"a":{"y":[{"d":1.50,"c":"x"}],"b":2},"m":-0.250}}'
const SHOWN = '"metadata":{"zeta":1,"a":{"y":[{"d":1.5,"c":"x"}],"b":2},"m":-0.25}'

for (const [storeName, makeStore] of Object.entries(stores))
  describe.skipIf(makeStore === null)(`metadata as given on ${storeName}`, () => {
    test('POST, GET, PATCH, the list and rotate answer the fields in the order given', async () => {
      const { tb } = makeTollbooth({ storage: await makeStore!() })
      const served = await serveManagement('hono', tb)
      try {
        const mk = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
        const api = client(served)
        const headers = { 'content-type': 'application/json' }
        const created = await api('POST', '/keys', { token: mk, raw: BODY, headers })
        expect(created.status).toBe(201)
        const id = created.body.id as string
        expect((await api('GET', `/keys/${id}`, { token: mk })).text).toContain(SHOWN)
        expect((await api('GET', '/keys', { token: mk })).text).toContain(SHOWN)
        const other = await api('POST', '/keys', { token: mk, json: { name: 'other' } })
        const patched = await api('PATCH', `/keys/${other.body.id}`, {
          token: mk,
          raw: BODY.replace('"svc"', '"other"'),
          headers,
        })
        expect(patched.status).toBe(200)
        expect(patched.text).toContain(SHOWN)
        expect((await api('GET', `/keys/${other.body.id}`, { token: mk })).text).toContain(SHOWN)
        const rotated = await api('POST', `/keys/${id}/rotate`, { token: mk })
        expect((await api('GET', `/keys/${rotated.body.id}`, { token: mk })).text).toContain(SHOWN)
        // An account's metadata, through tb.accounts.
        const metadata = JSON.parse(BODY).metadata
        await tb.accounts.patch('acct_a', { metadata })
        expect(JSON.stringify((await tb.accounts.get('acct_a')).metadata)).toBe(
          JSON.stringify(metadata),
        )
      } finally {
        await served.close()
        await tb.close()
      }
    })
  })
