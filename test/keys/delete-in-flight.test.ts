/**
 * `002_2f2523503321cfc2.txt`: "Delete: Permanently removes the key and its configuration. Only
 * possible if the key has never been used." A key whose first request is still running (a
 * long stream, a slow upstream) has been used: `DELETE /keys/:id?permanent=true` answers 409
 * and the request, once it ends, is in the key's log. It was deleted (204), the key's
 * `lastUsedAt` being queued only when the request settled, and the request's event was left
 * to a key no lookup finds. Over HTTP: the management API and a guarded route on Hono.
 */

import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { requireApiKey } from '../../adapters/hono/index.js'
import { managementApi } from '../../adapters/management/index.js'
import { call, makeTollbooth } from '../management/servers.js'
import { type Served, serveHono } from '../support/servers.js'

let served: Served | undefined
afterEach(async () => {
  await served?.close()
  served = undefined
})

describe('deleting a key with a request in flight (002)', () => {
  it('answers 409: the key has been used; the request is logged once it ends', async () => {
    const { tb } = makeTollbooth()
    let finish = () => {}
    const held = new Promise<void>((r) => {
      finish = r
    })
    let started = () => {}
    const inHandler = new Promise<void>((r) => {
      started = r
    })
    const app = new Hono()
    app.post('/v1/slow', requireApiKey(tb, { cost: 1 }), async (c) => {
      started()
      await held
      return c.json({ done: true })
    })
    app.route('/v1', managementApi(tb))
    served = await serveHono(app)
    const mk = (await tb.keys.create({ accountId: 'acct_del', kind: 'management' })).key
    const { key, record } = await tb.keys.create({ accountId: 'acct_del', name: 'CI' })

    // A key never used is deleted.
    const unused = await tb.keys.create({ accountId: 'acct_del', name: 'spare' })
    const gone = await call(served.url, 'DELETE', `/v1/keys/${unused.record.id}?permanent=true`, {
      token: mk,
    })
    expect(gone.status).toBe(204)

    const request = call(served.url, 'POST', '/v1/slow', { token: key, json: {} })
    await inHandler
    const refused = await call(served.url, 'DELETE', `/v1/keys/${record.id}?permanent=true`, {
      token: mk,
    })
    expect([refused.status, refused.body.error]).toEqual([
      409,
      'This key has request history and cannot be deleted; deactivate it instead',
    ])
    finish()
    expect((await request).status).toBe(200)
    await tb.flush()
    const logs = await call(served.url, 'GET', `/v1/keys/${record.id}/logs`, { token: mk })
    expect(logs.body.data).toMatchObject([{ path: '/v1/slow', status: 200, units: 1 }])
  })
})
