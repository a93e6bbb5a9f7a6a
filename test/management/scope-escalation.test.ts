/**
 * The `ip-blocks` scope spans every account (it shows and lifts the failed-auth guard's
 * blocks), so only a caller that holds it may give it: a customer's management key, a
 * consumption key or a session (the portal's) cannot mint or patch a key that carries it,
 * on either key route. The operator's key still can.
 */

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { IP_BLOCKS_SCOPE } from '../../adapters/management/index.js'
import type { Tollbooth } from '../../src/index.js'
import { browserClient, servePortal, sessionToken } from '../portal/servers.js'
import { client, makeTollbooth, type Served, serveManagement } from './servers.js'

let tb: Tollbooth
let served: Served
let api: ReturnType<typeof client>
let customer: string
let ops: string

beforeEach(async () => {
  ;({ tb } = makeTollbooth())
  served = await serveManagement('hono', tb, { auth: { consumptionKeys: true } })
  api = client(served)
  customer = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).key
  ops = (
    await tb.keys.create({ accountId: 'acct_ops', kind: 'management', scopes: [IP_BLOCKS_SCOPE] })
  ).key
})
afterEach(() => served.close())

const scoped = async (accountId: string) =>
  (await tb.keys.list(accountId, { kind: 'management', limit: 100 })).data
    .concat((await tb.keys.list(accountId, { limit: 100 })).data)
    .filter((k) => k.scopes.includes(IP_BLOCKS_SCOPE)).length

describe('giving the ip-blocks scope', () => {
  it("is refused to a customer's management key and to a consumption key, on create and patch", async () => {
    const consumer = (await tb.keys.create({ accountId: 'acct_a' })).key
    const own = (await tb.keys.create({ accountId: 'acct_a', kind: 'management' })).record.id
    const tries: Array<[string, string, unknown, string]> = [
      ['POST', '/management-keys', { scopes: [IP_BLOCKS_SCOPE] }, customer],
      ['POST', '/keys', { scopes: ['read', IP_BLOCKS_SCOPE] }, customer],
      ['PATCH', `/management-keys/${own}`, { scopes: [IP_BLOCKS_SCOPE] }, customer],
      ['POST', '/keys', { scopes: [IP_BLOCKS_SCOPE] }, consumer],
    ]
    for (const [method, path, json, token] of tries) {
      const r = await api(method, path, { token, json })
      expect([method, path, r.status, r.body?.code]).toEqual([method, path, 403, 'forbidden'])
      expect(r.body.error).toMatch(/scopes: ip-blocks/)
    }
    expect(await scoped('acct_a')).toBe(0)
    // Without the scope, the same calls go through.
    expect((await api('POST', '/management-keys', { token: customer, json: {} })).status).toBe(201)
    expect(
      (await api('PATCH', `/management-keys/${own}`, { token: customer, json: { scopes: ['x'] } }))
        .status,
    ).toBe(200)
  })

  it("is allowed to the operator's key that holds it", async () => {
    const r = await api('POST', '/management-keys', {
      token: ops,
      json: { scopes: [IP_BLOCKS_SCOPE] },
    })
    expect(r.status).toBe(201)
    expect((await api('GET', '/ip-blocks', { token: r.body.key })).status).toBe(200)
  })

  it('is refused to a portal session', async () => {
    const { tb: ptb, clock } = (await import('../portal/servers.js')).makeTollbooth()
    const portal = await servePortal('hono', ptb)
    try {
      const browser = browserClient(portal.url)
      expect((await browser.signIn(await sessionToken('acct_p', clock))).status).toBe(200)
      const r = await browser.call('POST', '/api/management-keys', {
        json: { name: 'mine', scopes: [IP_BLOCKS_SCOPE] },
      })
      expect([r.status, r.body?.code]).toEqual([403, 'forbidden'])
      expect((await ptb.keys.list('acct_p', { kind: 'management' })).data).toEqual([])
    } finally {
      await portal.close()
      await ptb.close()
    }
  })
})
