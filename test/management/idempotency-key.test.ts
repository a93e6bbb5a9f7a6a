/**
 * @module test/management/idempotency-key
 *
 * An `Idempotency-Key` header tollbooth cannot keep (over 255 characters, empty, a space, a
 * tab, a character outside ASCII) is refused 400 `invalid_request` naming the header, over
 * real HTTP on Hono, Express and Fastify, and nothing is charged: before, it was ignored, so
 * the client's retry was charged a second time without a word. A key of 255 characters is
 * kept: its retry is charged once.
 */

import { describe, expect, it } from 'vitest'
import { useManagement } from './fixture.js'
import { FRAMEWORKS } from './servers.js'

const BAD: Array<[string, string]> = [
  ['256 characters', 'k'.repeat(256)],
  ['empty', ''],
  ['a space inside', 'order 42'],
  ['a tab inside', 'order\t42'],
  ['a character outside ASCII', 'commande-\u00e9'],
]

describe.each(FRAMEWORKS)('Idempotency-Key on %s', (framework) => {
  const f = useManagement(framework)

  /** Credits used by acct_a, once every request made so far has settled. */
  async function used(expected: number): Promise<number> {
    const until = Date.now() + 2_000
    let n = (await f.tb.accounts.get('acct_a')).credits.used
    while (n !== expected && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 10))
      n = (await f.tb.accounts.get('acct_a')).credits.used
    }
    return n
  }

  it.each(BAD)('refuses a key of %s with 400 naming the header, charging nothing', async (_, v) => {
    const { key } = await f.create()
    for (let i = 0; i < 2; i++) {
      const r = await f.synthesize(key, { 'idempotency-key': v })
      expect(r.status).toBe(400)
      expect(r.body).toMatchObject({ code: 'invalid_request' })
      expect(r.body.error).toContain('Idempotency-Key')
    }
    expect(await used(0)).toBe(0)
  })

  it('charges a retry with a key of 255 printable characters once', async () => {
    const { key } = await f.create()
    const h = { 'idempotency-key': `~${'K'.repeat(253)}!` }
    expect((await f.synthesize(key, h)).status).toBe(200)
    expect((await f.synthesize(key, h)).status).toBe(200)
    expect((await f.synthesize(key)).status).toBe(200)
    expect(await used(2)).toBe(2)
  })
})
