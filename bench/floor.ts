/**
 * @module bench/floor
 *
 * The whole tollbooth job written by hand, with no library code: the floor tollbooth is
 * measured against. Bearer / x-api-key, prefix + base62 + CRC-32 check, keyed SHA-256
 * (@noble/hashes, a 64-byte secret block absorbed once, the state cloned per call),
 * lru-cache lookup, GCRA + a 24-bucket rolling daily quota + a credit reservation, a request
 * id, the response headers, and settle after the response (charge, usage event, lastUsedAt).
 */

import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'
import { LRUCache } from 'lru-cache'

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const DIGIT = new Int8Array(128).fill(-1)
for (let i = 0; i < 62; i++) DIGIT[B62.charCodeAt(i)] = i
const CRC = new Uint32Array(256)
for (let n = 0; n < 256; n++) {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  CRC[n] = c >>> 0
}

interface Key {
  id: string
  account: string
  gcra: { level: number; at: number }
  daily: Int32Array
  dailyHead: number
  credits: { used: number; held: number; limit: number }
}

export interface FloorAdmit {
  key: Key
  headers: Array<[string, string]>
  requestId: string
  started: number
}

export interface FloorDenial {
  status: number
  body: string
}

/** Builds the floor with one valid key; returns the key and the admit/settle pair. */
export function createFloor(
  prefix: string,
  secret: string,
  headerCount: 3 | 10,
  plaintext: string,
) {
  const block = new Uint8Array(64)
  block.set(utf8ToBytes(secret).slice(0, 64))
  const base = sha256.create().update(block)
  const hash = (k: string) => bytesToHex(base.clone().update(utf8ToBytes(k)).digest())
  const byHash = new Map<string, Key>()
  const cache = new LRUCache<string, Key>({ max: 10_000, ttl: 30_000 })
  const events: unknown[] = []
  const lastUsed = new Map<string, number>()
  let seq = 0

  byHash.set(hash(plaintext), {
    id: 'key_floor',
    account: 'acct_floor',
    gcra: { level: 0, at: 0 },
    daily: new Int32Array(25),
    dailyHead: 0,
    credits: { used: 0, held: 0, limit: 1e15 },
  })

  const wellFormed = (k: string) => {
    const end = prefix.length + 27
    if (k.length !== end + 6 || !k.startsWith(prefix)) return false
    let cc = 0xffffffff
    for (let i = 0; i < end; i++) {
      const ch = k.charCodeAt(i)
      if (i >= prefix.length && (ch > 127 || DIGIT[ch]! < 0)) return false
      cc = CRC[(cc ^ ch) & 0xff]! ^ (cc >>> 8)
    }
    let v = 0
    for (let i = end; i < end + 6; i++) {
      const d = DIGIT[k.charCodeAt(i)]
      if (d === undefined || d < 0) return false
      v = v * 62 + d
    }
    return v === (cc ^ 0xffffffff) >>> 0
  }

  const RATE = 1e9
  const PERIOD = 60_000
  const DAILY = 1e9
  const HOUR = 3_600_000

  function admit(auth: string | undefined, xApiKey: string | undefined): FloorAdmit | FloorDenial {
    const k = auth?.startsWith('Bearer ') ? auth.slice(7) : xApiKey
    if (!k || !wellFormed(k))
      return { status: 401, body: '{"error":"Invalid API Key","code":"invalid_api_key"}' }
    const h = hash(k)
    let key = cache.get(h)
    if (!key) {
      key = byHash.get(h)
      if (!key) return { status: 401, body: '{"error":"Invalid API Key","code":"invalid_api_key"}' }
      cache.set(h, key)
    }
    const now = Date.now()
    const g = key.gcra
    const level = Math.max(0, g.level - (now - g.at) * (RATE / PERIOD)) + 1
    if (level > RATE) return { status: 429, body: '{"error":"rate limited","code":"rate_limited"}' }
    const bucket = Math.floor(now / HOUR)
    if (bucket !== key.dailyHead) {
      const shift = Math.min(25, bucket - key.dailyHead)
      key.daily.copyWithin(0, shift)
      key.daily.fill(0, 25 - shift)
      key.dailyHead = bucket
    }
    let used = 0
    for (let i = 0; i < 25; i++) used += key.daily[i]!
    if (used + 1 > DAILY)
      return {
        status: 429,
        body: '{"error":"Rate limit exceeded: quota daily","code":"quota_exceeded"}',
      }
    const cr = key.credits
    if (cr.used + cr.held + 1 > cr.limit)
      return { status: 402, body: '{"error":"Insufficient credits","code":"insufficient_credits"}' }
    g.level = level
    g.at = now
    key.daily[24]!++
    cr.held += 1
    const requestId = `req_floor${++seq}`
    const headers: Array<[string, string]> = [
      ['X-Request-Id', requestId],
      ['X-RateLimit-Limit', '1000000000'],
      ['X-RateLimit-Remaining', String(Math.floor(RATE - level))],
      ['X-RateLimit-Reset', '1'],
    ]
    if (headerCount === 10) {
      headers.push(
        ['RateLimit-Policy', '"per-minute";q=1000000000;w=60'],
        ['RateLimit', `"per-minute";r=${Math.floor(RATE - level)};t=1`],
        ['X-Usage-Current', String(cr.used + cr.held)],
        ['X-Usage-Limit', String(cr.limit)],
        ['X-Usage-Remaining', String(cr.limit - cr.used - cr.held)],
        ['X-Usage-Bypassed', 'false'],
      )
    }
    return { key, headers, requestId, started: now }
  }

  function settle(a: FloorAdmit, status: number): void {
    const cr = a.key.credits
    cr.held -= 1
    if (status < 400) cr.used += 1
    events.push({
      id: a.requestId,
      key: a.key.id,
      account: a.key.account,
      time: a.started,
      units: status < 400 ? 1 : 0,
      status,
    })
    if (events.length >= 500) events.length = 0
    lastUsed.set(a.key.id, a.started)
  }

  return { plaintext, admit, settle }
}
