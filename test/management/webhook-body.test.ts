/**
 * `POST /billing/webhook` takes no credential, so anyone can send it a body: it is read only
 * up to the webhook bound (1 MiB) and refused with 413 there, not buffered whole first. A
 * client streams a chunked body with no Content-Length and counts what it could send before
 * the answer came; a declared Content-Length over the bound is refused before any body.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { streamBody } from '../support/stream-body.js'
import { FRAMEWORKS, makeTollbooth, type Served, serveManagement } from './servers.js'

const MiB = 1 << 20
describe.each(FRAMEWORKS)('webhook body bound on %s', (framework) => {
  let served: Served
  const seen: number[] = []
  beforeAll(async () => {
    const { tb } = makeTollbooth()
    served = await serveManagement(framework, tb, {
      billing: {
        name: 'fake',
        async webhook(input) {
          seen.push((input.body as Uint8Array).byteLength)
          return { status: 200, body: { received: true }, applied: [] }
        },
        async checkout() {
          return { url: 'https://c.example', sessionId: 'cs' }
        },
        async portal() {
          return { url: 'https://p.example' }
        },
      },
    })
  })
  afterAll(() => served.close())

  it('answers 413 once the streamed body passes 1 MiB, without reading the rest', async () => {
    const r = await streamBody(`${served.url}/v1/billing/webhook`, 64 * MiB)
    expect(r.status).toBe(413)
    expect(JSON.parse(r.body)).toMatchObject({ code: 'invalid_request' })
    // Socket buffers hold a few MiB at most; the old code read all 64 MiB before answering.
    expect(r.sent).toBeLessThan(16 * MiB)
    expect(seen).toEqual([])
  })

  it('refuses a declared Content-Length over the bound, and passes a body at the bound on', async () => {
    const big = await fetch(`${served.url}/v1/billing/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new Uint8Array(MiB + 1),
    })
    expect(big.status).toBe(413)
    const ok = await fetch(`${served.url}/v1/billing/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new Uint8Array(MiB),
    })
    expect([ok.status, await ok.json()]).toEqual([200, { received: true }])
    expect(seen).toEqual([MiB])
  })
})
