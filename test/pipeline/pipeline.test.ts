/**
 * The pipeline as data: every refusal from one table (the pipeline's and the management
 * API's agree on status, code and challenge), an admission that shows its public face only,
 * and request state that belongs to one instance.
 */

import { describe, expect, it } from 'vitest'
import { managementApi } from '../../adapters/management/index.js'
import { DENIALS, type DenialSpec } from '../../src/denials.js'
import { type Admission, createTollbooth, type Denial, settlementOf } from '../../src/index.js'
import { request, SECRET, setup } from '../helpers.js'

describe('the table of denials', () => {
  it('answers the pipeline refusals with the status and challenge of their row', async () => {
    const { tb } = setup()
    const { key, record } = await tb.keys.create({ accountId: 'acct_1' })
    await tb.keys.update(record.id, { active: false })
    const cases: Array<[keyof typeof DENIALS, Denial]> = [
      ['missing_api_key', (await tb.authenticate(request())) as Denial],
      ['invalid_api_key', (await tb.authenticate(request('sk_live_nope'))) as Denial],
      ['inactive_api_key', (await tb.authenticate(request(key))) as Denial],
    ]
    for (const [name, d] of cases) {
      const row: DenialSpec = DENIALS[name]
      expect(d).toMatchObject({ allowed: false, status: row.status, code: row.code })
      expect(JSON.parse(d.body)).toEqual({ error: row.message, code: row.code })
      expect(d.headers['WWW-Authenticate']).toBe(row.challenge?.[1])
    }
  })

  it('answers the management API refusals from the same rows', async () => {
    const { tb } = setup()
    const app = managementApi(tb)
    const none = await app.request('/keys')
    const row = DENIALS.unauthorized
    expect(none.status).toBe(row.status)
    expect(none.headers.get('www-authenticate')).toBe(row.challenge[1])
    expect(await none.json()).toMatchObject({ code: row.code })
    const bad = await app.request('/keys', { headers: { authorization: 'Bearer whatever' } })
    expect(bad.status).toBe(DENIALS.invalid_credentials.status)
    expect(bad.headers.get('www-authenticate')).toBe(DENIALS.invalid_credentials.challenge[1])
    const lost = await app.request('/nowhere', {
      headers: {
        authorization: `Bearer ${(await tb.keys.create({ accountId: 'a', kind: 'management' })).key}`,
      },
    })
    expect(lost.status).toBe(DENIALS.not_found.status)
    expect(await lost.json()).toMatchObject({ code: 'not_found' })
  })
})

describe('an admission', () => {
  it('shows its public face only: no underscore member, its settle state out of reach', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    const d = (await tb.authenticate(request(key))) as Admission
    expect(d.allowed).toBe(true)
    const names = new Set<string>([
      ...Object.keys(d),
      ...Object.getOwnPropertyNames(d),
      ...Object.getOwnPropertyNames(Object.getPrototypeOf(d)),
    ])
    expect([...names].filter((n) => n.startsWith('_'))).toEqual([])
    // Serialized, it carries no settle state (the client's address, holds, the handler's report).
    expect(JSON.stringify(d)).not.toContain('203.0.113.7')
    expect(settlementOf(d)?.settled).toBe(false)
    await tb.settle(d, { status: 200 })
    expect(d.settled).toBe(true)
    expect(settlementOf(d)?.settled).toBe(true)
    expect(settlementOf(JSON.parse(JSON.stringify(d)))).toBeUndefined()
  })
})

describe('request state', () => {
  it('numbers requests per instance: a second instance does not continue the first one', async () => {
    const a = createTollbooth({ secret: SECRET })
    const b = createTollbooth({ secret: SECRET })
    const ids: string[] = []
    for (const tb of [a, b, a, b])
      ids.push(((await tb.authenticate(request())) as Denial).requestId)
    // The id ends with the instance's own sequence number (base 36).
    expect(ids.map((id) => id.slice(-1))).toEqual(['1', '1', '2', '2'])
    await Promise.all([a.close(), b.close()])
  })
})
