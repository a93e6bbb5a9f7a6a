/**
 * @module bench/scale-job
 *
 * The request the memory store's scale benches time (`bench/memory-ab.ts`,
 * `bench/request-instructions.ts`, as `bench/memory-scale.ts`'s): each key with a per-minute
 * rate limit, a daily quota and a cost of 1 against plan credits, on its own account, and one
 * request awaited `authenticate()` + `responseHeaders()` + `settle()`, on a built package
 * (`dist/`) loaded from a directory, so two builds can be compared.
 */

import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Tollbooth } from '../src/index.js'

type Lib = typeof import('../src/index.js')

const HIGH = 1_000_000_000
/** A key's limits: high enough never to refuse. */
export const SCALE_LIMITS = {
  rateLimits: [{ limit: HIGH, windowMs: 60_000 }],
  quotas: { daily: HIGH },
}

/** A tollbooth of the build in `dir` (a `dist/`), its cache holding `keys` keys. */
export async function scaleTollbooth(dir: string, keys: number): Promise<Tollbooth> {
  const lib = (await import(pathToFileURL(resolve(dir, 'index.js')).href)) as Lib
  return lib.createTollbooth({
    secret: 'memory-scale-secret-memory-scale-secret-01',
    storage: lib.memoryStorage(),
    failedAuth: false,
    plans: { pro: { monthlyCredits: HIGH } },
    defaultTier: 'pro',
    cache: { ttlMs: 3_600_000, max: keys },
  })
}

/**
 * Keys drawn at random from `keys` by a seeded xorshift: every run of a bench draws the same
 * keys in the same order.
 */
export function keyPicker<T>(keys: ReadonlyArray<T>): () => T {
  let seed = 0x2545f491
  return () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return keys[(seed >>> 0) % keys.length]!
  }
}

/** One request of `key`, as a server gives it (a fresh header string), admitted and settled. */
export async function scaleRequest(
  tb: Tollbooth,
  route: ReturnType<Tollbooth['route']>,
  key: string,
): Promise<void> {
  const d = await tb.authenticate(
    { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'POST', path: '/' },
    route,
  )
  if (!d.allowed) throw new Error(`bench request refused: ${d.status}`)
  d.responseHeaders(200)
  await tb.settle(d, { status: 200 })
}
