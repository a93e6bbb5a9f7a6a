/**
 * @module test/support/instances
 *
 * What the multi-instance suites (Redis, SQLite) share: `expectQuotaAcrossTwo`, 400
 * concurrent requests split across two instances on a total quota of 100, admitted and
 * metered exactly once each. The instances' own side is `instance-server.ts`.
 */

import { expect } from 'vitest'
import type { Storage, Tollbooth } from '../../src/index.js'

/** An instance as the suite sees it. */
interface Served {
  name: string
  url: string
}

/** `GET /v1/work` with `key`. */
export const work = (base: string, key: string) =>
  fetch(`${base}/v1/work`, { headers: { authorization: `Bearer ${key}` } })

/**
 * 400 concurrent requests, alternately to `a` and `b`, with one key on a total quota of 100:
 * exactly 100 admitted (each answered by the instance asked), 300 refused `quota_exceeded`,
 * and the 100 metered once each in `storage`.
 *
 * @returns every answer, with the instance that gave it
 */
export async function expectQuotaAcrossTwo(
  [a, b]: [Served, Served],
  tb: Tollbooth,
  storage: Storage,
): Promise<Array<{ status: number; from: string }>> {
  const { key } = await tb.keys.create({
    accountId: 'acct_multi',
    limits: { quotas: { total: 100 } },
  })
  const responses = await Promise.all(
    Array.from({ length: 400 }, async (_, i) => {
      const inst = i % 2 === 0 ? a : b
      const res = await work(inst.url, key)
      const body = (await res.json()) as { instance?: string; code?: string }
      return { status: res.status, from: inst.name, body }
    }),
  )
  const ok = responses.filter((r) => r.status === 200)
  expect(ok).toHaveLength(100)
  expect(responses.filter((r) => r.status === 429)).toHaveLength(300)
  expect(new Set(responses.filter((r) => r.status === 429).map((r) => r.body.code))).toEqual(
    new Set(['quota_exceeded']),
  )
  console.log(
    `admitted by ${a.name}: ${ok.filter((r) => r.from === a.name).length}, by ${b.name}: ${ok.filter((r) => r.from === b.name).length}`,
  )
  for (const r of ok) expect(r.body.instance).toBe(r.from)

  // Each admitted request is metered once, by whichever instance served it.
  let requests = 0
  const until = Date.now() + 10_000
  while (requests < 100 && Date.now() < until) {
    requests = (await storage.usage.summarize('acct_multi', 0, Date.now() + 60_000)).requests
    if (requests < 100) await new Promise((r) => setTimeout(r, 50))
  }
  expect(requests).toBe(100)
  return responses
}
