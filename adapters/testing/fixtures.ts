/**
 * @module tollbooth/testing/fixtures
 *
 * Record makers for the conformance suite. Every call draws fresh random ids, so the tests
 * never depend on a storage being empty: a factory may hand out one storage per suite as well
 * as one per test.
 */

import type {
  AccountRecord,
  KeyRecord,
  ProviderKeyRecord,
  Storage,
  UsageEvent,
} from '../../src/internal.js'

/** What a conformance factory returns: a storage and how to clean it up. */
export interface StorageFixture {
  storage: Storage
  /** Called after each test (drop tables, delete a key prefix, close connections). */
  cleanup?: () => Promise<void>
}

/** Builds a fresh, isolated storage for one test (or hands out a shared one). */
export type StorageFactory = () => Promise<StorageFixture>

/** Gives the current test's storage. */
export type GetStorage = () => Storage

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** `n` random base62 characters. */
export function randomId(n = 12): string {
  const bytes = crypto.getRandomValues(new Uint8Array(n))
  let out = ''
  for (const b of bytes) out += ALPHABET[b % 62]
  return out
}

/** A random 64-character hex string, shaped like a key hash. */
export function randomHash(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}

/** A fresh account id, unique to the calling test. */
export const newAccountId = (): string => `acct_${randomId(14)}`

/**
 * A key id that sorts by `seq`, as real ids sort by creation time: `key_<8 digits><random>`.
 * Ids with a larger `seq` are newer.
 */
export const keyId = (seq: number): string => `key_${String(seq).padStart(8, '0')}${randomId(12)}`

let keySeq = 1

/** A complete consumption key record; `over` replaces any field. */
export function makeKey(over: Partial<KeyRecord> = {}): KeyRecord {
  const seq = keySeq++
  return {
    id: keyId(seq),
    hash: randomHash(),
    start: 'sk_test_' + randomId(4),
    name: `Key ${seq}`,
    accountId: newAccountId(),
    kind: 'consumption',
    category: 'tts',
    scopes: ['read', 'write'],
    metadata: { team: 'audio', nested: { tier: 2, tags: ['a', 'b'] } },
    active: true,
    createdAt: 1_767_225_600_000 + seq,
    expiresAt: null,
    lastUsedAt: null,
    revokedAt: null,
    limits: {
      quotas: { daily: 1000, total: 50_000 },
      rateLimits: [{ limit: 10, windowMs: 1000 }],
      concurrency: 2,
    },
    ...over,
  }
}

/** An account record with default figures. */
export function makeAccount(over: Partial<AccountRecord> = {}): AccountRecord {
  return {
    id: newAccountId(),
    tier: null,
    balance: 0,
    carryover: 0,
    periodStart: 1_767_225_600_000,
    tierExpiresAt: null,
    billingCustomerId: null,
    metadata: {},
    ...over,
  }
}

/** A usage event; `over` replaces any field. */
export function makeEvent(over: Partial<UsageEvent> = {}): UsageEvent {
  const id = `req_${randomId(16)}`
  return {
    id,
    requestId: id,
    keyId: keyId(0),
    accountId: newAccountId(),
    time: 1_767_225_600_000,
    units: 1,
    overage: 0,
    tokens: 0,
    category: 'tts',
    keyCategory: null,
    status: 200,
    durationMs: 12,
    ttfbMs: null,
    code: null,
    ip: '203.0.113.7',
    method: 'POST',
    path: '/v1/synthesize',
    bypassed: false,
    provider: null,
    ...over,
  }
}

/** A sealed provider key record (the `sealed` text is a stand-in, never opened here). */
export function makeSecret(over: Partial<ProviderKeyRecord> = {}): ProviderKeyRecord {
  return {
    accountId: newAccountId(),
    provider: 'elevenlabs',
    sealed: `eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..${randomId(16)}.${randomId(32)}.${randomId(22)}`,
    last4: randomId(4),
    createdAt: 1_767_225_600_000,
    verifiedAt: null,
    ...over,
  }
}

/** A small seeded PRNG (mulberry32), so a failing random sequence can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** Resolves once `predicate` holds, polling every 5 ms; rejects after `timeoutMs`. */
export async function eventually(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
