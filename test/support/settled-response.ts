/**
 * @module test/support/settled-response
 *
 * What the Express and Fastify suites check of a response that did not end the plain way
 * (broken off by the server after its head, or left by its client mid-body): it settles once,
 * with the status and units expected, its concurrency slot free again (the key's one slot
 * answers `/v1/ok`) and the account charged what it should be. The server is the suite's, on
 * `harness` (`test/http/harness.ts`), on the {@link PRO} plan.
 */

import { expect } from 'vitest'
import { eventually, type Harness, harness, type StartServer } from '../http/harness.js'

/** The plan of these cases: 100 credits a month. */
export const PRO = { plans: { pro: { monthlyCredits: 100 } }, defaultTier: 'pro' }

/** A key of `acct_1` with one concurrency slot: a request that holds it makes `/v1/ok` a 429. */
export async function oneSlotKey(h: Harness): Promise<string> {
  return (await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })).key
}

/**
 * Waits for settle call `index` to have written its usage event (`what` names it if it never
 * does), which matches `event`; then `/v1/ok` with `key` answers 200 (its slot is free) and
 * `acct_1` has used `used` credits.
 */
export async function expectSettled(
  h: Harness,
  key: string,
  o: { index?: number; what: string; event: { status: number; units: number }; used: number },
): Promise<void> {
  const index = o.index ?? 0
  await eventually(() => !!h.settled[index]?.event, o.what)
  expect(h.settled[index]!.event).toMatchObject(o.event)
  expect((await h.fetch('/v1/ok', { key })).status).toBe(200)
  expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(o.used)
}

/**
 * Serves `start`'s `GET /v1/broken` (the suite guards it at cost 5; its handler runs the
 * route, which reports 2 credits, sends a 200 head and breaks the response off) and
 * `/v1/ok`. The 200 comes; the request settles once, at once, as a failed response (500, not
 * billed), and its slot is free.
 *
 * @param bodyFails the client's read of the body must fail (else a failure is ignored)
 */
export async function expectBrokenOff(
  start: StartServer,
  { bodyFails }: { bodyFails: boolean },
): Promise<void> {
  const h = await harness(
    start,
    [{ path: '/v1/broken', handle: (k) => k.report({ cost: 2 }) }],
    PRO,
  )
  try {
    const key = await oneSlotKey(h)
    const res = await fetch(`${h.url}/v1/broken`, { headers: { authorization: `Bearer ${key}` } })
    expect(res.status).toBe(200)
    if (bodyFails) await expect(res.text()).rejects.toThrow()
    else await res.text().catch(() => '')
    await eventually(() => !!h.settled[0]?.event, 'the broken response to settle')
    expect(h.settled.map((s) => s.status)).toEqual([500])
    await expectSettled(h, key, {
      what: 'the broken response to settle',
      event: { status: 500, units: 0 },
      used: 0,
    })
  } finally {
    await h.close()
  }
}
